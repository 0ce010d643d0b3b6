"""Who is calling: `CurrentUser`, `CurrentTenant`, `AdminUser` for every router."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.access import AccessSource
from app.auth.security import InvalidToken, PasswordHasher, TokenCodec
from app.errors import Forbidden, Unauthorized
from app.models import BillingTier, MembershipRole, TenantKind
from app.tenants.acting import TENANT_HEADER, authorize_in, requested_tenant

bearer_scheme = HTTPBearer(auto_error=False, description="Access token from /auth/login")


async def get_token_codec(request: Request) -> TokenCodec:
    return request.app.state.token_codec


async def get_password_hasher(request: Request) -> PasswordHasher:
    return request.app.state.password_hasher


async def get_access_lookup(request: Request) -> AccessSource:
    return request.app.state.access_lookup


TokenCodecDep = Annotated[TokenCodec, Depends(get_token_codec)]
PasswordHasherDep = Annotated[PasswordHasher, Depends(get_password_hasher)]
AccessLookupDep = Annotated[AccessSource, Depends(get_access_lookup)]


@dataclass(frozen=True, slots=True)
class TenantContext:
    """The tenant a request acts in, with the caller's role and the live tier."""

    id: uuid.UUID
    kind: TenantKind
    role: MembershipRole
    tier: BillingTier


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    """The caller, as read from the database on this request."""

    id: uuid.UUID
    email: str
    is_admin: bool


@dataclass(frozen=True, slots=True)
class Principal:
    user: AuthenticatedUser
    tenant: TenantContext


async def access_claims(
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
    request: Request, lookup: AccessLookupDep, claims: Annotated[dict, Depends(access_claims)]
) -> Principal:
    """Signed is not enough: the user must exist, be active, still belong to the
    token's tenant (or to the one `X-Tenant-Id` names: app/tenants/acting.py), and the
    token must carry the user's current token version."""
    requested = requested_tenant(request.headers.get(TENANT_HEADER))
    access = await authorize_in(lookup, claims, requested)
    if access is None:
        raise Unauthorized("Invalid or expired access token.", error="invalid_token")
    return Principal(
        user=AuthenticatedUser(access.user_id, access.email, access.is_admin),
        tenant=TenantContext(access.tenant_id, access.tenant_kind, access.role, access.tier),
    )


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: CurrentPrincipal) -> AuthenticatedUser:
    return principal.user


async def get_current_tenant(principal: CurrentPrincipal) -> TenantContext:
    return principal.tenant


async def require_admin(
    user: Annotated[AuthenticatedUser, Depends(get_current_user)],
) -> AuthenticatedUser:
    if not user.is_admin:
        raise Forbidden("Administrators only.", error="admin_required")
    return user


CurrentUser = Annotated[AuthenticatedUser, Depends(get_current_user)]
CurrentTenant = Annotated[TenantContext, Depends(get_current_tenant)]
AdminUser = Annotated[AuthenticatedUser, Depends(require_admin)]
