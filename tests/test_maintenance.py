"""Housekeeping: old quota counters, lapsed leases and orphaned staging files go; live ones stay.

The pass itself on both databases, the supervised in-app task, its retry after a
failure, and the cron command.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.config import Settings
from app.kit.tasks import periodic
from app.maintenance import run_maintenance
from app.models import ConcurrencyLease, QuotaCounter, QuotaKind
from app.models.base import utcnow
from app.models.quota import ConcurrencyScope
from app.quota.repository import Outcome, QuotaStore
from app.storage.blobs import new_staging_path
from app.storage.streaming import spool_body
from tests.support.admissions import admission_request
from tests.support.servers import poll

pytestmark = pytest.mark.usefixtures("backend")

HOUR = 3600.0


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # The in-app task is tested on its own; elsewhere it must not race the test.
    return {"MAINTENANCE_INTERVAL_SECONDS": 0, "STAGING_MAX_AGE_SECONDS": HOUR}


async def count_on(app: FastAPI, subject: str, day: date) -> None:
    async with app.state.db.sessionmaker() as session, session.begin():
        session.add(QuotaCounter(subject=subject, kind=QuotaKind.TOTAL, day=day, used=1))


async def counter_days(app: FastAPI) -> set[date]:
    async with app.state.db.sessionmaker() as session:
        return set(await session.scalars(select(QuotaCounter.day)))


async def lease_expiring(app: FastAPI, scope: str, expires_at: datetime) -> str:
    """A unit of `scope`'s caller holding a slot there and a system slot until `expires_at`."""
    now = utcnow()
    request = admission_request(scope, now=now, ttl=(expires_at - now).total_seconds())
    assert await QuotaStore.for_database(app.state.db).admit(request) is Outcome.OK
    return request.lease_id


async def lease_scopes(app: FastAPI) -> set[str]:
    async with app.state.db.sessionmaker() as session:
        return set(await session.scalars(select(ConcurrencyLease.scope)))


async def slots_in_use(app: FastAPI) -> dict[str, int]:
    async with app.state.db.sessionmaker() as session:
        rows = await session.execute(select(ConcurrencyScope.scope, ConcurrencyScope.in_use))
    return dict(rows.tuples().all())


def age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def orphan(staging_dir: Path, seconds_old: float) -> Path:
    path = new_staging_path(staging_dir)
    path.write_bytes(b"half an upload")
    age(path, seconds_old)
    return path


async def run(app: FastAPI, settings: Settings):
    return await run_maintenance(
        app.state.db,
        app.state.blob_store.staging_dir,
        staging_max_age=settings.STAGING_MAX_AGE_SECONDS,
    )


async def test_counters_older_than_yesterday_are_pruned(app: FastAPI, settings: Settings) -> None:
    today = utcnow().date()
    for days_ago in (0, 1, 2, 9):
        await count_on(app, "user:someone", today - timedelta(days=days_ago))
    report = await run(app, settings)
    assert report.counters_pruned == 2
    assert await counter_days(app) == {today, today - timedelta(days=1)}


async def test_lapsed_leases_are_deleted_with_their_slots_and_live_ones_stay(
    app: FastAPI, settings: Settings
) -> None:
    now = utcnow()
    await lease_expiring(app, "subject:crashed-worker", now - timedelta(seconds=1))
    await lease_expiring(app, "subject:streaming", now + timedelta(minutes=2))
    assert await slots_in_use(app) == {
        "subject:crashed-worker": 1,
        "subject:streaming": 1,
        "system": 2,
    }
    report = await run(app, settings)
    assert report.leases_deleted == 2  # the crashed unit's caller and system rows
    assert await lease_scopes(app) == {"subject:streaming", "system"}
    # The slots came back with the rows; a scope that holds nothing has no row left.
    assert await slots_in_use(app) == {"subject:streaming": 1, "system": 1}


async def test_orphaned_staging_files_are_swept_and_uploads_in_progress_kept(
    app: FastAPI, settings: Settings
) -> None:
    staging = app.state.blob_store.staging_dir
    old = orphan(staging, 2 * HOUR)
    fresh = orphan(staging, 60)

    # A slow upload: its file has not been written to for longer than the age limit.
    more = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"first part "
        await more.wait()
        yield b"last part"

    upload = asyncio.create_task(spool_body(slow_body(), staging, 1024))
    await poll(lambda: _exists_other_than(staging, {old, fresh}), "the upload's staging file")
    [in_progress] = set(staging.glob("upload-*.part")) - {old, fresh}
    age(in_progress, 2 * HOUR)

    report = await run(app, settings)
    assert report.staging_files_swept == 1
    assert not old.exists()
    assert fresh.exists() and in_progress.exists()

    more.set()
    body = await upload
    assert body.path == in_progress and body.size == len(b"first part last part")
    body.discard()


async def _exists_other_than(directory: Path, known: set[Path]) -> bool:
    return bool(set(directory.glob("upload-*.part")) - known)


@pytest.mark.parametrize(
    "settings_overrides", [{"MAINTENANCE_INTERVAL_SECONDS": 0.05}], ids=["every-50ms"]
)
async def test_the_in_app_task_runs_the_pass(app: FastAPI) -> None:
    old = utcnow().date() - timedelta(days=3)
    await count_on(app, "ip:203.0.113.10", old)
    await lease_expiring(app, "subject:gone", utcnow() - timedelta(seconds=1))

    async def pruned() -> bool:
        return old not in await counter_days(app) and not await lease_scopes(app)

    await poll(pruned, "the maintenance task to prune")
    task = app.state.maintenance_task
    assert task is not None and not task.done()


async def test_the_in_app_task_is_off_when_the_interval_is_zero(app: FastAPI) -> None:
    assert app.state.maintenance_task is None


async def test_a_failed_pass_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    recovered = asyncio.Event()

    async def flaky() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("database restarting")
        recovered.set()

    task = asyncio.create_task(periodic("flaky pass", flaky, 0.01, first_retry=0.01))
    try:
        await asyncio.wait_for(recovered.wait(), timeout=30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    [failure] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failure.getMessage() == "flaky pass failed; retrying"
    assert failure.exc_info is not None and "database restarting" in str(failure.exc_info[1])


async def test_the_cli_command_runs_one_pass(app: FastAPI, settings: Settings) -> None:
    await count_on(app, "user:someone", utcnow().date() - timedelta(days=2))
    stale = orphan(app.state.blob_store.staging_dir, 2 * HOUR)
    env = {
        **os.environ,
        "ENV": "test",
        "DATABASE_URL": settings.database_url,
        "DATA_DIR": str(settings.DATA_DIR),
        "JWT_SECRET": settings.JWT_SECRET,
        "LOG_LEVEL": "WARNING",
        "STAGING_MAX_AGE_SECONDS": str(HOUR),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "maintenance",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert "quota counters pruned: 1" in stdout.decode()
    assert "staging files swept: 1" in stdout.decode()
    assert await counter_days(app) == set()
    assert not stale.exists()
