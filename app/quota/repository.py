"""Daily counters and concurrency leases: every change is one atomic statement.

On PostgreSQL many workers and hosts share these rows; a conditional upsert
(`INSERT … ON CONFLICT DO UPDATE … WHERE used < limit RETURNING`) admits
exactly `limit` units however many arrive at once. SQLite serialises writers,
which makes the same statements correct for one process.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Integer, String, bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.sql import upsert
from app.models import ConcurrencyLease, QuotaCounter, QuotaKind
from app.models.base import UTCDateTime


class CounterRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def consume(self, subject: str, kind: QuotaKind, day: date, limit: int) -> int | None:
        """Count one unit if `used < limit`; the new count, or None when the limit is reached."""
        if limit <= 0:
            return None
        table = QuotaCounter.__table__
        statement = (
            upsert(self.session, table)
            .values(subject=subject, kind=kind, day=day, used=1)
            .on_conflict_do_update(
                index_elements=[table.c.subject, table.c.kind, table.c.day],
                set_={"used": table.c.used + 1},
                where=table.c.used < limit,
            )
            .returning(table.c.used)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def give_back(self, subject: str, kind: QuotaKind, day: date) -> None:
        """Undo one `consume` (never below zero)."""
        await self.session.execute(
            update(QuotaCounter)
            .where(
                QuotaCounter.subject == subject,
                QuotaCounter.kind == kind,
                QuotaCounter.day == day,
                QuotaCounter.used > 0,
            )
            .values(used=QuotaCounter.used - 1)
        )

    async def used(self, subject: str, kind: QuotaKind, day: date) -> int:
        value = await self.session.scalar(
            select(QuotaCounter.used).where(
                QuotaCounter.subject == subject, QuotaCounter.kind == kind, QuotaCounter.day == day
            )
        )
        return int(value or 0)

    async def prune_before(self, day: date) -> int:
        result = await self.session.execute(delete(QuotaCounter).where(QuotaCounter.day < day))
        return result.rowcount or 0


@dataclass(frozen=True, slots=True)
class Lease:
    scope: str
    slot: int
    lease_id: str


# Each lost race means another caller won a slot, so `limit + 1` looks always suffice.
_MAX_ACQUIRE_ATTEMPTS = 33

# Slot numbers 0..limit-1 that hold no live lease, lowest first (SQLite and PostgreSQL).
_FIRST_FREE_SLOT = text(
    """
    WITH RECURSIVE slots(n) AS (
        SELECT 0 UNION ALL SELECT n + 1 FROM slots WHERE n + 1 < :limit
    )
    SELECT n FROM slots
    WHERE NOT EXISTS (
        SELECT 1 FROM concurrency_leases AS taken
        WHERE taken.scope = :scope AND taken.slot = slots.n AND taken.expires_at > :now
    )
    ORDER BY n
    LIMIT 1
    """
).bindparams(
    bindparam("scope", type_=String),
    bindparam("limit", type_=Integer),
    bindparam("now", type_=UTCDateTime),
)


class LeaseRepository:
    """A scope has `limit` numbered slots; a slot is free when absent or expired."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def acquire(
        self, scope: str, limit: int, now: datetime, expires_at: datetime
    ) -> Lease | None:
        if limit <= 0:
            return None
        lease_id = secrets.token_hex(16)
        table = ConcurrencyLease.__table__
        # Find the lowest free slot with one indexed query, then take it with one upsert
        # that only overwrites an expired lease. Losing a race to another caller means
        # looking again; the loop ends when a slot is ours or none is free.
        for _ in range(min(limit + 1, _MAX_ACQUIRE_ATTEMPTS)):
            slot = await self.session.scalar(
                _FIRST_FREE_SLOT, {"scope": scope, "limit": limit, "now": now}
            )
            if slot is None:
                return None
            statement = (
                upsert(self.session, table)
                .values(scope=scope, slot=slot, lease_id=lease_id, expires_at=expires_at)
                .on_conflict_do_update(
                    index_elements=[table.c.scope, table.c.slot],
                    set_={"lease_id": lease_id, "expires_at": expires_at},
                    where=table.c.expires_at <= now,
                )
                .returning(table.c.slot)
            )
            if (await self.session.execute(statement)).scalar_one_or_none() is not None:
                return Lease(scope, slot, lease_id)
        return None

    async def release(self, lease: Lease) -> None:
        await self.session.execute(
            delete(ConcurrencyLease).where(
                ConcurrencyLease.scope == lease.scope,
                ConcurrencyLease.slot == lease.slot,
                ConcurrencyLease.lease_id == lease.lease_id,
            )
        )

    async def renew(self, lease: Lease, expires_at: datetime) -> bool:
        result = await self.session.execute(
            update(ConcurrencyLease)
            .where(
                ConcurrencyLease.scope == lease.scope,
                ConcurrencyLease.slot == lease.slot,
                ConcurrencyLease.lease_id == lease.lease_id,
            )
            .values(expires_at=expires_at)
        )
        return (result.rowcount or 0) == 1

    async def delete_expired(self, now: datetime) -> int:
        """Remove lapsed leases (their slots are free either way); how many went."""
        result = await self.session.execute(
            delete(ConcurrencyLease).where(ConcurrencyLease.expires_at <= now)
        )
        return result.rowcount or 0

    async def in_use(self, scope: str, now: datetime) -> int:
        value = await self.session.scalar(
            select(func.count())
            .select_from(ConcurrencyLease)
            .where(ConcurrencyLease.scope == scope, ConcurrencyLease.expires_at > now)
        )
        return int(value or 0)
