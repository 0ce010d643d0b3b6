from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select

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
