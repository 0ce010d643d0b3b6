from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import aliased

from app.auth.security import hash_token
from app.kit.repository import Repository
from app.models import (
    BillingTier,
    Membership,
    MembershipRole,
    Subscription,
    SubscriptionStatus,
    Tenant,
    TenantKind,
    User,
)
from app.models.base import utcnow
from app.models.tenancy import Invitation


@dataclass(frozen=True, slots=True)
class MemberContext:
    tenant_id: uuid.UUID
    tenant_kind: TenantKind
    role: MembershipRole
    tier: BillingTier


class TenantRepository(Repository[Tenant]):
    model = Tenant

    async def create(self, name: str, kind: TenantKind) -> Tenant:
        return await self.add(Tenant(name=name, kind=kind))

    async def add_member(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, role: MembershipRole
    ) -> Membership:
        membership = Membership(tenant_id=tenant_id, user_id=user_id, role=role)
        self.session.add(membership)
        await self.session.flush()
        return membership

    async def create_subscription(
        self, tenant_id: uuid.UUID, tier: BillingTier = BillingTier.FREE
    ) -> Subscription:
        subscription = Subscription(
            tenant_id=tenant_id, tier=tier, status=SubscriptionStatus.ACTIVE
        )
        self.session.add(subscription)
        await self.session.flush()
        return subscription

    async def member_context(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID
    ) -> MemberContext | None:
        """The user's role in the tenant and the tenant's live tier, in one query."""
        row = (
            await self.session.execute(
                select(Membership.role, Tenant.kind, Subscription.tier)
                .join(Tenant, Tenant.id == Membership.tenant_id)
                .outerjoin(Subscription, Subscription.tenant_id == Membership.tenant_id)
                .where(Membership.user_id == user_id, Membership.tenant_id == tenant_id)
            )
        ).one_or_none()
        if row is None:
            return None
        role, kind, tier = row
        return MemberContext(tenant_id, kind, role, tier or BillingTier.FREE)

    async def tier_of(self, tenant_id: uuid.UUID) -> BillingTier:
        tier = await self.session.scalar(
            select(Subscription.tier).where(Subscription.tenant_id == tenant_id)
        )
        return tier or BillingTier.FREE

    async def seat_count(self, tenant_id: uuid.UUID) -> int:
        """Seats are the active members (as in the gateway's per-seat limits)."""
        count = await self.session.scalar(
            select(func.count())
            .select_from(Membership)
            .join(User, User.id == Membership.user_id)
            .where(Membership.tenant_id == tenant_id, User.is_active.is_(True))
        )
        return int(count or 0)

    # --- teams ---------------------------------------------------------------------------

    async def lock(self, tenant_id: uuid.UUID) -> Tenant | None:
        """The tenant, its row locked until the transaction ends (PostgreSQL).

        Every change to a team's memberships takes this lock first, so changes to one
        team run one after another and each sees the others' outcome (its owners above
        all). SQLite has one writer at a time: the guarded statements below suffice.
        """
        return await self.session.scalar(
            select(Tenant).where(Tenant.id == tenant_id).with_for_update()
        )

    async def role_of(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> MembershipRole | None:
        return await self.session.scalar(
            select(Membership.role).where(
                Membership.tenant_id == tenant_id, Membership.user_id == user_id
            )
        )

    async def workspaces_of(self, user_id: uuid.UUID) -> list[WorkspaceRow]:
        """The user's workspaces with their role, tier and seats, oldest first."""
        seats = (
            select(func.count())
            .select_from(_Seat)
            .join(_SeatUser, _SeatUser.id == _Seat.user_id)
            .where(_Seat.tenant_id == Tenant.id, _SeatUser.is_active.is_(True))
            .correlate(Tenant)
            .scalar_subquery()
        )
        rows = await self.session.execute(
            select(Tenant.id, Tenant.name, Tenant.kind, Membership.role, Subscription.tier, seats)
            .join(Membership, Membership.tenant_id == Tenant.id)
            .outerjoin(Subscription, Subscription.tenant_id == Tenant.id)
            .where(Membership.user_id == user_id, Tenant.kind != TenantKind.DEMO)
            .order_by(Membership.created_at, Tenant.id)
        )
        return [
            WorkspaceRow(id_, name, kind, role, tier or BillingTier.FREE, max(1, int(count or 0)))
            for id_, name, kind, role, tier, count in rows
        ]

    async def members(self, tenant_id: uuid.UUID) -> list[MemberRow]:
        rows = await self.session.execute(
            select(
                Membership.user_id,
                User.email,
                Membership.role,
                User.is_active,
                Membership.created_at,
            )
            .join(User, User.id == Membership.user_id)
            .where(Membership.tenant_id == tenant_id)
            .order_by(Membership.created_at, User.email)
        )
        return [MemberRow(*row) for row in rows]

    async def has_member_with_email(self, tenant_id: uuid.UUID, email: str) -> bool:
        found = await self.session.scalar(
            select(Membership.id)
            .join(User, User.id == Membership.user_id)
            .where(Membership.tenant_id == tenant_id, User.email == email)
        )
        return found is not None

    async def set_role(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, role: MembershipRole
    ) -> bool:
        """Change a member's role, unless that would leave the team without an owner.

        One statement: the owner count is read where the row is changed. False when the
        member is gone or is the last owner.
        """
        # Making someone an owner never takes an owner away.
        guard = () if role is MembershipRole.OWNER else (_keeps_an_owner(tenant_id),)
        result = await self.session.execute(
            update(Membership)
            .where(Membership.tenant_id == tenant_id, Membership.user_id == user_id, *guard)
            .values(role=role)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def remove_member(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """Remove a member unless they are the last owner (one statement, as `set_role`)."""
        result = await self.session.execute(
            delete(Membership)
            .where(
                Membership.tenant_id == tenant_id,
                Membership.user_id == user_id,
                _keeps_an_owner(tenant_id),
            )
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


_Seat = aliased(Membership, name="seat")
_SeatUser = aliased(User, name="seat_user")
_Owner = aliased(Membership, name="owner")


def _keeps_an_owner(tenant_id: uuid.UUID):
    """The row is not an owner's, or another owner remains."""
    owners = (
        select(func.count())
        .select_from(_Owner)
        .where(_Owner.tenant_id == tenant_id, _Owner.role == MembershipRole.OWNER)
        .scalar_subquery()
    )
    return or_(Membership.role != MembershipRole.OWNER, owners > 1)


@dataclass(frozen=True, slots=True)
class WorkspaceRow:
    id: uuid.UUID
    name: str
    kind: TenantKind
    role: MembershipRole
    tier: BillingTier
    seats: int


@dataclass(frozen=True, slots=True)
class MemberRow:
    user_id: uuid.UUID
    email: str
    role: MembershipRole
    active: bool
    joined_at: datetime


class InvitationRepository(Repository[Invitation]):
    model = Invitation

    def _pending(self, now: datetime):
        return (
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        )

    async def create(
        self,
        tenant_id: uuid.UUID,
        email: str,
        role: MembershipRole,
        token: str,
        invited_by: uuid.UUID,
        expires_at: datetime,
    ) -> Invitation:
        """A new invitation; earlier pending ones to the same address are revoked."""
        now = utcnow()
        await self.session.execute(
            update(Invitation)
            .where(
                Invitation.tenant_id == tenant_id, Invitation.email == email, *self._pending(now)
            )
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        return await self.add(
            Invitation(
                tenant_id=tenant_id,
                email=email,
                role=role.value,
                token_hash=hash_token(token),
                invited_by=invited_by,
                expires_at=expires_at,
            )
        )

    async def pending(self, tenant_id: uuid.UUID) -> list[Invitation]:
        rows = await self.session.scalars(
            select(Invitation)
            .where(Invitation.tenant_id == tenant_id, *self._pending(utcnow()))
            .order_by(Invitation.created_at)
        )
        return list(rows)

    async def pending_count(self, tenant_id: uuid.UUID) -> int:
        count = await self.session.scalar(
            select(func.count())
            .select_from(Invitation)
            .where(Invitation.tenant_id == tenant_id, *self._pending(utcnow()))
        )
        return int(count or 0)

    async def revoke(self, tenant_id: uuid.UUID, invitation_id: uuid.UUID) -> bool:
        now = utcnow()
        result = await self.session.execute(
            update(Invitation)
            .where(
                Invitation.id == invitation_id,
                Invitation.tenant_id == tenant_id,
                *self._pending(now),
            )
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def redeem(self, token: str, email: str, user_id: uuid.UUID) -> Invitation | None:
        """Use a pending invitation to `email` up (one conditional UPDATE: once only)."""
        digest = hash_token(token)
        now = utcnow()
        row = (
            await self.session.execute(
                update(Invitation)
                .where(
                    Invitation.token_hash == digest, Invitation.email == email, *self._pending(now)
                )
                .values(accepted_at=now, accepted_by=user_id)
                .returning(Invitation.id, Invitation.token_hash)
                .execution_options(synchronize_session=False)
            )
        ).one_or_none()
        # Found by the hash's index; compared once more in constant time.
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return await self.session.get(Invitation, row.id, populate_existing=True)

    async def find_pending(self, token: str) -> Invitation | None:
        """The pending invitation a token names, whoever it was sent to."""
        digest = hash_token(token)
        invitation = await self.session.scalar(
            select(Invitation).where(Invitation.token_hash == digest, *self._pending(utcnow()))
        )
        if invitation is None or not hmac.compare_digest(invitation.token_hash, digest):
            return None
        return invitation
