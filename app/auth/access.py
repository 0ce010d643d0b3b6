"""Is a signed access token still good? One lookup, on every signed-in request.

A valid signature only proves the token was issued. The account may have been
deleted or deactivated since, removed from the token's tenant, or logged out
(its token version bumped). `AccessLookup.lookup` reads everything a request
needs about the caller in one SQL round trip on a plain connection (not an ORM
session); the gateway's identity resolution and `get_principal` both go through
`authorize`, which adds the checks. The per-worker cache (`app/auth/cache.py`)
wraps `lookup` alone: it has no other queries and no side effects.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, func, select

from app.db import Database, read_once_retried
from app.models import (
    BillingTier,
    Membership,
    MembershipRole,
    Subscription,
    Tenant,
    TenantKind,
    User,
)


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """The caller as the database knows them now, in the token's tenant."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    is_admin: bool
    is_active: bool
    token_version: int
    role: MembershipRole
    tenant_kind: TenantKind
    tier: BillingTier
    seats: int  # active members of the tenant (at least 1): they size the team limits
    email_verified: bool = False  # the user proved the address (email verification)

    def admits(self, token_version: int) -> bool:
        return self.is_active and self.token_version == token_version


class AccessSource(Protocol):
    async def lookup(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> AccessRecord | None: ...


_seat = Membership.__table__.alias("seat")
_seat_user = User.__table__.alias("seat_user")
_SEATS = (
    select(func.count())
    .select_from(_seat.join(_seat_user, _seat_user.c.id == _seat.c.user_id))
    .where(_seat.c.tenant_id == bindparam("tenant_id"), _seat_user.c.is_active.is_(True))
    .scalar_subquery()
)

# No row: the user does not exist, or is not (any more) a member of the tenant.
_ACCESS = (
    select(
        User.email,
        User.is_admin,
        User.is_active,
        User.token_version,
        User.email_verified_at,
        Membership.role,
        Tenant.kind,
        Subscription.tier,
        _SEATS.label("seats"),
    )
    .select_from(User)
    .join(
        Membership,
        and_(Membership.user_id == User.id, Membership.tenant_id == bindparam("tenant_id")),
    )
    .join(Tenant, Tenant.id == Membership.tenant_id)
    .outerjoin(Subscription, Subscription.tenant_id == Membership.tenant_id)
    .where(User.id == bindparam("user_id"))
)


class AccessLookup:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def lookup(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> AccessRecord | None:
        row = await read_once_retried(
            self.db.engine, _ACCESS, {"user_id": user_id, "tenant_id": tenant_id}
        )
        if row is None:
            return None
        return AccessRecord(
            user_id=user_id,
            tenant_id=tenant_id,
            email=row.email,
            is_admin=bool(row.is_admin),
            is_active=bool(row.is_active),
            token_version=int(row.token_version),
            role=MembershipRole(row.role),
            tenant_kind=TenantKind(row.kind),
            tier=BillingTier(row.tier) if row.tier is not None else BillingTier.FREE,
            seats=max(1, int(row.seats or 0)),
            email_verified=row.email_verified_at is not None,
        )


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    token_version: int


def access_claims_of(claims: Mapping[str, Any]) -> AccessClaims | None:
    """The subject, tenant and token version of verified access-token claims.

    None when one is missing or malformed: a token without `ver` was issued before
    token versions existed and is refused (its owner refreshes).
    """
    version = claims.get("ver")
    if type(version) is not int:
        return None
    try:
        return AccessClaims(uuid.UUID(claims["sub"]), uuid.UUID(claims["tid"]), version)
    except (KeyError, TypeError, ValueError):
        return None


async def authorize(source: AccessSource, claims: Mapping[str, Any]) -> AccessRecord | None:
    """The caller behind verified access-token claims, or None if the token no longer holds."""
    parsed = access_claims_of(claims)
    if parsed is None:
        return None
    record = await source.lookup(parsed.user_id, parsed.tenant_id)
    if record is None or not record.admits(parsed.token_version):
        return None
    return record
