"""SQL of plan runs: issued plans and run rows (statuses, credits, timestamps; no content)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from app.db import Database, begin_write
from app.models import IssuedPlan, PlanRun
from app.models.base import utcnow

ISSUED = IssuedPlan.__table__
RUNS = PlanRun.__table__
ACTIVE = ("queued", "running")


class PlanRunRepository:
    def __init__(self, db: Database) -> None:
        self.engine = db.engine

    # --- issued plans ------------------------------------------------------------------
    async def issue(self, plan_id: str, tenant_id: uuid.UUID, plan: dict[str, Any]) -> None:
        async with begin_write(self.engine) as connection:
            await connection.execute(
                ISSUED.insert().values(
                    plan_id=plan_id, tenant_id=tenant_id, plan=plan, created_at=utcnow()
                )
            )

    async def issued(
        self, plan_id: str, tenant_id: uuid.UUID, since: datetime
    ) -> dict[str, Any] | None:
        """The plan issued to this tenant under `plan_id`, if issued after `since`."""
        async with self.engine.connect() as connection:
            return await connection.scalar(
                select(ISSUED.c.plan).where(
                    ISSUED.c.plan_id == plan_id,
                    ISSUED.c.tenant_id == tenant_id,
                    ISSUED.c.created_at > since,
                )
            )

    async def prune_issued(self, before: datetime) -> int:
        async with begin_write(self.engine) as connection:
            result = await connection.execute(delete(ISSUED).where(ISSUED.c.created_at <= before))
        return result.rowcount or 0

    # --- runs ----------------------------------------------------------------------------
    async def create(self, **values: Any) -> None:
        now = utcnow()
        async with begin_write(self.engine) as connection:
            await connection.execute(RUNS.insert().values(created_at=now, updated_at=now, **values))

    async def get(self, run_id: str, tenant_id: uuid.UUID) -> PlanRun | None:
        """The run, only for the tenant that owns it."""
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(RUNS).where(RUNS.c.id == run_id, RUNS.c.tenant_id == tenant_id)
                )
            ).one_or_none()
        return None if row is None else PlanRun(**row._mapping)

    async def update_active(self, run_id: str, **values: Any) -> bool:
        """Change a run that is still queued or running; False when it has ended meanwhile
        (cancelled from another worker, or reaped)."""
        async with begin_write(self.engine) as connection:
            result = await connection.execute(
                update(RUNS)
                .where(RUNS.c.id == run_id, RUNS.c.status.in_(ACTIVE))
                .values(updated_at=utcnow(), **values)
            )
        return (result.rowcount or 0) > 0

    async def touch_active(self, run_ids: list[str]) -> None:
        """Mark runs this worker still executes as alive (see `reap`)."""
        if not run_ids:
            return
        async with begin_write(self.engine) as connection:
            await connection.execute(
                update(RUNS)
                .where(RUNS.c.id.in_(run_ids), RUNS.c.status.in_(ACTIVE))
                .values(updated_at=utcnow())
            )

    async def reap(self, stale_before: datetime) -> list[str | None]:
        """End as failed the runs whose worker stopped touching them; their lease ids."""
        async with begin_write(self.engine) as connection:
            gone = await connection.execute(
                update(RUNS)
                .where(RUNS.c.status.in_(ACTIVE), RUNS.c.updated_at < stale_before)
                .values(status="failed", error="worker_lost", finished_at=utcnow())
                .returning(RUNS.c.lease_id)
            )
            return list(gone.scalars())
