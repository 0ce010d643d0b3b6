"""Reading and setting up the database a server process uses, from the test process."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from app.models import (
    BillingTier,
    ConcurrencyLease,
    CreditAccount,
    CreditLedgerEntry,
    CreditReason,
    QuotaCounter,
    QuotaKind,
    Subscription,
)


@dataclass(frozen=True)
class Ledger:
    balance: int
    total: int  # the sum of every entry's delta
    lowest_balance_after: int
    reasons: dict[CreditReason, int]  # entries per reason

    @property
    def open_reservations(self) -> int:
        settled = self.reasons.get(CreditReason.SETTLE, 0) + self.reasons.get(
            CreditReason.RELEASE, 0
        )
        return self.reasons.get(CreditReason.RESERVE, 0) - settled


class ClusterDatabase:
    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_async_engine(url, pool_size=2)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def set_tier(self, tenant_id: uuid.UUID, tier: BillingTier) -> None:
        async with self.sessionmaker.begin() as session:
            await session.execute(
                update(Subscription).where(Subscription.tenant_id == tenant_id).values(tier=tier)
            )

    async def leases(self, scope: str, *, live_only: bool = True) -> list[ConcurrencyLease]:
        statement = select(ConcurrencyLease).where(ConcurrencyLease.scope == scope)
        if live_only:
            statement = statement.where(ConcurrencyLease.expires_at > datetime.now(UTC))
        async with self.sessionmaker() as session:
            return list(await session.scalars(statement))

    async def lease_rows(self) -> int:
        async with self.sessionmaker() as session:
            return int(
                await session.scalar(select(func.count()).select_from(ConcurrencyLease)) or 0
            )

    async def counter(self, subject: str, kind: QuotaKind, day: date | None = None) -> int:
        day = day or datetime.now(UTC).date()
        async with self.sessionmaker() as session:
            value = await session.scalar(
                select(QuotaCounter.used).where(
                    QuotaCounter.subject == subject,
                    QuotaCounter.kind == kind,
                    QuotaCounter.day == day,
                )
            )
        return int(value or 0)

    async def ledger(self, tenant_id: uuid.UUID) -> Ledger:
        async with self.sessionmaker() as session:
            balance = await session.scalar(
                select(CreditAccount.balance).where(CreditAccount.tenant_id == tenant_id)
            )
            total, lowest = (
                await session.execute(
                    select(
                        func.coalesce(func.sum(CreditLedgerEntry.delta), 0),
                        func.coalesce(func.min(CreditLedgerEntry.balance_after), 0),
                    ).where(CreditLedgerEntry.tenant_id == tenant_id)
                )
            ).one()
            rows = await session.execute(
                select(CreditLedgerEntry.reason, func.count())
                .where(CreditLedgerEntry.tenant_id == tenant_id)
                .group_by(CreditLedgerEntry.reason)
            )
            reasons = {CreditReason(reason): int(count) for reason, count in rows}
        return Ledger(int(balance or 0), int(total), int(lowest), reasons)
