from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, status

from app.auth.access import authorize
from app.auth.dependencies import (
    AccessLookupDep,
    CurrentPrincipal,
    PasswordHasherDep,
    TokenCodecDep,
    access_claims,
)
from app.auth.schemas import AuthTokens, LoginRequest, RefreshRequest, RegisterRequest, UserProfile
from app.auth.service import AuthService, ClientInfo
from app.auth.throttle import AuthThrottle
from app.db import SessionDep
from app.errors import error_responses
from app.kit.deps import ClientIPDep, SettingsDep
from app.kit.openapi import no_credentials
from app.kit.policy import gateway_policy
from app.kit.routing import DomainRouter

router = DomainRouter(prefix="/auth", tags=["auth"])


async def get_auth_service(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    hasher: PasswordHasherDep,
    codec: TokenCodecDep,
    ip: ClientIPDep,
) -> AuthService:
    client = ClientInfo.of(request.headers.get("user-agent"), ip)
    return AuthService(session, settings, hasher, codec, client)


async def get_throttle(request: Request) -> AuthThrottle:
    return request.app.state.auth_throttle


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
ThrottleDep = Annotated[AuthThrottle, Depends(get_throttle)]


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=AuthTokens,
    summary="Create an account",
    responses=error_responses(409, 422, 429),
    openapi_extra=no_credentials(),
)
@gateway_policy(rate_limited=False)
async def register(
    body: RegisterRequest, service: AuthServiceDep, throttle: ThrottleDep, ip: ClientIPDep
) -> AuthTokens:
    """Create an account with its personal workspace on the free tier."""
    await throttle.check("register", ip)
    return await service.register(body.email, body.password)


@router.post(
    "/login",
    response_model=AuthTokens,
    summary="Sign in with email and password",
    responses=error_responses(401, 422, 429),
    openapi_extra=no_credentials(),
)
@gateway_policy(rate_limited=False)
async def login(
    body: LoginRequest, service: AuthServiceDep, throttle: ThrottleDep, ip: ClientIPDep
) -> AuthTokens:
    """Exchange email and password for an access and a refresh token."""
    await throttle.check("login", ip, body.email)
    return await service.login(body.email, body.password)


@router.post(
    "/refresh",
    response_model=AuthTokens,
    summary="Exchange a refresh token for new tokens",
    responses=error_responses(401, 422),
    openapi_extra=no_credentials(),
)
@gateway_policy(rate_limited=False)
async def refresh(body: RefreshRequest, service: AuthServiceDep) -> AuthTokens:
    """Rotate a refresh token; reusing an old one revokes its whole family."""
    return await service.refresh(body.refresh_token)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Sign out (revoke a refresh token's family)",
    responses=error_responses(401, 422),
    openapi_extra=no_credentials(),
)
async def logout(body: RefreshRequest, service: AuthServiceDep) -> None:
    """Revoke the refresh token's family (every token rotated from the same login)."""
    await service.logout(body.refresh_token)


@router.get(
    "/me",
    response_model=UserProfile,
    summary="Get the caller's profile",
    responses=error_responses(401),
)
async def me(
    principal: CurrentPrincipal,
    lookup: AccessLookupDep,
    claims: Annotated[dict, Depends(access_claims)],
) -> UserProfile:
    """The caller's profile; the tier is read live from the tenant's subscription."""
    record = await authorize(lookup, claims)
    return UserProfile(
        id=principal.user.id,
        email=principal.user.email,
        tier=principal.tenant.tier,
        tenant_id=principal.tenant.id,
        is_admin=principal.user.is_admin,
        # The caller's record as get_principal just read it (cached per worker).
        email_verified=bool(record and record.email_verified),
    )
