"""Backups on both databases and both blob stores (filesystem, S3 via moto server mode)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from app.models import BackupMetadata, BillingTier
from app.storage.blobs import BlobStoreError
from tests.support.builders import Account, register
from tests.support.storage import (
    blob_keys,
    count_rows,
    set_account_tier,
    sha256,
    staged_files,
    used_bytes,
)

pytestmark = pytest.mark.usefixtures("backend")

BACKUP = "/api/v1/backup"


def backup_headers(
    account: Account, data: bytes, timestamp: str, version: str = "1.4.0"
) -> dict[str, str]:
    return {
        **account.headers,
        "X-Backup-Version": version,
        "X-Backup-Timestamp": timestamp,
        "X-Backup-Checksum": sha256(data),
        "Content-Type": "application/octet-stream",
    }


async def put_backup(
    client: httpx.AsyncClient, account: Account, data: bytes, timestamp: str
) -> httpx.Response:
    return await client.put(BACKUP, content=data, headers=backup_headers(account, data, timestamp))


async def pro_account(app: FastAPI, client: httpx.AsyncClient) -> Account:
    account = await register(client)
    await set_account_tier(app, client, account, BillingTier.PRO)
    return account


async def assert_nothing_stored(app: FastAPI) -> None:
    assert await count_rows(app, BackupMetadata) == 0
    assert blob_keys(app) == []
    assert staged_files(app) == []
    assert await used_bytes(app, "backups") == 0


async def test_round_trip_and_if_modified_since(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    data = os.urandom(2 * 1024 * 1024 + 3)
    response = await put_backup(client, account, data, "2026-11-20T10:30:15.250000Z")
    assert response.status_code == 201, response.text
    info = response.json()
    assert info["size_bytes"] == len(data) and info["checksum"] == sha256(data)
    assert info["version"] == "1.4.0"

    latest = await client.get(BACKUP, headers=account.headers)
    assert latest.status_code == 200
    assert latest.content == data
    assert latest.headers["X-Checksum"] == sha256(data)
    last_modified = latest.headers["Last-Modified"]
    assert parsedate_to_datetime(last_modified) == datetime(2026, 11, 20, 10, 30, 15, tzinfo=UTC)

    same = await client.get(BACKUP, headers={**account.headers, "If-Modified-Since": last_modified})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["Last-Modified"] == last_modified
    earlier = format_datetime(datetime(2026, 11, 20, 10, 30, 14, tzinfo=UTC), usegmt=True)
    changed = await client.get(BACKUP, headers={**account.headers, "If-Modified-Since": earlier})
    assert changed.status_code == 200 and changed.content == data
    ignored = await client.get(BACKUP, headers={**account.headers, "If-Modified-Since": "junk"})
    assert ignored.status_code == 200


async def test_history_is_newest_first_and_latest_follows_it(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await pro_account(app, client)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    # Uploaded out of order; the backup's own timestamp decides.
    for days in (2, 5, 1):
        stamp = (base + timedelta(days=days)).isoformat()
        response = await put_backup(client, account, f"day {days}".encode(), stamp)
        assert response.status_code == 201, response.text
    # Unix seconds are accepted too.
    epoch = str(int((base + timedelta(days=3)).timestamp()))
    assert (await put_backup(client, account, b"day 3", epoch)).status_code == 201

    history = await client.get(f"{BACKUP}/history", headers=account.headers)
    assert history.status_code == 200
    body = history.json()
    assert body["total"] == 4
    stamps = [item["timestamp"] for item in body["items"]]
    assert stamps == sorted(stamps, reverse=True)
    assert [datetime.fromisoformat(s).day for s in stamps] == [6, 4, 3, 2]
    assert (await client.get(BACKUP, headers=account.headers)).content == b"day 5"

    page = await client.get(
        f"{BACKUP}/history", params={"limit": 1, "page": 2}, headers=account.headers
    )
    assert [i["id"] for i in page.json()["items"]] == [body["items"][1]["id"]]


async def test_no_backup_is_404(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    response = await client.get(BACKUP, headers=account.headers)
    assert response.status_code == 404 and response.json()["error"] == "backup_not_found"


async def test_bad_headers_store_nothing(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    headers = {**backup_headers(account, b"data", "2026-01-01T00:00:00Z")}
    mismatch = {**headers, "X-Backup-Checksum": sha256(b"other")}
    response = await client.put(BACKUP, content=b"data", headers=mismatch)
    assert response.status_code == 400 and response.json()["error"] == "checksum_mismatch"
    bad_time = {**headers, "X-Backup-Timestamp": "yesterday"}
    response = await client.put(BACKUP, content=b"data", headers=bad_time)
    assert response.status_code == 422
    missing = {k: v for k, v in headers.items() if k != "X-Backup-Version"}
    assert (await client.put(BACKUP, content=b"data", headers=missing)).status_code == 422
    await assert_nothing_stored(app)


async def test_free_tier_gets_402(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await put_backup(client, account, b"data", "2026-01-01T00:00:00Z")
    assert response.status_code == 402
    assert response.json()["error"] == "backup_quota_exceeded"
    assert "free" in response.json()["message"]
    await assert_nothing_stored(app)


@pytest.mark.parametrize("extra_settings", [{"BACKUP_QUOTA_PRO_BYTES": 1000}])
async def test_quota_counts_the_sum_of_backups(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    first = await put_backup(client, account, b"a" * 600, "2026-01-01T00:00:00Z")
    assert first.status_code == 201
    assert (
        await put_backup(client, account, b"b" * 400, "2026-01-02T00:00:00Z")
    ).status_code == 201
    refused = await put_backup(client, account, b"c", "2026-01-03T00:00:00Z")
    assert refused.status_code == 402 and refused.json()["error"] == "backup_quota_exceeded"
    assert await count_rows(app, BackupMetadata) == 2
    assert len(blob_keys(app)) == 2
    assert await used_bytes(app, "backups") == 1000
    # Record storage is a separate quota.
    assert await used_bytes(app, "records") == 0

    deleted = await client.delete(f"{BACKUP}/{first.json()['id']}", headers=account.headers)
    assert deleted.status_code == 204
    assert await used_bytes(app, "backups") == 400
    assert (
        await put_backup(client, account, b"c" * 600, "2026-01-03T00:00:00Z")
    ).status_code == 201


async def test_delete_of_someone_elses_backup_is_404(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    owner = await pro_account(app, client)
    intruder = await pro_account(app, client)
    backup_id = (await put_backup(client, owner, b"mine", "2026-01-01T00:00:00Z")).json()["id"]

    response = await client.delete(f"{BACKUP}/{backup_id}", headers=intruder.headers)
    assert response.status_code == 404 and response.json()["error"] == "backup_not_found"
    assert (await client.get(BACKUP, headers=intruder.headers)).status_code == 404
    assert (await client.get(f"{BACKUP}/history", headers=intruder.headers)).json()["total"] == 0
    assert (await client.get(BACKUP, headers=owner.headers)).content == b"mine"
    assert len(blob_keys(app)) == 1

    assert (await client.delete(f"{BACKUP}/{backup_id}", headers=owner.headers)).status_code == 204
    assert (await client.delete(f"{BACKUP}/{backup_id}", headers=owner.headers)).status_code == 404
    await assert_nothing_stored(app)


async def test_same_timestamp_twice_keeps_both(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    stamp = "2026-01-01T00:00:00Z"
    assert (await put_backup(client, account, b"first", stamp)).status_code == 201
    assert (await put_backup(client, account, b"second", stamp)).status_code == 201
    assert len(blob_keys(app)) == 2
    history = (await client.get(f"{BACKUP}/history", headers=account.headers)).json()
    assert history["total"] == 2
    assert {i["checksum"] for i in history["items"]} == {sha256(b"first"), sha256(b"second")}


async def test_blob_store_failure_leaves_no_row(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await pro_account(app, client)

    async def failing_put(key: str, path: object) -> None:
        raise BlobStoreError("bucket gone")

    monkeypatch.setattr(app.state.blob_store, "put_file", failing_put)
    response = await put_backup(client, account, b"data", "2026-01-01T00:00:00Z")
    assert response.status_code == 503 and response.json()["error"] == "blob_store_unavailable"
    await assert_nothing_stored(app)


async def test_database_failure_leaves_no_blob(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)

    def refuse(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO BACKUP_METADATA"):
            raise OperationalError(statement, parameters, Exception("injected failure"))

    engine = app.state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", refuse)
    try:
        response = await put_backup(client, account, os.urandom(1024), "2026-01-01T00:00:00Z")
    finally:
        event.remove(engine, "before_cursor_execute", refuse)
    assert response.status_code == 503 and response.json()["error"] == "storage_unavailable"
    await assert_nothing_stored(app)


async def test_download_a_chosen_version_byte_identical(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await pro_account(app, client)
    versions = [os.urandom(3 * 1024 * 1024 + n) for n in range(3)]
    infos = []
    for day, data in enumerate(versions, start=1):
        response = await put_backup(client, account, data, f"2026-03-0{day}T08:00:00Z")
        assert response.status_code == 201, response.text
        infos.append(response.json())

    # Restore the middle one, not the newest; the store is read in bounded chunks.
    chunk_sizes: list[int] = []
    store = app.state.blob_store
    real_open = store.open

    class CountingReader:
        def __init__(self, reader) -> None:
            self.reader = reader
            self.size = reader.size

        async def __aiter__(self):
            async for chunk in self.reader:
                chunk_sizes.append(len(chunk))
                yield chunk

        async def aclose(self) -> None:
            await self.reader.aclose()

    async def counting_open(key: str):
        return CountingReader(await real_open(key))

    monkeypatch.setattr(store, "open", counting_open)
    chosen = infos[1]
    response = await client.get(f"{BACKUP}/{chosen['id']}", headers=account.headers)
    assert response.status_code == 200
    assert response.content == versions[1]
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["Content-Length"] == str(len(versions[1]))
    assert response.headers["X-Checksum"] == sha256(versions[1])
    assert response.headers["ETag"] == f'"{sha256(versions[1])}"'
    assert response.headers["X-Backup-Id"] == chosen["id"]
    assert response.headers["X-Backup-Version"] == "1.4.0"
    assert response.headers["X-Backup-Timestamp"] == "2026-03-02T08:00:00+00:00"
    assert parsedate_to_datetime(response.headers["Last-Modified"]) == datetime(
        2026, 3, 2, 8, tzinfo=UTC
    )
    assert len(chunk_sizes) > 1 and max(chunk_sizes) <= 1024 * 1024

    etag = response.headers["ETag"]
    same = await client.get(
        f"{BACKUP}/{chosen['id']}", headers={**account.headers, "If-None-Match": etag}
    )
    assert same.status_code == 304 and same.content == b""
    assert same.headers["ETag"] == etag and same.headers["X-Backup-Id"] == chosen["id"]
    latest = await client.get(BACKUP, headers={**account.headers, "If-None-Match": etag})
    assert latest.status_code == 200 and latest.content == versions[2]


async def test_download_by_id_is_tenant_isolated(app: FastAPI, client: httpx.AsyncClient) -> None:
    owner = await pro_account(app, client)
    intruder = await pro_account(app, client)
    backup_id = (await put_backup(client, owner, b"mine", "2026-01-01T00:00:00Z")).json()["id"]
    for account, target in ((intruder, backup_id), (owner, "7d4f5a5e-0000-4000-8000-000000000000")):
        response = await client.get(f"{BACKUP}/{target}", headers=account.headers)
        assert response.status_code == 404
        assert response.json()["error"] == "backup_not_found"
        assert set(response.json()) >= {"error", "message", "request_id"}
    bad = await client.get(f"{BACKUP}/not-a-uuid", headers=owner.headers)
    assert bad.status_code == 422 and bad.json()["error"] == "validation_error"
    assert (await client.get(f"{BACKUP}/{backup_id}")).status_code == 401
    assert (await client.get(f"{BACKUP}/{backup_id}", headers=owner.headers)).content == b"mine"


@pytest.mark.parametrize(
    "stamp",
    [
        "1700000000000",
        "1700000000",
        "1700000000000.0",
        "2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20",
    ],
)
async def test_timestamp_in_milliseconds_seconds_or_iso(
    app: FastAPI, client: httpx.AsyncClient, stamp: str
) -> None:
    account = await pro_account(app, client)
    response = await put_backup(client, account, b"data", stamp)
    assert response.status_code == 201, response.text
    assert datetime.fromisoformat(response.json()["timestamp"]) == datetime(
        2023, 11, 14, 22, 13, 20, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "stamp", ["-1700000000", "1700000000000000", "99999999999", "9999-12-31T00:00:00Z", "now"]
)
async def test_absurd_timestamps_are_422(
    app: FastAPI, client: httpx.AsyncClient, stamp: str
) -> None:
    account = await pro_account(app, client)
    response = await put_backup(client, account, b"data", stamp)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_backup_timestamp" and "X-Backup-Timestamp" in body["message"]
    await assert_nothing_stored(app)
