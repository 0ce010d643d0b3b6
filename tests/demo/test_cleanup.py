"""Cleanup of ended demo sessions: every owned row goes, hooks run first, stats for admins."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from app.demo.cleanup import EndedDemoSession, purge_ended_sessions, register_cleanup_hook
from app.models import (
    BackupMetadata,
    Base,
    CreditAccount,
    CreditLedgerEntry,
    CreditReason,
    DemoSession,
    Membership,
    MembershipRole,
    StorageRecord,
    StorageSyncHead,
    StorageTombstone,
    Tenant,
    User,
)
from tests.demo.conftest import ADMIN_EMAIL
from tests.support.builders import register, register_admin
from tests.support.demo import SESSIONS, expire_session, header, session_row, start_session

pytestmark = pytest.mark.usefixtures("backend")

TENANT_TABLES = [table for table in Base.metadata.sorted_tables if "tenant_id" in table.c]


async def _give_the_tenant_rows_of_every_kind(app, tenant_id: uuid.UUID, user_id: uuid.UUID):
    now = datetime.now(UTC)
    async with app.state.db.sessionmaker() as session, session.begin():
        session.add(Membership(tenant_id=tenant_id, user_id=user_id, role=MembershipRole.MEMBER))
        session.add(CreditAccount(tenant_id=tenant_id, balance=5))
        await session.flush()
        await session.execute(
            insert(CreditLedgerEntry).values(
                tenant_id=tenant_id,
                delta=5,
                reason=CreditReason.ADMIN_GRANT,
                balance_after=5,
            )
        )
        session.add(
            StorageRecord(
                tenant_id=tenant_id,
                user_id=user_id,
                table_name="tasks",
                blob_key=f"{user_id}/tasks/x",
                checksum="0" * 64,
                size_bytes=1,
                change_seq=2,
            )
        )
        # The sync feed's rows: a deleted record's tombstone and the owner's change counter.
        session.add(
            StorageTombstone(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                user_id=user_id,
                table_name="tasks",
                change_seq=1,
                deleted_at=now,
            )
        )
        session.add(StorageSyncHead(tenant_id=tenant_id, user_id=user_id, last_seq=2))
        session.add(
            BackupMetadata(
                tenant_id=tenant_id,
                user_id=user_id,
                blob_key=f"{user_id}/backups/1",
                version="1",
                backup_timestamp=now,
                checksum="0" * 64,
                size_bytes=1,
            )
        )


async def _rows_owned_by(app, tenant_id: uuid.UUID) -> dict[str, int]:
    counts = {}
    async with app.state.db.sessionmaker() as session:
        for table in TENANT_TABLES:
            counts[table.name] = await session.scalar(
                select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
            )
        counts["tenants"] = await session.scalar(
            select(func.count()).select_from(Tenant).where(Tenant.id == tenant_id)
        )
    return counts


async def _user_id(app, email: str) -> uuid.UUID:
    async with app.state.db.sessionmaker() as session:
        return await session.scalar(select(User.id).where(User.email == email))


async def test_cleanup_removes_every_row_an_ended_session_owns(client, app):
    expired = await start_session(client)
    deleted = await start_session(client, "product_team")
    alive = await start_session(client)
    user = await register(client)
    user_id = await _user_id(app, user.email)
    for created in (expired, deleted, alive):
        await _give_the_tenant_rows_of_every_kind(
            app, uuid.UUID(created["virtual_tenant_id"]), user_id
        )
    await expire_session(app, expired["session_id"])
    assert (await client.delete(f"{SESSIONS}/{deleted['session_id']}")).status_code == 204

    seen: list[EndedDemoSession] = []

    async def remember(session: EndedDemoSession) -> None:
        # Hooks run before the rows go: the session's storage rows are still there.
        assert (await _rows_owned_by(app, session.tenant_id))["storage_records"] == 1
        seen.append(session)

    report = await purge_ended_sessions(app.state.db, [remember])
    assert report.purged == 2 and report.failed == 0 and report.marked_expired == 1
    assert {s.session_id for s in seen} == {expired["session_id"], deleted["session_id"]}
    assert {str(s.tenant_id) for s in seen} == {
        expired["virtual_tenant_id"],
        deleted["virtual_tenant_id"],
    }

    for created in (expired, deleted):
        owned = await _rows_owned_by(app, uuid.UUID(created["virtual_tenant_id"]))
        assert set(owned.values()) == {0}, owned
        assert await session_row(app, created["session_id"]) is None
        response = await client.get(f"{SESSIONS}/{created['session_id']}")
        assert response.status_code == 404
    survivor = await _rows_owned_by(app, uuid.UUID(alive["virtual_tenant_id"]))
    assert survivor["tenants"] == survivor["demo_sessions"] == survivor["storage_records"] == 1
    assert (await client.get(f"{SESSIONS}/{alive['session_id']}")).status_code == 200
    assert await _user_id(app, user.email) == user_id  # the user owns more than the demo

    again = await purge_ended_sessions(app.state.db, [remember])
    assert again.purged == 0 and len(seen) == 2


async def test_a_failing_hook_keeps_the_session_for_the_next_pass(client, app):
    created = await start_session(client)
    other = await start_session(client)
    await expire_session(app, created["session_id"])
    await expire_session(app, other["session_id"])
    calls: list[str] = []

    async def flaky(session: EndedDemoSession) -> None:
        calls.append(session.session_id)
        if session.session_id == created["session_id"] and calls.count(session.session_id) == 1:
            raise RuntimeError("blob store unavailable")

    first = await purge_ended_sessions(app.state.db, [flaky])
    assert first.purged == 1 and first.failed == 1
    row = await session_row(app, created["session_id"])
    assert row is not None and row.status == "expired"
    assert await session_row(app, other["session_id"]) is None

    second = await purge_ended_sessions(app.state.db, [flaky])
    assert second.purged == 1 and second.failed == 0
    assert await session_row(app, created["session_id"]) is None


async def test_cleanup_pages_through_many_sessions(client, app):
    created = [await start_session(client) for _ in range(7)]
    for body in created:
        await expire_session(app, body["session_id"])
    report = await purge_ended_sessions(app.state.db, [], batch_size=3)
    assert report.purged == 7
    async with app.state.db.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(DemoSession)) == 0


@pytest.mark.parametrize("extra_settings", [{"DEMO_CLEANUP_INTERVAL_SECONDS": 0.05}])
async def test_the_background_task_purges_and_uses_registered_hooks(client, app):
    purged: list[str] = []

    async def hook(session: EndedDemoSession) -> None:
        purged.append(session.session_id)

    register_cleanup_hook(app, hook)
    created = await start_session(client)
    await expire_session(app, created["session_id"])
    for _ in range(200):
        if await session_row(app, created["session_id"]) is None:
            break
        await asyncio.sleep(0.05)
    assert await session_row(app, created["session_id"]) is None
    assert created["session_id"] in purged
    task = app.state.demo_cleanup_task
    assert task is not None and not task.done()


async def test_the_background_task_is_off_when_the_interval_is_zero(app):
    assert app.state.demo_cleanup_task is None


async def test_the_cli_command_purges_ended_sessions(client, app, settings, tmp_path):
    created = await start_session(client)
    alive = await start_session(client)
    await expire_session(app, created["session_id"])
    env = {
        **os.environ,
        "ENV": "test",
        "DATABASE_URL": settings.database_url,
        "DATA_DIR": str(tmp_path / "cli-data"),
        "JWT_SECRET": settings.JWT_SECRET,
        "LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "demo-cleanup",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert "demo sessions purged: 1" in stdout.decode()
    assert await session_row(app, created["session_id"]) is None
    assert await session_row(app, alive["session_id"]) is not None


async def test_stats_are_for_admins_only(client):
    assert (await client.get("/api/v1/demo/stats")).status_code == 401
    plain = await register(client)
    forbidden = await client.get("/api/v1/demo/stats", headers=plain.headers)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == "admin_required"
    created = await start_session(client)
    in_session = await client.get("/api/v1/demo/stats", headers=header(created["session_id"]))
    assert in_session.status_code == 401


async def test_stats_count_sessions_by_status_and_length(client, app):
    admin = await register_admin(client, app, ADMIN_EMAIL)
    empty = (await client.get("/api/v1/demo/stats", headers=admin.headers)).json()
    assert empty["total"] == 0 and empty["average_length_seconds"] is None

    day = datetime.now(UTC).date()
    for _ in range(3):
        await start_session(client)
    expired = await start_session(client)
    deleted = await start_session(client)
    await expire_session(app, expired["session_id"], ago=timedelta(minutes=1))
    await client.delete(f"{SESSIONS}/{deleted['session_id']}")

    response = await client.get("/api/v1/demo/stats", headers=admin.headers)
    assert response.status_code == 200
    stats = response.json()
    assert stats["sessions_by_status"] == {"active": 3, "expired": 1, "deleted": 1}
    assert stats["total"] == 5
    if datetime.now(UTC).date() == day:  # not across midnight UTC
        assert stats["created_today"] == 5
    # The expired one ended before it began (moved into the past): its length is 0;
    # the rest have lasted a moment so far, far below a session's 30 minutes.
    assert 0 <= stats["average_length_seconds"] < 60
