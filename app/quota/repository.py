"""Daily counters and concurrency leases: admission and release are one transaction each.

A scope (a caller, or the whole system) holds at most `limit` leases. Its row in
`concurrency_scopes` counts them; taking a slot is one conditional upsert on that
row (`INSERT … ON CONFLICT DO UPDATE … WHERE in_use < limit RETURNING`), so many
workers and hosts at once never hold more than the limit, and the cost does not
depend on the limit. A lease is one row per scope under the unit's lease id; a
lapsed lease (a crashed worker's) keeps its slot until its row is deleted — by the
first admission that finds the scope full, or by maintenance — and its count goes
with it. Daily counters are the same conditional upsert on (subject, kind, day).

On PostgreSQL the whole admission is one call of `quota_admit()` and the release one
call of `quota_release()` (PL/pgSQL, created by migration 005), each its own
transaction: one round trip each, through the driver's prepared statements.
SQLite runs the same steps from here in one transaction; it serialises writers,
which makes them correct for one process.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import case, delete, func, select, tuple_, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.db import Database, begin_write
from app.kit.sql import driver_connection
from app.models import QuotaCounter, QuotaKind
from app.models.quota import ConcurrencyLease, ConcurrencyScope

LEASES = ConcurrencyLease.__table__
SCOPES = ConcurrencyScope.__table__
COUNTERS = QuotaCounter.__table__


class CounterRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def prune_before(self, day: date) -> int:
        result = await self.session.execute(delete(QuotaCounter).where(QuotaCounter.day < day))
        return result.rowcount or 0


class Outcome(StrEnum):
    """What an admission came to (the values `quota_admit()` returns)."""

    OK = "ok"
    CONCURRENCY_LIMIT = "concurrency_limit"  # refused: the caller's slots are all taken
    AT_CAPACITY = "at_capacity"  # refused: the system's slots are all taken
    DAILY_QUOTA = "daily_quota"  # refused: the caller's daily total is spent
    IP_QUOTA = "ip_quota"  # refused: the address's daily total is spent
    IP_LLM_QUOTA_EXHAUSTED = "ip_llm_quota_exhausted"  # admitted, demo fallback
    LLM_QUOTA_EXHAUSTED = "llm_quota_exhausted"  # admitted, demo fallback

    @property
    def refused(self) -> bool:
        return self in _REFUSALS

    @property
    def counted_llm(self) -> bool:
        """Whether the LLM counts were taken (when the LLM is counted at all)."""
        return self is Outcome.OK


_REFUSALS = frozenset(
    {Outcome.CONCURRENCY_LIMIT, Outcome.AT_CAPACITY, Outcome.DAILY_QUOTA, Outcome.IP_QUOTA}
)


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """Everything one admission takes, with its limits (None: no such counter)."""

    lease_id: str
    scope: str
    limit: int
    system_scope: str
    system_limit: int
    now: datetime
    expires_at: datetime
    day: date
    subject: str
    daily_total: int
    ip_subject: str
    daily_per_ip: int | None
    daily_llm: int | None  # None: LLM use is metered by credits, not counted
    daily_llm_per_ip: int | None


@dataclass(frozen=True, slots=True)
class Usage:
    used: int
    llm_used: int
    ip_used: int
    ip_llm_used: int
    in_use: int
    system_in_use: int


class QuotaStore(ABC):
    """Admission, release and renewal of units of work, and what /quota/status reads."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    def for_database(cls, db: Database, *, synchronous_commit: bool = True) -> QuotaStore:
        if db.is_sqlite:
            return SQLiteQuotaStore(db.engine)
        return PostgresQuotaStore(db.engine, synchronous_commit=synchronous_commit)

    @abstractmethod
    async def admit(self, request: AdmissionRequest) -> Outcome:
        """Take the unit's slots and counts, or none of them; what it came to."""

    @abstractmethod
    async def release(
        self, lease_id: str, day: date, counts: Sequence[tuple[str, QuotaKind]]
    ) -> None:
        """Delete the lease (its slots come back) and give back `counts` of `day`."""

    async def renew(self, lease_id: str, now: datetime, expires_at: datetime) -> bool:
        """Move a live lease's expiry on; False when it has lapsed (a lapsed lease stays so)."""
        async with begin_write(self.engine) as connection:
            result = await connection.execute(
                update(LEASES)
                .where(LEASES.c.lease_id == lease_id, LEASES.c.expires_at > now)
                .values(expires_at=expires_at)
            )
        return (result.rowcount or 0) > 0

    async def usage(
        self, subject: str, ip_subject: str, scope: str, system_scope: str, day: date, now: datetime
    ) -> Usage:
        """The day's counts and the live leases of both scopes, in one query."""

        def used(who: str, kind: QuotaKind):
            return (
                select(COUNTERS.c.used)
                .where(COUNTERS.c.subject == who, COUNTERS.c.kind == kind, COUNTERS.c.day == day)
                .scalar_subquery()
            )

        def live(where: str):
            return (
                select(func.count())
                .select_from(LEASES)
                .where(LEASES.c.scope == where, LEASES.c.expires_at > now)
                .scalar_subquery()
            )

        statement = select(
            used(subject, QuotaKind.TOTAL),
            used(subject, QuotaKind.LLM),
            used(ip_subject, QuotaKind.TOTAL),
            used(ip_subject, QuotaKind.LLM),
            live(scope),
            live(system_scope),
        )
        async with self.engine.connect() as connection:
            row = (await connection.execute(statement)).one()
        return Usage(*(int(value or 0) for value in row))

    async def delete_lapsed_leases(self, now: datetime) -> int:
        """Delete lapsed leases and give their slots back; how many went.

        One short transaction per scope, skipping any lease a release or renewal holds
        at that moment; then the rows of scopes that hold nothing go too.
        """
        async with self.engine.connect() as connection:
            scopes = list(
                await connection.scalars(
                    select(LEASES.c.scope).where(LEASES.c.expires_at <= now).distinct()
                )
            )
        deleted = 0
        for scope in scopes:
            async with begin_write(self.engine) as connection:
                lapsed = await _delete_lapsed(connection, scope, now)
                if lapsed:
                    await connection.execute(
                        update(SCOPES)
                        .where(SCOPES.c.scope == scope)
                        .values(
                            in_use=case(
                                (SCOPES.c.in_use > lapsed, SCOPES.c.in_use - lapsed), else_=0
                            )
                        )
                    )
                deleted += lapsed
        async with begin_write(self.engine) as connection:
            await connection.execute(delete(SCOPES).where(SCOPES.c.in_use <= 0))
        return deleted


