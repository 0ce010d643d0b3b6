"""Who is calling: `CurrentUser`, `CurrentTenant`, `AdminUser` for every router."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.security import InvalidToken, PasswordHasher, TokenCodec
from app.db import SessionDep
from app.errors import Forbidden, Unauthorized
from app.models import BillingTier, MembershipRole, TenantKind, User
from app.tenants.repository import TenantRepository

bearer_scheme = HTTPBearer(auto_error=False, description="Access token from /auth/login")


def get_token_codec(request: Request) -> TokenCodec:
    return request.app.state.token_codec


def get_password_hasher(request: Request) -> PasswordHasher:
    return request.app.state.password_hasher


TokenCodecDep = Annotated[TokenCodec, Depends(get_token_codec)]
PasswordHasherDep = Annotated[PasswordHasher, Depends(get_password_hasher)]


@dataclass(frozen=True, slots=True)
class TenantContext:
    """The tenant a request acts in, with the caller's role and the live tier."""

    id: uuid.UUID
    kind: TenantKind
    role: MembershipRole
    tier: BillingTier


@dataclass(frozen=True, slots=True)
class Principal:
    user: User
    tenant: TenantContext


def access_claims(
    codec: TokenCodecDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> dict:
    if credentials is None:
        raise Unauthorized("Missing bearer token.", error="not_authenticated")
    try:
        return codec.decode(credentials.credentials, "access")
    except InvalidToken as exc:
        raise Unauthorized("Invalid or expired access token.", error="invalid_token") from exc


async def get_principal(
    session: SessionDep, claims: Annotated[dict, Depends(access_claims)]
) -> Principal:
    try:
        user_id = uuid.UUID(claims["sub"])
        tenant_id = uuid.UUID(claims["tid"])
    except (KeyError, ValueError) as exc:
        raise Unauthorized("Invalid or expired access token.", error="invalid_token") from exc
    user = await session.get(User, user_id)
    context = await TenantRepository(session).member_context(user_id, tenant_id)
    if user is None or context is None:
        raise Unauthorized("This account no longer exists.", error="invalid_token")
    # End the read transaction: the connection goes back to the pool instead of being
    # held through a long upload or LLM call; the session reconnects if the route writes.
    await session.commit()
    return Principal(
        user=user,
        tenant=TenantContext(context.tenant_id, context.tenant_kind, context.role, context.tier),
    )


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def get_current_user(principal: CurrentPrincipal) -> User:
    return principal.user


def get_current_tenant(principal: CurrentPrincipal) -> TenantContext:
    return principal.tenant


def require_admin(user: Annotated[User, Depends(get_current_user)]) -> User:
    if not user.is_admin:
        raise Forbidden("Administrators only.", error="admin_required")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
CurrentTenant = Annotated[TenantContext, Depends(get_current_tenant)]
AdminUser = Annotated[User, Depends(require_admin)]
