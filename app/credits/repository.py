"""Credit balances and their append-only ledger.

Every movement of a balance is one `CreditStore.move()`: the balance changes by a
conditional statement and its ledger row (with the balance after it) is written in
the same transaction, so the ledger always sums to the balance and no balance goes
negative. On PostgreSQL a movement is one call of `credit_move()` (PL/pgSQL, created
by migration 006), its own transaction: one round trip, through the driver's
prepared statements. SQLite runs the same steps from here in one transaction, each
beginning with a write, so the transaction holds SQLite's write lock from its first
statement.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.db import Database, begin_write
from app.kit.sql import driver_connection
from app.models import CreditAccount, CreditLedgerEntry, CreditReason
from app.models.base import utcnow

ACCOUNTS = CreditAccount.__table__
LEDGER = CreditLedgerEntry.__table__


class Move(StrEnum):
    """How a movement changes a balance (the modes of `credit_move()`)."""

    CREDIT = "credit"  # add the amount (the account is created if missing)
    DEBIT = "debit"  # take the amount if the balance covers it, else move nothing
    DEBIT_AVAILABLE = "debit_available"  # take as much of the amount as the balance covers


@dataclass(frozen=True, slots=True)
class CreditMove:
    """One movement of a tenant's balance, and who made it (for its ledger row)."""

    tenant_id: uuid.UUID
    mode: Move
    amount: int  # never negative; the mode says which way it goes
    reason: CreditReason
    user_id: uuid.UUID | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Movement:
    """What a movement did: its ledger row (None: nothing recorded), the signed amount
    moved, and the balance after it (the balance found, when nothing moved)."""

    entry_id: int | None
    moved: int
    balance: int


