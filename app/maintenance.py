"""Housekeeping that keeps the tables and the staging directory from growing without bound.

One pass (`run_maintenance`):
- deletes daily quota counters older than yesterday (the gate only reads today's;
  yesterday's stay for a client asking just after midnight);
- deletes lapsed concurrency leases (a crashed worker's) and gives their slots back,
  one short transaction per scope, then the rows of scopes that hold nothing;
- sweeps upload staging files a crashed process left behind, older than
  `STAGING_MAX_AGE_SECONDS` and not held by an upload in progress.

In the app the pass runs every `MAINTENANCE_INTERVAL_SECONDS` as a supervised task
(`maintenance_lifespan`; 0 turns it off); from cron, `adiuva maintenance`.
`app/kit/tasks.py` supervises it, as it does the demo session cleanup: a failed pass is
logged and retried with a growing delay, and the task stops with the lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI

from app.config import Settings
from app.db import Database
from app.kit.tasks import supervised
from app.models.base import utcnow
from app.quota.repository import CounterRepository, QuotaStore
from app.storage.streaming import sweep_staging

log = logging.getLogger(__name__)


@dataclass(slots=True)
class MaintenanceReport:
    counters_pruned: int = 0
    leases_deleted: int = 0
    staging_files_swept: int = 0


async def run_maintenance(
    db: Database,
    staging_dir: Path | None,
    *,
    staging_max_age: float,
    now: datetime | None = None,
) -> MaintenanceReport:
    now = now or utcnow()
    report = MaintenanceReport()
    # One short transaction each: neither holds SQLite's write lock for long.
    async with db.sessionmaker() as session, session.begin():
        yesterday = now.date() - timedelta(days=1)
        report.counters_pruned = await CounterRepository(session).prune_before(yesterday)
    report.leases_deleted = await QuotaStore.for_database(db).delete_lapsed_leases(now)
    if staging_dir is not None:
        report.staging_files_swept = await anyio.to_thread.run_sync(
            sweep_staging, staging_dir, staging_max_age
        )
    if report.counters_pruned or report.leases_deleted or report.staging_files_swept:
        log.info(
            "maintenance pass",
            extra={
                "counters_pruned": report.counters_pruned,
                "leases_deleted": report.leases_deleted,
                "staging_files_swept": report.staging_files_swept,
            },
        )
    return report


@asynccontextmanager
async def maintenance_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """Runs after the database and the blob store are open, and stops before they close."""

    async def one_pass() -> MaintenanceReport:
        return await run_maintenance(
            app.state.db,
            app.state.blob_store.staging_dir,
            staging_max_age=settings.STAGING_MAX_AGE_SECONDS,
        )

    async with supervised("maintenance", one_pass, settings.MAINTENANCE_INTERVAL_SECONDS) as task:
        app.state.maintenance_task = task
        yield


async def maintenance_once(settings: Settings) -> MaintenanceReport:
    """One pass for cron (`adiuva maintenance`), without starting the app."""
    # Imported here: the blob store pulls in boto3, which the pass itself needs not.
    from app.storage.lifespan import build_blob_store

    db = Database(settings.database_url, settings)
    store = await build_blob_store(settings)
    try:
        return await run_maintenance(
            db, store.staging_dir, staging_max_age=settings.STAGING_MAX_AGE_SECONDS
        )
    finally:
        await store.aclose()
        await db.dispose()
