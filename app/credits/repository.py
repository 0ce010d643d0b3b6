"""Credit balances and their append-only ledger; balances move by conditional UPDATEs."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.sql import upsert
from app.models import CreditAccount, CreditLedgerEntry, CreditReason


class CreditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def ensure_account(self, tenant_id: uuid.UUID) -> None:
        table = CreditAccount.__table__
        await self.session.execute(
            upsert(self.session, table)
            .values(tenant_id=tenant_id, balance=0)
            .on_conflict_do_nothing(index_elements=[table.c.tenant_id])
        )

    async def balance(self, tenant_id: uuid.UUID) -> int:
        value = await self.session.scalar(
            select(CreditAccount.balance).where(CreditAccount.tenant_id == tenant_id)
        )
        return int(value or 0)

    async def grant_for_period(self, tenant_id: uuid.UUID, amount: int, period: str) -> int | None:
        """Add the monthly grant once per period; the new balance, or None if already granted."""
        result = await self.session.execute(
            update(CreditAccount)
            .where(
                CreditAccount.tenant_id == tenant_id,
                (CreditAccount.last_grant_period.is_(None))
                | (CreditAccount.last_grant_period != period),
            )
            .values(balance=CreditAccount.balance + amount, last_grant_period=period)
            .returning(CreditAccount.balance)
        )
        return result.scalar_one_or_none()

    async def debit_if_covered(self, tenant_id: uuid.UUID, amount: int) -> int | None:
        """Take `amount` only if the balance covers it; the new balance, or None."""
        result = await self.session.execute(
            update(CreditAccount)
            .where(CreditAccount.tenant_id == tenant_id, CreditAccount.balance >= amount)
            .values(balance=CreditAccount.balance - amount)
            .returning(CreditAccount.balance)
        )
        return result.scalar_one_or_none()

    async def credit(self, tenant_id: uuid.UUID, amount: int) -> int | None:
        result = await self.session.execute(
            update(CreditAccount)
            .where(CreditAccount.tenant_id == tenant_id)
            .values(balance=CreditAccount.balance + amount)
            .returning(CreditAccount.balance)
        )
        return result.scalar_one_or_none()

    async def append(
        self,
        tenant_id: uuid.UUID,
        delta: int,
        reason: CreditReason,
        balance_after: int,
        *,
        user_id: uuid.UUID | None = None,
        request_id: str | None = None,
    ) -> CreditLedgerEntry:
        entry = CreditLedgerEntry(
            tenant_id=tenant_id,
            user_id=user_id,
            delta=delta,
            reason=reason,
            balance_after=balance_after,
            request_id=request_id,
        )
        self.session.add(entry)
        await self.session.flush()
        return entry

    async def entries(
        self, tenant_id: uuid.UUID, *, page: int, limit: int
    ) -> tuple[list[CreditLedgerEntry], int]:
        total = await self.session.scalar(
            select(func.count())
            .select_from(CreditLedgerEntry)
            .where(CreditLedgerEntry.tenant_id == tenant_id)
        )
        rows = await self.session.scalars(
            select(CreditLedgerEntry)
            .where(CreditLedgerEntry.tenant_id == tenant_id)
            .order_by(CreditLedgerEntry.id.desc())
            .limit(limit)
            .offset((page - 1) * limit)
        )
        return list(rows), int(total or 0)

    async def ledger_sum(self, tenant_id: uuid.UUID) -> int:
        value = await self.session.scalar(
            select(func.coalesce(func.sum(CreditLedgerEntry.delta), 0)).where(
                CreditLedgerEntry.tenant_id == tenant_id
            )
        )
        return int(value or 0)
