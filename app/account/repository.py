"""All SQL of the account export and deletion."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    AccountToken,
    BackupMetadata,
    ConnectAccount,
    CreditAccount,
    CreditLedgerEntry,
    Membership,
    MembershipRole,
    PlanRun,
    Plugin,
    PluginInstallation,
    PluginPurchase,
    PluginRating,
    PluginReview,
    QuotaCounter,
    RefreshToken,
    RevenueEvent,
    StorageRecord,
    StorageSyncHead,
    StorageTombstone,
    StorageUsage,
    Subscription,
    Tenant,
    TenantKind,
    User,
)

DELETED_TENANT_NAME = "Deleted account"


@dataclass(frozen=True, slots=True)
class WorkspaceOfUser:
    tenant_id: uuid.UUID
    kind: TenantKind
    role: MembershipRole
    other_members: int
    other_owners: int


class AccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- reading (export) --------------------------------------------------------------

    def export_queries(self, user_id: uuid.UUID, owned: list[uuid.UUID]) -> dict[str, Select]:
        """The rows the export writes, one JSON-lines file each, by file name."""
        return {
            "profile": select(User).where(User.id == user_id),
            "workspaces": select(Tenant, Membership.role)
            .join(Membership, Membership.tenant_id == Tenant.id)
            .where(Membership.user_id == user_id)
            .order_by(Tenant.created_at),
            "subscriptions": select(Subscription).where(Subscription.tenant_id.in_(owned)),
            "credit_accounts": select(CreditAccount).where(CreditAccount.tenant_id.in_(owned)),
            "credit_ledger": select(CreditLedgerEntry)
            .where(
                or_(CreditLedgerEntry.user_id == user_id, CreditLedgerEntry.tenant_id.in_(owned))
            )
            .order_by(CreditLedgerEntry.id),
            "storage_usage": select(StorageUsage).where(StorageUsage.user_id == user_id),
            "storage_records": select(StorageRecord)
            .where(StorageRecord.user_id == user_id)
            .order_by(StorageRecord.created_at),
            "backups": select(BackupMetadata)
            .where(BackupMetadata.user_id == user_id)
            .order_by(BackupMetadata.backup_timestamp),
            "plugin_installs": select(PluginInstallation).where(
                PluginInstallation.user_id == user_id
            ),
            "plugin_ratings": select(PluginRating).where(PluginRating.user_id == user_id),
            "plugins_authored": select(Plugin).where(Plugin.author_id == user_id),
            "purchases": select(RevenueEvent).where(RevenueEvent.user_id == user_id),
            "earnings": select(RevenueEvent).where(RevenueEvent.developer_id == user_id),
            "sessions": select(RefreshToken)
            .where(RefreshToken.user_id == user_id)
            .order_by(RefreshToken.created_at),
            "plugin_purchases": select(PluginPurchase)
            .where(PluginPurchase.user_id == user_id)
            .order_by(PluginPurchase.created_at),
            "payout_account": select(ConnectAccount).where(ConnectAccount.user_id == user_id),
            "plan_runs": select(PlanRun)
            .where(PlanRun.user_id == user_id)
            .order_by(PlanRun.created_at),
            "daily_quotas": select(QuotaCounter)
            .where(QuotaCounter.subject == f"user:{user_id}")
            .order_by(QuotaCounter.day),
        }

    async def stream(self, statement: Select) -> AsyncIterator[Any]:
        result = await self.session.stream(statement.execution_options(yield_per=200))
        async for row in result:
            yield row

    async def owned_tenants(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        rows = await self.session.scalars(
            select(Membership.tenant_id).where(
                Membership.user_id == user_id, Membership.role == MembershipRole.OWNER
            )
        )
        return list(rows)

    async def workspaces(self, user_id: uuid.UUID) -> list[WorkspaceOfUser]:
        other = Membership.__table__.alias("other")
        others = (
            select(func.count())
            .select_from(other)
            .where(other.c.tenant_id == Membership.tenant_id, other.c.user_id != user_id)
            .scalar_subquery()
        )
        other_owners = (
            select(func.count())
            .select_from(other)
            .where(
                other.c.tenant_id == Membership.tenant_id,
                other.c.user_id != user_id,
                other.c.role == MembershipRole.OWNER.value,
            )
            .scalar_subquery()
        )
        rows = await self.session.execute(
            select(Membership.tenant_id, Tenant.kind, Membership.role, others, other_owners)
            .join(Tenant, Tenant.id == Membership.tenant_id)
            .where(Membership.user_id == user_id)
        )
        return [
            WorkspaceOfUser(r[0], TenantKind(r[1]), MembershipRole(r[2]), r[3], r[4]) for r in rows
        ]

    async def blob_keys(self, user_id: uuid.UUID, tenants: list[uuid.UUID]) -> list[str]:
        """Every blob of the user's records and backups, and of the tenants that go."""
        keys: list[str] = []
        for model in (StorageRecord, BackupMetadata):
            rows = await self.session.scalars(
                select(model.blob_key).where(
                    or_(model.user_id == user_id, model.tenant_id.in_(tenants))
                )
            )
            keys += rows
        return keys

    async def live_subscriptions(self, tenants: list[uuid.UUID]) -> list[str]:
        rows = await self.session.scalars(
            select(Subscription.stripe_subscription_id).where(
                Subscription.tenant_id.in_(tenants),
                Subscription.stripe_subscription_id.is_not(None),
            )
        )
        return [row for row in rows if row]

    async def password_hash(self, user_id: uuid.UUID) -> str | None:
        return await self.session.scalar(select(User.password_hash).where(User.id == user_id))

    # --- deleting ----------------------------------------------------------------------

    async def forget_user(self, user_id: uuid.UUID, tenants: list[uuid.UUID]) -> None:
        """Delete the user and `tenants`; keep accounting rows, without the user.

        A tenant to delete whose credit ledger has rows stays as an anonymised shell
        (renamed, no members, no subscription) holding that ledger and its balance.
        """
        session = self.session
        # Accounting: the rows stay, the person goes.
        await session.execute(
            update(CreditLedgerEntry)
            .where(CreditLedgerEntry.user_id == user_id)
            .values(user_id=None)
        )
        await session.execute(
            update(RevenueEvent).where(RevenueEvent.user_id == user_id).values(user_id=None)
        )
        await session.execute(
            update(RevenueEvent)
            .where(RevenueEvent.developer_id == user_id)
            .values(developer_id=None)
        )
        await session.execute(
            update(Plugin).where(Plugin.author_id == user_id).values(author_id=None)
        )
        await session.execute(
            update(PluginReview).where(PluginReview.reviewer_id == user_id).values(reviewer_id=None)
        )
        # The catalog's counters stay exact without the user's installs and ratings.
        installs = (
            await session.scalars(
                select(PluginInstallation.plugin_id).where(PluginInstallation.user_id == user_id)
            )
        ).all()
        for plugin_id in installs:
            await session.execute(
                update(Plugin)
                .where(Plugin.id == plugin_id, Plugin.install_count > 0)
                .values(install_count=Plugin.install_count - 1)
            )
        ratings = (
            await session.execute(
                select(PluginRating.plugin_id, PluginRating.rating).where(
                    PluginRating.user_id == user_id
                )
            )
        ).all()
        for plugin_id, rating in ratings:
            await session.execute(
                update(Plugin)
                .where(Plugin.id == plugin_id)
                .values(
                    rating_sum=Plugin.rating_sum - rating,
                    rating_count=Plugin.rating_count - 1,
                )
            )
        for model, column in (
            (PluginInstallation, PluginInstallation.user_id),
            (PluginRating, PluginRating.user_id),
            (StorageRecord, StorageRecord.user_id),
            (StorageTombstone, StorageTombstone.user_id),
            (StorageSyncHead, StorageSyncHead.user_id),
            (BackupMetadata, BackupMetadata.user_id),
            (StorageUsage, StorageUsage.user_id),
            (RefreshToken, RefreshToken.user_id),
            (AccountToken, AccountToken.user_id),
            (Membership, Membership.user_id),
            (PlanRun, PlanRun.user_id),
        ):
            await session.execute(delete(model).where(column == user_id))
        # The user's daily counters (their subject is the user's id; no lease is in them).
        await session.execute(delete(QuotaCounter).where(QuotaCounter.subject == f"user:{user_id}"))
        await session.execute(delete(User).where(User.id == user_id))
        for tenant_id in tenants:
            await self._remove_tenant(tenant_id)

    async def _remove_tenant(self, tenant_id: uuid.UUID) -> None:
        session = self.session
        ledger = await session.scalar(
            select(func.count())
            .select_from(CreditLedgerEntry)
            .where(CreditLedgerEntry.tenant_id == tenant_id)
        )
        if not ledger:
            await session.execute(delete(Tenant).where(Tenant.id == tenant_id))
            return
        for model in (
            StorageRecord,
            StorageTombstone,
            StorageSyncHead,
            BackupMetadata,
            Membership,
            Subscription,
        ):
            await session.execute(delete(model).where(model.tenant_id == tenant_id))
        await session.execute(
            update(Tenant).where(Tenant.id == tenant_id).values(name=DELETED_TENANT_NAME)
        )
