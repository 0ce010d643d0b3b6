from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update

from app.kit.repository import Repository
from app.kit.sql import upsert
from app.models import DemoExample, DemoSession, DemoSessionStatus, Tenant, TenantKind


@dataclass(frozen=True, slots=True)
class EndedDemoSession:
    """What a cleanup hook is told about a session about to be purged."""

    session_id: str
    tenant_id: uuid.UUID


def _ended_or_expired(now: datetime):
    return or_(DemoSession.status != DemoSessionStatus.ACTIVE, DemoSession.expires_at <= now)


class DemoSessionRepository(Repository[DemoSession]):
    model = DemoSession

    async def extend(
        self,
        session_id: str,
        *,
        seen_count: int,
        new_expires_at: datetime,
        max_extensions: int,
        now: datetime,
    ) -> bool:
        """One conditional UPDATE: applies only if nobody extended since the row was read.

        Concurrent extends of the same session race on `extension_count`; the loser
        matches no row and re-reads, so the count can never pass `max_extensions`.
        """
        result = await self.session.execute(
            update(DemoSession)
            .where(
                DemoSession.id == session_id,
                DemoSession.status == DemoSessionStatus.ACTIVE,
                DemoSession.expires_at > now,
                DemoSession.extension_count == seen_count,
                DemoSession.extension_count < max_extensions,
            )
            .values(extension_count=DemoSession.extension_count + 1, expires_at=new_expires_at)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    async def set_tenant_expiry(self, tenant_id: uuid.UUID, expires_at: datetime) -> None:
        await self.session.execute(
            update(Tenant)
            .where(Tenant.id == tenant_id)
            .values(expires_at=expires_at)
            .execution_options(synchronize_session=False)
        )

    async def end(self, session_id: str, now: datetime) -> bool:
        result = await self.session.execute(
            update(DemoSession)
            .where(DemoSession.id == session_id, DemoSession.status == DemoSessionStatus.ACTIVE)
            .values(status=DemoSessionStatus.DELETED, ended_at=now)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    async def lock_for_write(self, session_id: str) -> None:
        """Take the row's write lock before a read-modify-write of its workspace.

        A no-op UPDATE locks the row on PostgreSQL and takes SQLite's database
        write lock, so two writers of one workspace run one after the other.
        """
        await self.session.execute(
            update(DemoSession)
            .where(DemoSession.id == session_id)
            .values(id=DemoSession.id)
            .execution_options(synchronize_session=False)
        )

    async def workspace_of(self, session_id: str) -> dict[str, Any] | None:
        return await self.session.scalar(
            select(DemoSession.workspace).where(DemoSession.id == session_id)
        )

    async def live_workspace(self, session_id: str, now: datetime) -> dict[str, Any] | None:
        """The workspace of a session that is still active and unexpired."""
        return await self.session.scalar(
            select(DemoSession.workspace).where(
                DemoSession.id == session_id,
                DemoSession.status == DemoSessionStatus.ACTIVE,
                DemoSession.expires_at > now,
            )
        )

    async def set_workspace(self, session_id: str, workspace: dict[str, Any]) -> None:
        await self.session.execute(
            update(DemoSession)
            .where(DemoSession.id == session_id)
            .values(workspace=workspace)
            .execution_options(synchronize_session=False)
        )

    # --- cleanup -----------------------------------------------------------------

    async def mark_expired(self, now: datetime) -> int:
        result = await self.session.execute(
            update(DemoSession)
            .where(DemoSession.status == DemoSessionStatus.ACTIVE, DemoSession.expires_at <= now)
            .values(status=DemoSessionStatus.EXPIRED, ended_at=DemoSession.expires_at)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount

    async def ended(self, now: datetime, *, limit: int, after: str = "") -> list[EndedDemoSession]:
        """Expired or deleted sessions, oldest id first, from `after` on (keyset paging)."""
        rows = await self.session.execute(
            select(DemoSession.id, DemoSession.tenant_id)
            .where(_ended_or_expired(now), DemoSession.id > after)
            .order_by(DemoSession.id)
            .limit(limit)
        )
        return [EndedDemoSession(session_id, tenant_id) for session_id, tenant_id in rows]

    async def purge(self, session_ids: Sequence[str], now: datetime) -> int:
        """Delete the demo tenants of these sessions (if still ended); rows cascade."""
        if not session_ids:
            return 0
        tenants = select(DemoSession.tenant_id).where(
            DemoSession.id.in_(session_ids), _ended_or_expired(now)
        )
        result = await self.session.execute(
            delete(Tenant)
            .where(Tenant.kind == TenantKind.DEMO, Tenant.id.in_(tenants))
            .execution_options(synchronize_session=False)
        )
        return result.rowcount

    # --- stats ---------------------------------------------------------------------

    async def count_by_status(self, now: datetime) -> dict[str, int]:
        counts = {status.value: 0 for status in DemoSessionStatus}
        rows = await self.session.execute(
            select(DemoSession.status, func.count()).group_by(DemoSession.status)
        )
        for status, count in rows:
            counts[DemoSessionStatus(status).value] = int(count)
        # An active row past its expiry is expired, whether or not cleanup has marked it yet.
        lapsed = await self.session.scalar(
            select(func.count())
            .select_from(DemoSession)
            .where(DemoSession.status == DemoSessionStatus.ACTIVE, DemoSession.expires_at <= now)
        )
        counts[DemoSessionStatus.ACTIVE.value] -= int(lapsed or 0)
        counts[DemoSessionStatus.EXPIRED.value] += int(lapsed or 0)
        return counts

    async def created_since(self, since: datetime) -> int:
        count = await self.session.scalar(
            select(func.count()).select_from(DemoSession).where(DemoSession.created_at >= since)
        )
        return int(count or 0)

    async def lifetimes(self) -> list[tuple[datetime, datetime, datetime | None]]:
        rows = await self.session.execute(
            select(DemoSession.created_at, DemoSession.expires_at, DemoSession.ended_at)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


class DemoExampleRepository(Repository[DemoExample]):
    model = DemoExample

    async def agents(self) -> set[str]:
        return set(await self.session.scalars(select(DemoExample.agent)))

    async def all(self) -> list[DemoExample]:
        return list(await self.session.scalars(select(DemoExample).order_by(DemoExample.agent)))

    async def insert_missing(self, rows: Sequence[dict[str, Any]]) -> list[str]:
        """Insert the examples no one stored yet; the agents actually inserted.

        `ON CONFLICT DO NOTHING` on the primary key: when two inits race, each agent's
        example is stored once, by whichever insert comes first; the other is a no-op.
        """
        if not rows:
            return []
        statement = (
            upsert(self.session, DemoExample.__table__)
            .values(list(rows))
            .on_conflict_do_nothing(index_elements=["agent"])
            .returning(DemoExample.__table__.c.agent)
        )
        return sorted((await self.session.execute(statement)).scalars())
