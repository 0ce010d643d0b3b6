"""Account routes under /auth: email verification, password recovery and change, sessions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request, status

from app.auth.abuse import AccountThrottlesDep, Guarded
from app.auth.accounts import AccountMail, AccountService
from app.auth.dependencies import CurrentPrincipal, PasswordHasherDep, access_claims
from app.auth.endpoints import AuthServiceDep
from app.auth.schemas import (
    Accepted,
    AuthTokens,
    ChangePasswordRequest,
    ForgotPasswordRequest,
    ResetPasswordRequest,
    SessionList,
    TokenBody,
    VerifyResult,
)
from app.db import SessionDep
from app.errors import error_responses
from app.kit.deps import ClientIPDep, SettingsDep
from app.kit.policy import gateway_policy
from app.kit.routing import DomainRouter
from app.mail.queue import Mailer

router = DomainRouter(prefix="/auth", tags=["auth"])


async def get_mailer(request: Request) -> Mailer:
    return request.app.state.mailer


async def get_account_service(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    hasher: PasswordHasherDep,
    mailer: Annotated[Mailer, Depends(get_mailer)],
) -> AccountService:
    mail = AccountMail(request.app.state.db, settings)
    return AccountService(session, settings, hasher, mailer, mail)


AccountServiceDep = Annotated[AccountService, Depends(get_account_service)]


@router.post(
    "/verify/request",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses=error_responses(401, 409, 429),
)
async def request_verification(
    principal: CurrentPrincipal,
    service: AccountServiceDep,
    throttles: AccountThrottlesDep,
    ip: ClientIPDep,
) -> Accepted:
    """Mail the caller a token that proves they receive mail at their address."""
    await throttles.check(Guarded.VERIFY_REQUEST, ip, str(principal.user.id))
    return Accepted(message=await service.request_verification(principal.user.id))


@router.post(
    "/verify/confirm", response_model=VerifyResult, responses=error_responses(400, 422, 429)
)
@gateway_policy(rate_limited=False)
async def confirm_verification(
    body: TokenBody, service: AccountServiceDep, throttles: AccountThrottlesDep, ip: ClientIPDep
) -> VerifyResult:
    """Redeem a verification token (single use); an ADMIN_EMAILS address becomes admin."""
    await throttles.check(Guarded.VERIFY_CONFIRM, ip)
    return await service.confirm_verification(body.token)


@router.post(
    "/password/forgot",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses=error_responses(422, 429),
)
@gateway_policy(rate_limited=False)
async def forgot_password(
    body: ForgotPasswordRequest,
    service: AccountServiceDep,
    throttles: AccountThrottlesDep,
    ip: ClientIPDep,
) -> Accepted:
    """Mail a password-reset token; the same answer whether or not the address has an account."""
    await throttles.check(Guarded.PASSWORD_FORGOT, ip, body.email)
    return Accepted(message=service.forgot_password(body.email))


@router.post(
    "/password/reset",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(400, 422, 429),
)
@gateway_policy(rate_limited=False)
async def reset_password(
    body: ResetPasswordRequest,
    service: AccountServiceDep,
    throttles: AccountThrottlesDep,
    ip: ClientIPDep,
) -> None:
    """Set a new password with a reset token (single use, 30 minutes); signs out everywhere."""
    await throttles.check(Guarded.PASSWORD_RESET, ip)
    await service.reset_password(body.token, body.new_password)


@router.post(
    "/password/change", response_model=AuthTokens, responses=error_responses(401, 403, 422, 429)
)
async def change_password(
    body: ChangePasswordRequest,
    principal: CurrentPrincipal,
    service: AccountServiceDep,
    auth: AuthServiceDep,
    throttles: AccountThrottlesDep,
    ip: ClientIPDep,
) -> AuthTokens:
    """Change the password (the current one required); other devices are signed out."""
    await throttles.check(Guarded.PASSWORD_CHANGE, ip, str(principal.user.id))
    user = await service.change_password(
        principal.user.id, body.current_password, body.new_password
    )
    return await auth.new_session(user, principal.tenant.id)


@router.get("/sessions", response_model=SessionList, responses=error_responses(401))
async def list_sessions(
    principal: CurrentPrincipal,
    service: AccountServiceDep,
    claims: Annotated[dict, Depends(access_claims)],
) -> SessionList:
    """The devices signed in to the account (one per refresh family), latest use first."""
    return await service.sessions(principal.user.id, _family(claims))


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 404, 422),
)
async def end_session(
    session_id: uuid.UUID, principal: CurrentPrincipal, service: AccountServiceDep
) -> None:
    """Sign one device out (its refresh family is revoked)."""
    await service.end_session(principal.user.id, session_id)


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401))
async def logout_all(principal: CurrentPrincipal, service: AccountServiceDep) -> None:
    """Sign out everywhere: every refresh family and every access token of the account."""
    await service.end_all_sessions(principal.user.id)


def _family(claims: dict) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(claims.get("fam")))
    except ValueError:
        return None