async def _delete_lapsed(connection: AsyncConnection, scope: str, now: datetime) -> int:
    # FOR UPDATE SKIP LOCKED on PostgreSQL (nothing on SQLite, which has one writer).
    lapsed = (
        select(LEASES.c.lease_id, LEASES.c.scope)
        .where(LEASES.c.scope == scope, LEASES.c.expires_at <= now)
        .with_for_update(skip_locked=True)
    )
    result = await connection.execute(
        delete(LEASES).where(tuple_(LEASES.c.lease_id, LEASES.c.scope).in_(lapsed))
    )
    return result.rowcount or 0


# --- PostgreSQL: one statement each ---------------------------------------------------------
_ADMIT = "SELECT quota_admit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
_RELEASE = "SELECT quota_release($1, $2, $3, $4, $5)"


class PostgresQuotaStore(QuotaStore):
    """Admission and release straight through asyncpg on a pooled connection.

    One prepared statement each, its own transaction (see `driver_connection`). Going
    past SQLAlchemy's execution layer here halves the Python time per unit of work.
    """

    def __init__(self, engine: AsyncEngine, *, synchronous_commit: bool = True) -> None:
        super().__init__(engine)
        self.synchronous_commit = synchronous_commit

    async def admit(self, request: AdmissionRequest) -> Outcome:
        outcome = await self._call(
            _ADMIT,
            request.lease_id,
            request.scope,
            request.limit,
            request.system_scope,
            request.system_limit,
            request.now,
            request.expires_at,
            request.day,
            request.subject,
            request.daily_total,
            request.ip_subject,
            request.daily_per_ip,
            request.daily_llm,
            request.daily_llm_per_ip,
            self.synchronous_commit,
        )
        return Outcome(outcome)

    async def release(
        self, lease_id: str, day: date, counts: Sequence[tuple[str, QuotaKind]]
    ) -> None:
        await self._call(
            _RELEASE,
            lease_id,
            day,
            [subject for subject, _ in counts],
            [kind.value for _, kind in counts],
            self.synchronous_commit,
        )

    async def _call(self, statement: str, *arguments: object) -> Any:
        async with driver_connection(self.engine, statement.split("(")[0]) as driver:
            return await driver.fetchval(statement, *arguments)