class CreditRepository:
    """What the credits page reads."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def balance(self, tenant_id: uuid.UUID) -> int:
        value = await self.session.scalar(
            select(CreditAccount.balance).where(CreditAccount.tenant_id == tenant_id)
        )
        return int(value or 0)

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


class CreditStore(ABC):
    """Movements of balances, and the monthly grant."""

    insert = staticmethod(postgresql.insert)

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    def for_database(cls, db: Database) -> CreditStore:
        return SQLiteCreditStore(db.engine) if db.is_sqlite else PostgresCreditStore(db.engine)

    @abstractmethod
    async def move(self, request: CreditMove) -> Movement:
        """Apply one movement and write its ledger row, atomically."""

    async def grant_for_period(self, tenant_id: uuid.UUID, amount: int, period: str) -> None:
        """Create the account if missing; add `amount` once for `period` (if positive).

        The account row decides: the grant is a conditional UPDATE on its
        `last_grant_period`, so whichever worker asks, each period is granted once.
        """
        async with begin_write(self.engine) as connection:
            await connection.execute(
                self.insert(ACCOUNTS)
                .values(tenant_id=tenant_id, balance=0)
                .on_conflict_do_nothing(index_elements=[ACCOUNTS.c.tenant_id])
            )
            if amount <= 0:
                return
            balance = await connection.scalar(
                update(ACCOUNTS)
                .where(
                    ACCOUNTS.c.tenant_id == tenant_id,
                    or_(
                        ACCOUNTS.c.last_grant_period.is_(None),
                        ACCOUNTS.c.last_grant_period != period,
                    ),
                )
                .values(
                    balance=ACCOUNTS.c.balance + amount,
                    last_grant_period=period,
                    period_granted=amount,
                )
                .returning(ACCOUNTS.c.balance)
            )
            if balance is not None:
                grant = CreditMove(tenant_id, Move.CREDIT, amount, CreditReason.MONTHLY_GRANT)
                await _append(connection, grant, amount, balance)


async def top_up_to_grant(
    connection: AsyncConnection,
    tenant_id: uuid.UUID,
    grant: int,
    period: str,
    *,
    is_sqlite: bool,
    user_id: uuid.UUID | None = None,
) -> int:
    """Raise this period's grant to `grant` (a plan upgrade); the credits added.

    Runs in the caller's transaction (the webhook's, with its event claim). The
    account row is locked first, then the difference between `grant` and the
    largest grant already given this period is added, with its ledger row: a second
    call, or an upgrade after a downgrade in the same period, adds nothing more, and
    nothing is ever taken back. Without a grant this period yet, this is the period's
    grant (`monthly_grant`) at the new tier's amount.
    """
    insert = sqlite.insert if is_sqlite else postgresql.insert
    await connection.execute(
        insert(ACCOUNTS)
        .values(tenant_id=tenant_id, balance=0)
        .on_conflict_do_nothing(index_elements=[ACCOUNTS.c.tenant_id])
    )
    account = ACCOUNTS.c.tenant_id == tenant_id
    row = (
        await connection.execute(
            update(ACCOUNTS)
            .where(account)
            .values(updated_at=utcnow())
            .returning(ACCOUNTS.c.last_grant_period, ACCOUNTS.c.period_granted)
        )
    ).one()
    granted = row.period_granted if row.last_grant_period == period else 0
    amount = grant - granted
    if amount <= 0:
        return 0
    balance = await connection.scalar(
        update(ACCOUNTS)
        .where(account)
        .values(balance=ACCOUNTS.c.balance + amount, last_grant_period=period, period_granted=grant)
        .returning(ACCOUNTS.c.balance)
    )
    reason = CreditReason.PLAN_UPGRADE if granted else CreditReason.MONTHLY_GRANT
    await _append(
        connection, CreditMove(tenant_id, Move.CREDIT, amount, reason, user_id), amount, balance
    )
    return amount


# --- PostgreSQL: one statement each ---------------------------------------------------------
# The reason goes as text: an enum parameter would make asyncpg look its type up on
# every new connection (a few more round trips).
_MOVE = (
    "SELECT entry_id, moved, balance_after "
    "FROM credit_move($1, $2, $3, $4::text::credit_reason, $5, $6)"
)


class PostgresCreditStore(CreditStore):
    """Movements straight through asyncpg on a pooled connection, one prepared statement
    each (see `driver_connection`). They commit durably: money never takes the
    relaxed commit the quota counters may."""

    async def move(self, request: CreditMove) -> Movement:
        async with driver_connection(self.engine, "credit_move") as driver:
            row = await driver.fetchrow(
                _MOVE,
                request.tenant_id,
                request.mode.value,
                request.amount,
                request.reason.value,
                request.user_id,
                request.request_id,
            )
        return Movement(row[0], row[1], row[2])


# --- SQLite: the same steps in one transaction ----------------------------------------------
class SQLiteCreditStore(CreditStore):
    insert = staticmethod(sqlite.insert)

    async def move(self, request: CreditMove) -> Movement:
        async with begin_write(self.engine) as connection:
            moved, balance = await _move(
                connection, request.tenant_id, request.mode, request.amount
            )
            if balance is None:  # an uncovered debit: nothing moves, nothing is recorded
                found = await connection.scalar(
                    select(ACCOUNTS.c.balance).where(ACCOUNTS.c.tenant_id == request.tenant_id)
                )
                return Movement(None, 0, int(found or 0))
            entry_id = await _append(connection, request, moved, balance)
            return Movement(entry_id, moved, balance)


async def _move(
    connection: AsyncConnection, tenant_id: uuid.UUID, mode: Move, amount: int
) -> tuple[int, int | None]:
    """`credit_move()`'s balance change: (the signed amount moved, the balance after it),
    the balance None for an uncovered debit."""
    account = ACCOUNTS.c.tenant_id == tenant_id
    if mode is Move.CREDIT:
        balance = await connection.scalar(
            sqlite.insert(ACCOUNTS)
            .values(tenant_id=tenant_id, balance=amount)
            .on_conflict_do_update(
                index_elements=[ACCOUNTS.c.tenant_id],
                set_={"balance": ACCOUNTS.c.balance + amount, "updated_at": utcnow()},
            )
            .returning(ACCOUNTS.c.balance)
        )
        return amount, balance
    if mode is Move.DEBIT:
        balance = await connection.scalar(
            update(ACCOUNTS)
            .where(account, ACCOUNTS.c.balance >= amount)
            .values(balance=ACCOUNTS.c.balance - amount)
            .returning(ACCOUNTS.c.balance)
        )
        return -amount, balance
    # As far as the balance covers: a write first takes the lock, then the amount is
    # decided on a balance no one else can change before the commit.
    available = await connection.scalar(
        update(ACCOUNTS).where(account).values(updated_at=utcnow()).returning(ACCOUNTS.c.balance)
    )
    take = min(amount, available or 0)
    if not take:
        return 0, available or 0
    balance = await connection.scalar(
        update(ACCOUNTS)
        .where(account)
        .values(balance=ACCOUNTS.c.balance - take)
        .returning(ACCOUNTS.c.balance)
    )
    return -take, balance


async def _append(
    connection: AsyncConnection, request: CreditMove, delta: int, balance_after: int
) -> int:
    return await connection.scalar(
        LEDGER.insert()
        .values(
            tenant_id=request.tenant_id,
            user_id=request.user_id,
            delta=delta,
            reason=request.reason,
            balance_after=balance_after,
            request_id=request.request_id,
        )
        .returning(LEDGER.c.id)
    )
