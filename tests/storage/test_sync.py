"""The change feed, conditional requests and timestamps, as a syncing desktop client uses them.

Both databases, both blob stores (the feed itself is database-only; the writes that
feed it go through the blob store).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import OperationalError

from app.errors import Gone
from app.models import BillingTier, StorageRecord, StorageTombstone
from app.storage.repository import SyncRepository
from app.storage.sync import purge_tombstones, read_changes
from tests.support.builders import Account, register
from tests.support.storage import (
    blob_keys,
    count_rows,
    me,
    set_account_tier,
    sha256,
    staged_files,
    used_bytes,
)

pytestmark = pytest.mark.usefixtures("backend")

RECORDS = "/api/v1/storage/records"
CHANGES = f"{RECORDS}/changes"


def upload_headers(account: Account, data: bytes, table: str = "notes") -> dict[str, str]:
    return {
        **account.headers,
        "X-Table": table,
        "X-Checksum": sha256(data),
        "Content-Type": "application/octet-stream",
    }


async def pro_account(app: FastAPI, client: httpx.AsyncClient) -> Account:
    account = await register(client)
    await set_account_tier(app, client, account, BillingTier.PRO)
    return account


async def create(
    client: httpx.AsyncClient, account: Account, data: bytes, table: str = "notes"
) -> dict[str, Any]:
    response = await client.post(
        RECORDS, content=data, headers=upload_headers(account, data, table)
    )
    assert response.status_code == 201, response.text
    return response.json()


async def replace(
    client: httpx.AsyncClient, account: Account, record_id: str, data: bytes, **headers: str
) -> httpx.Response:
    return await client.put(
        f"{RECORDS}/{record_id}",
        content=data,
        headers={**upload_headers(account, data), **headers},
    )


async def feed(client: httpx.AsyncClient, account: Account, **params: Any) -> dict[str, Any]:
    response = await client.get(CHANGES, params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def sync_all(
    client: httpx.AsyncClient, account: Account, cursor: str | None = None, limit: int = 2
) -> tuple[list[dict[str, Any]], str, int]:
    """Page through the feed until `has_more` is false: the changes, the cursor, the pages."""
    changes: list[dict[str, Any]] = []
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        page = await feed(client, account, **params)
        pages += 1
        assert len(page["changes"]) <= limit
        changes += page["changes"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return changes, cursor, pages
        assert pages < 1000


def apply(state: dict[str, str], changes: list[dict[str, Any]]) -> None:
    """What a client does with the feed: upsert or drop by id."""
    for change in changes:
        if change["deleted"]:
            state.pop(change["id"], None)
        else:
            state[change["id"]] = change["checksum"]


async def server_state(client: httpx.AsyncClient, account: Account) -> dict[str, str]:
    state: dict[str, str] = {}
    page = 1
    while True:
        response = await client.get(
            RECORDS, params={"page": page, "limit": 100}, headers=account.headers
        )
        body = response.json()
        state.update({item["id"]: item["checksum"] for item in body["items"]})
        if page * 100 >= body["total"]:
            return state
        page += 1


def assert_error(response: httpx.Response, status: int, error: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "message", "request_id"}
    if error is not None:
        assert body["error"] == error, body


async def test_sync_pages_changes_and_deletions_then_resumes(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await pro_account(app, client)
    first = await create(client, account, b"note one", "notes")
    second = await create(client, account, b"task one", "tasks")
    third = await create(client, account, b"note two", "notes")

    changes, cursor, pages = await sync_all(client, account, limit=2)
    assert pages == 2
    assert [c["id"] for c in changes] == [first["id"], second["id"], third["id"]]
    assert [c["table"] for c in changes] == ["notes", "tasks", "notes"]
    assert all(not c["deleted"] for c in changes)
    assert changes[1]["checksum"] == sha256(b"task one")
    assert changes[1]["size_bytes"] == len(b"task one")
    state: dict[str, str] = {}
    apply(state, changes)

    # Offline for a while: one update, one deletion, one new record.
    assert (await replace(client, account, first["id"], b"note one, edited")).status_code == 200
    deleted = await client.delete(f"{RECORDS}/{second['id']}", headers=account.headers)
    assert deleted.status_code == 204
    fourth = await create(client, account, b"checkpoint", "checkpoints")

    resumed, cursor, _ = await sync_all(client, account, cursor, limit=2)
    assert [(c["id"], c["deleted"]) for c in resumed] == [
        (first["id"], False),
        (second["id"], True),
        (fourth["id"], False),
    ]
    tombstone = resumed[1]
    assert tombstone["table"] == "tasks"
    assert tombstone["checksum"] is None and tombstone["size_bytes"] is None
    assert resumed[0]["checksum"] == sha256(b"note one, edited")
    apply(state, resumed)
    assert state == await server_state(client, account)

    # Nothing new: an empty page, and the cursor still works.
    again = await feed(client, account, cursor=cursor)
    assert again == {"changes": [], "next_cursor": again["next_cursor"], "has_more": False}
    assert (await feed(client, account, cursor=again["next_cursor"]))["changes"] == []

    # A full sync (no cursor) shows the live records, and the deletion.
    full, _, _ = await sync_all(client, account, limit=500)
    live = {c["id"] for c in full if not c["deleted"]}
    assert live == {first["id"], third["id"], fourth["id"]}


async def test_feed_is_isolated_per_owner(app: FastAPI, client: httpx.AsyncClient) -> None:
    owner = await pro_account(app, client)
    other = await pro_account(app, client)
    record = await create(client, owner, b"mine")
    deleted = await client.delete(f"{RECORDS}/{record['id']}", headers=owner.headers)
    assert deleted.status_code == 204
    await create(client, owner, b"still mine")

    theirs = await feed(client, other)
    assert theirs["changes"] == [] and theirs["has_more"] is False
    mine = await feed(client, owner)
    assert len(mine["changes"]) == 2

    # A cursor is only good for the feed that issued it.
    response = await client.get(
        CHANGES, params={"cursor": mine["next_cursor"]}, headers=other.headers
    )
    assert_error(response, 422, "invalid_cursor")
    for junk in ("not-a-cursor", "MS4yLjM", "%%%"):
        response = await client.get(CHANGES, params={"cursor": junk}, headers=owner.headers)
        assert_error(response, 422, "invalid_cursor")
    for params in ({"limit": 0}, {"limit": 501}, {"cursor": ""}):
        assert_error(await client.get(CHANGES, params=params, headers=owner.headers), 422)
    assert_error(await client.get(CHANGES), 401)


async def test_plain_listing_refuses_sync_parameters(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await pro_account(app, client)
    response = await client.get(
        RECORDS, params={"changed_since": "1700000000000"}, headers=account.headers
    )
    assert_error(response, 422, "use_change_feed")
    assert "/records/changes" in response.json()["message"]


async def test_changed_since_accepts_milliseconds_seconds_and_iso(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await pro_account(app, client)
    records = [await create(client, account, f"record {i}".encode()) for i in range(3)]
    pivot = datetime.fromisoformat(records[1]["updated_at"])
    forms = {
        "milliseconds": str(int(pivot.timestamp() * 1000)),  # Date.now()
        "seconds": str(int(pivot.timestamp())),
        "fractional seconds": f"{pivot.timestamp():.6f}",
        "ISO 8601": pivot.isoformat(),
        "ISO 8601, Z": pivot.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    for form, value in forms.items():
        since = (
            datetime.fromtimestamp(float(value) / 1000, UTC)
            if form == "milliseconds"
            else datetime.fromtimestamp(float(value), UTC)
            if form.endswith("seconds")
            else pivot
        )
        expected = [r["id"] for r in records if datetime.fromisoformat(r["updated_at"]) >= since]
        page = await feed(client, account, changed_since=value)
        assert [c["id"] for c in page["changes"]] == expected, form
        assert records[1]["id"] in expected and records[2]["id"] in expected

    # The cursor from a `changed_since` read resumes after everything it covered.
    page = await feed(client, account, changed_since=forms["milliseconds"])
    later = await create(client, account, b"later")
    resumed = await feed(client, account, cursor=page["next_cursor"])
    assert [c["id"] for c in resumed["changes"]] == [later["id"]]


@pytest.mark.parametrize(
    "value",
    ["yesterday", "-5", "1e12", "99999999999999999", "4102444800000", "2200-01-01T00:00:00Z"],
)
async def test_absurd_changed_since_is_422(
    app: FastAPI, client: httpx.AsyncClient, value: str
) -> None:
    account = await pro_account(app, client)
    response = await client.get(CHANGES, params={"changed_since": value}, headers=account.headers)
    assert_error(response, 422, "invalid_timestamp")
    assert "milliseconds" in response.json()["message"]


async def test_changed_since_older_than_the_retention_is_410(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await pro_account(app, client)
    response = await client.get(
        CHANGES, params={"changed_since": "946684800000"}, headers=account.headers
    )
    assert_error(response, 410, "changed_since_too_old")


async def test_expired_cursors_and_tombstone_purge(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    profile = await me(client, account)
    user_id, tenant_id = uuid.UUID(profile["id"]), uuid.UUID(profile["tenant_id"])
    kept = await create(client, account, b"kept")
    gone = await create(client, account, b"gone")
    cursor = (await feed(client, account))["next_cursor"]
    deleted = await client.delete(f"{RECORDS}/{gone['id']}", headers=account.headers)
    assert deleted.status_code == 204
    retention = timedelta(days=app.state.settings.SYNC_TOMBSTONE_RETENTION_DAYS)

    async with app.state.db.sessionmaker() as session:
        # Within the retention the cursor works; past it, 410 and a full sync.
        page = await read_changes(
            session,
            user_id,
            tenant_id,
            cursor_text=cursor,
            since=None,
            limit=10,
            retention=retention,
            now=datetime.now(UTC) + retention - timedelta(hours=1),
        )
        assert [(c.id, c.deleted) for c in page.changes] == [(uuid.UUID(gone["id"]), True)]
        with pytest.raises(Gone) as refused:
            await read_changes(
                session,
                user_id,
                tenant_id,
                cursor_text=cursor,
                since=None,
                limit=10,
                retention=retention,
                now=datetime.now(UTC) + retention + timedelta(hours=1),
            )
        assert refused.value.error == "sync_cursor_expired"

    # A cursor handed out mid-way through pages keeps the age of the run it belongs to.
    await create(client, account, b"one more")
    async with app.state.db.sessionmaker() as session:
        soon = datetime.now(UTC) + retention - timedelta(hours=1)
        midway = await read_changes(
            session,
            user_id,
            tenant_id,
            cursor_text=cursor,
            since=None,
            limit=1,
            retention=retention,
            now=soon,
        )
        assert midway.has_more
        with pytest.raises(Gone):
            await read_changes(
                session,
                user_id,
                tenant_id,
                cursor_text=midway.next_cursor,
                since=None,
                limit=1,
                retention=retention,
                now=soon + timedelta(hours=2),
            )
        caught_up = await read_changes(
            session,
            user_id,
            tenant_id,
            cursor_text=midway.next_cursor,
            since=None,
            limit=10,
            retention=retention,
            now=soon,
        )
        assert not caught_up.has_more
        renewed = await read_changes(
            session,
            user_id,
            tenant_id,
            cursor_text=caught_up.next_cursor,
            since=None,
            limit=10,
            retention=retention,
            now=soon + timedelta(hours=2),
        )
        assert renewed.changes == []

    # Tombstones outlive every valid cursor by a day's grace, then go.
    assert await purge_tombstones(app.state.db, retention) == 0
    assert await purge_tombstones(app.state.db, retention, datetime.now(UTC) + retention) == 0
    later = datetime.now(UTC) + retention + timedelta(days=1, minutes=1)
    assert await purge_tombstones(app.state.db, retention, later) == 1
    assert await count_rows(app, StorageTombstone) == 0
    full, _, _ = await sync_all(client, account, limit=10)
    assert [c["id"] for c in full if not c["deleted"]] == [kept["id"], full[-1]["id"]]
    assert not any(c["deleted"] for c in full)


async def test_conditional_get_304_round_trip(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    created = await client.post(
        RECORDS, content=b"version one", headers=upload_headers(account, b"version one")
    )
    etag = created.headers["ETag"]
    assert etag == f'"{sha256(b"version one")}"'
    url = f"{RECORDS}/{created.json()['id']}"

    fetched = await client.get(url, headers=account.headers)
    assert fetched.status_code == 200 and fetched.content == b"version one"
    assert fetched.headers["ETag"] == etag
    assert fetched.headers["Last-Modified"].endswith("GMT")

    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        same = await client.get(url, headers={**account.headers, "If-None-Match": header})
        assert same.status_code == 304, header
        assert same.content == b""
        assert same.headers["ETag"] == etag
        assert same.headers["X-Checksum"] == sha256(b"version one")
        assert "content-type" not in same.headers

    assert (await replace(client, account, created.json()["id"], b"version two")).status_code == 200
    changed = await client.get(url, headers={**account.headers, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.content == b"version two"
    assert changed.headers["ETag"] == f'"{sha256(b"version two")}"'


async def test_if_match_guards_replace_and_delete(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    record = await create(client, account, b"base")
    url = f"{RECORDS}/{record['id']}"
    base_etag = f'"{sha256(b"base")}"'
    # Another device writes first.
    assert (await replace(client, account, record["id"], b"theirs")).status_code == 200
    keys = blob_keys(app)
    before = await feed(client, account)

    stale = await replace(client, account, record["id"], b"mine", **{"If-Match": base_etag})
    assert_error(stale, 412, "precondition_failed")
    assert stale.headers["ETag"] == f'"{sha256(b"theirs")}"'
    stale_delete = await client.delete(url, headers={**account.headers, "If-Match": base_etag})
    assert_error(stale_delete, 412, "precondition_failed")
    weak = await replace(client, account, record["id"], b"mine", **{"If-Match": f"W/{base_etag}"})
    assert_error(weak, 412, "precondition_failed")
    # Nothing moved: the bytes, the blobs, the usage, the feed.
    assert (await client.get(url, headers=account.headers)).content == b"theirs"
    assert blob_keys(app) == keys and staged_files(app) == []
    assert await used_bytes(app) == len(b"theirs")
    assert (await feed(client, account, cursor=before["next_cursor"]))["changes"] == []

    current = stale.headers["ETag"]
    merged = await replace(client, account, record["id"], b"merged", **{"If-Match": current})
    assert merged.status_code == 200 and merged.headers["ETag"] == f'"{sha256(b"merged")}"'
    deleted = await client.delete(
        url, headers={**account.headers, "If-Match": merged.headers["ETag"]}
    )
    assert deleted.status_code == 204
    # The record is gone: its tombstone is all the feed has to say about it.
    tail = await feed(client, account, cursor=before["next_cursor"])
    assert [(c["id"], c["deleted"]) for c in tail["changes"]] == [(record["id"], True)]
    assert blob_keys(app) == []


async def test_failed_delete_leaves_record_blob_and_no_tombstone(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await pro_account(app, client)
    record = await create(client, account, b"precious")
    cursor = (await feed(client, account))["next_cursor"]

    def refuse(conn, cursor_, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO STORAGE_TOMBSTONES"):
            raise OperationalError(statement, parameters, Exception("injected failure"))

    engine = app.state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", refuse)
    try:
        response = await client.delete(f"{RECORDS}/{record['id']}", headers=account.headers)
    finally:
        event.remove(engine, "before_cursor_execute", refuse)
    assert_error(response, 503, "storage_unavailable")
    fetched = await client.get(f"{RECORDS}/{record['id']}", headers=account.headers)
    assert fetched.content == b"precious"
    assert await count_rows(app, StorageRecord) == 1 and len(blob_keys(app)) == 1
    assert await used_bytes(app) == len(b"precious")
    assert (await feed(client, account, cursor=cursor))["changes"] == []

    # The sequence number the failed delete took was rolled back with it.
    deleted = await client.delete(f"{RECORDS}/{record['id']}", headers=account.headers)
    assert deleted.status_code == 204
    tail = await feed(client, account, cursor=cursor)
    assert [(c["id"], c["deleted"]) for c in tail["changes"]] == [(record["id"], True)]


async def test_writers_racing_a_reader_never_make_it_miss_a_change(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await pro_account(app, client)
    writers_done = asyncio.Event()
    deleted: set[str] = set()

    async def writer(n: int) -> None:
        mine = [await create(client, account, f"w{n} r{i} v0".encode()) for i in range(3)]
        for version in (1, 2):
            for i, record in enumerate(mine):
                data = f"w{n} r{i} v{version}".encode()
                assert (await replace(client, account, record["id"], data)).status_code == 200
        response = await client.delete(f"{RECORDS}/{mine[0]['id']}", headers=account.headers)
        assert response.status_code == 204
        deleted.add(mine[0]["id"])

    state: dict[str, str] = {}
    seen_deleted: set[str] = set()
    cursor: str | None = None

    async def reader() -> int:
        nonlocal cursor
        reads = 0
        while not writers_done.is_set() and reads < 10_000:
            params: dict[str, Any] = {"limit": 3}
            if cursor is not None:
                params["cursor"] = cursor
            page = await feed(client, account, **params)
            apply(state, page["changes"])
            seen_deleted.update(c["id"] for c in page["changes"] if c["deleted"])
            cursor = page["next_cursor"]
            reads += 1
            await asyncio.sleep(0)
        return reads

    async def writers() -> None:
        try:
            await asyncio.gather(*(writer(n) for n in range(4)))
        finally:
            writers_done.set()

    reads, _ = await asyncio.gather(reader(), writers())
    assert reads > 1
    rest, _, _ = await sync_all(client, account, cursor, limit=3)
    apply(state, rest)
    seen_deleted.update(c["id"] for c in rest if c["deleted"])
    assert state == await server_state(client, account)
    assert len(state) == 8
    # The reader started from the beginning, so it saw every deletion.
    assert seen_deleted == deleted and len(deleted) == 4


async def _lock_waiters(app: FastAPI) -> int:
    async with app.state.db.engine.connect() as connection:
        return int(
            await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                    "AND query ILIKE '%storage_sync_heads%'"
                )
            )
            or 0
        )


async def test_a_change_committed_late_is_never_behind_a_cursor(
    app: FastAPI, client: httpx.AsyncClient, backend: str
) -> None:
    """A writer holds its change number uncommitted while another writer and a reader run.

    The second writer waits for the first (the head row stays locked until commit),
    and the reader's cursor stays before both, so after the commits it sees both.
    """
    account = await pro_account(app, client)
    profile = await me(client, account)
    user_id, tenant_id = uuid.UUID(profile["id"]), uuid.UUID(profile["tenant_id"])
    await create(client, account, b"before")
    start = (await feed(client, account))["next_cursor"]

    slow_id = uuid.uuid4()
    async with app.state.db.sessionmaker() as slow:
        await slow.begin()
        seq = await SyncRepository(slow).next_seq(user_id, tenant_id)
        slow.add(
            StorageRecord(
                id=slow_id,
                tenant_id=tenant_id,
                user_id=user_id,
                table_name="notes",
                blob_key=f"{user_id}/notes/{slow_id}",
                checksum=sha256(b"slow"),
                size_bytes=4,
                change_seq=seq,
            )
        )
        await slow.flush()

        fast = asyncio.create_task(create(client, account, b"fast"))
        if backend == "postgresql":
            for _ in range(500):
                if await _lock_waiters(app) or fast.done():
                    break
                await asyncio.sleep(0.01)
            assert not fast.done(), "a second writer got a number while the first was open"
            assert await _lock_waiters(app) == 1

        during = await feed(client, account, cursor=start)
        assert during["changes"] == []
        await slow.commit()
    fast_record = await fast

    after = await feed(client, account, cursor=during["next_cursor"])
    assert [c["id"] for c in after["changes"]] == [str(slow_id), fast_record["id"]]


async def test_migration_numbers_existing_records(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    import anyio.to_thread
    from alembic import command

    from tests.support.databases import alembic_config

    account = await pro_account(app, client)
    ids = [(await create(client, account, f"r{i}".encode()))["id"] for i in range(3)]
    await replace(client, account, ids[0], b"r0 again")
    await app.state.db.engine.dispose()
    config = alembic_config(database_url)
    await anyio.to_thread.run_sync(command.downgrade, config, "006")
    await anyio.to_thread.run_sync(command.upgrade, config, "head")

    changes, cursor, _ = await sync_all(client, account, limit=2)
    assert [c["id"] for c in changes] == [ids[1], ids[2], ids[0]]
    new = await create(client, account, b"after the migration")
    assert [c["id"] for c in (await feed(client, account, cursor=cursor))["changes"]] == [new["id"]]
    async with app.state.db.sessionmaker() as session:
        seqs = await session.scalar(select(func.max(StorageRecord.change_seq)))
    assert seqs == 4