# --- SQLite: the same steps in one transaction ----------------------------------------------
class SQLiteQuotaStore(QuotaStore):
    async def admit(self, request: AdmissionRequest) -> Outcome:
        async with begin_write(self.engine) as connection:
            outcome = await _admit(connection, request)
            # A refusal takes nothing: everything it counted goes with the rollback.
            if outcome.refused:
                await connection.rollback()
            return outcome

    async def release(
        self, lease_id: str, day: date, counts: Sequence[tuple[str, QuotaKind]]
    ) -> None:
        async with begin_write(self.engine) as connection:
            gone = await connection.scalars(
                delete(LEASES).where(LEASES.c.lease_id == lease_id).returning(LEASES.c.scope)
            )
            for scope in sorted(gone):
                await _free_slot(connection, scope)
            for subject, kind in counts:
                await _uncount(connection, subject, kind, day)


async def _admit(connection: AsyncConnection, r: AdmissionRequest) -> Outcome:
    """`quota_admit()` step by step; the caller rolls a refusal back."""
    if not await _take_slot(connection, r.scope, r.limit, r.now):
        return Outcome.CONCURRENCY_LIMIT
    if not await _take_slot(connection, r.system_scope, r.system_limit, r.now):
        return Outcome.AT_CAPACITY
    if not await _count(connection, r.subject, QuotaKind.TOTAL, r.day, r.daily_total):
        return Outcome.DAILY_QUOTA
    if r.daily_per_ip is not None and not await _count(
        connection, r.ip_subject, QuotaKind.TOTAL, r.day, r.daily_per_ip
    ):
        return Outcome.IP_QUOTA
    await connection.execute(
        LEASES.insert(),
        [
            {"lease_id": r.lease_id, "scope": r.scope, "expires_at": r.expires_at},
            {"lease_id": r.lease_id, "scope": r.system_scope, "expires_at": r.expires_at},
        ],
    )
    if r.daily_llm is None:
        return Outcome.OK
    # The address's LLM budget first: a fresh visitor id cannot add to it.
    if r.daily_llm_per_ip is not None and not await _count(
        connection, r.ip_subject, QuotaKind.LLM, r.day, r.daily_llm_per_ip
    ):
        return Outcome.IP_LLM_QUOTA_EXHAUSTED
    if not await _count(connection, r.subject, QuotaKind.LLM, r.day, r.daily_llm):
        if r.daily_llm_per_ip is not None:
            await _uncount(connection, r.ip_subject, QuotaKind.LLM, r.day)
        return Outcome.LLM_QUOTA_EXHAUSTED
    return Outcome.OK


async def _take_slot(connection: AsyncConnection, scope: str, limit: int, now: datetime) -> bool:
    if limit <= 0:
        return False
    taken = await connection.scalar(
        sqlite.insert(SCOPES)
        .values(scope=scope, in_use=1)
        .on_conflict_do_update(
            index_elements=[SCOPES.c.scope],
            set_={"in_use": SCOPES.c.in_use + 1},
            where=SCOPES.c.in_use < limit,
        )
        .returning(SCOPES.c.in_use)
    )
    if taken is not None:
        return True
    # Full: free the slots of lapsed leases (a crashed worker's), then look again.
    lapsed = await _delete_lapsed(connection, scope, now)
    if not lapsed:
        return False
    held = await connection.scalar(
        update(SCOPES)
        .where(SCOPES.c.scope == scope)
        .values(in_use=case((SCOPES.c.in_use > lapsed, SCOPES.c.in_use - lapsed), else_=0))
        .returning(SCOPES.c.in_use)
    )
    if held is None or held >= limit:
        return False
    await connection.execute(
        update(SCOPES).where(SCOPES.c.scope == scope).values(in_use=SCOPES.c.in_use + 1)
    )
    return True


async def _free_slot(connection: AsyncConnection, scope: str) -> None:
    await connection.execute(
        update(SCOPES)
        .where(SCOPES.c.scope == scope, SCOPES.c.in_use > 0)
        .values(in_use=SCOPES.c.in_use - 1)
    )


async def _count(
    connection: AsyncConnection, subject: str, kind: QuotaKind, day: date, limit: int
) -> bool:
    if limit <= 0:
        return False
    used = await connection.scalar(
        sqlite.insert(COUNTERS)
        .values(subject=subject, kind=kind, day=day, used=1)
        .on_conflict_do_update(
            index_elements=[COUNTERS.c.subject, COUNTERS.c.kind, COUNTERS.c.day],
            set_={"used": COUNTERS.c.used + 1},
            where=COUNTERS.c.used < limit,
        )
        .returning(COUNTERS.c.used)
    )
    return used is not None


async def _uncount(connection: AsyncConnection, subject: str, kind: QuotaKind, day: date) -> None:
    await connection.execute(
        update(COUNTERS)
        .where(
            COUNTERS.c.subject == subject,
            COUNTERS.c.kind == kind,
            COUNTERS.c.day == day,
            COUNTERS.c.used > 0,
        )
        .values(used=COUNTERS.c.used - 1)
    )
