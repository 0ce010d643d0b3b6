"""Records on both databases and both blob stores (filesystem, S3 via moto server mode)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from boto3.s3.transfer import TransferConfig
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from app.models import BillingTier, StorageRecord
from app.storage.blobs import BlobStoreError, S3BlobStore
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

RECORDS = "/api/v1/storage/records"


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


async def upload(
    client: httpx.AsyncClient, account: Account, data: bytes, table: str = "notes"
) -> httpx.Response:
    return await client.post(RECORDS, content=data, headers=upload_headers(account, data, table))


async def assert_nothing_stored(app: FastAPI) -> None:
    assert await count_rows(app, StorageRecord) == 0
    assert blob_keys(app) == []
    assert staged_files(app) == []
    assert await used_bytes(app) == 0


def assert_error(response: httpx.Response, status: int, error: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "message", "request_id"}
    if error is not None:
        assert body["error"] == error


async def test_round_trip_small_and_multi_megabyte(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    small = b"\x00encrypted\xff" * 10
    large = os.urandom(3 * 1024 * 1024 + 17)
    ids = []
    for data in (small, large):
        response = await upload(client, account, data)
        assert response.status_code == 201, response.text
        meta = response.json()
        assert meta["size_bytes"] == len(data)
        assert meta["checksum"] == sha256(data)
        assert meta["table"] == "notes"
        ids.append(meta["id"])

        fetched = await client.get(f"{RECORDS}/{meta['id']}", headers=account.headers)
        assert fetched.status_code == 200
        assert fetched.content == data
        assert fetched.headers["X-Checksum"] == sha256(data)
        assert fetched.headers["content-type"] == "application/octet-stream"

    me_id = (await client.get("/api/v1/auth/me", headers=account.headers)).json()["id"]
    assert blob_keys(app) == sorted(f"{me_id}/notes/{i}" for i in ids)
    assert await used_bytes(app) == len(small) + len(large)


@pytest.mark.parametrize("blob_backend", ["s3"], indirect=True)
async def test_s3_multipart_upload_round_trip(app: FastAPI, client: httpx.AsyncClient) -> None:
    store = app.state.blob_store
    assert isinstance(store, S3BlobStore)
    # S3's smallest part size, so an 11 MiB body goes up in three parts.
    part = 5 * 1024 * 1024
    store.transfer_config = TransferConfig(multipart_threshold=part, multipart_chunksize=part)
    account = await pro_account(app, client)
    data = os.urandom(11 * 1024 * 1024)
    created = await upload(client, account, data)
    assert created.status_code == 201, created.text
    (key,) = blob_keys(app)
    head = store.client.head_object(Bucket=store.bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ServerSideEncryption"] == "AES256"
    fetched = await client.get(f"{RECORDS}/{created.json()['id']}", headers=account.headers)
    assert fetched.content == data


@pytest.mark.parametrize("blob_backend", ["s3"], indirect=True)
async def test_s3_objects_are_encrypted_at_rest(app: FastAPI, client: httpx.AsyncClient) -> None:
    store = app.state.blob_store
    assert isinstance(store, S3BlobStore)
    account = await pro_account(app, client)
    response = await upload(client, account, b"ciphertext")
    assert response.status_code == 201
    (key,) = blob_keys(app)
    head = store.client.head_object(Bucket=store.bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"


async def test_list_filters_and_paginates(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    for i in range(5):
        data = f"note-{i}".encode()
        assert (await upload(client, account, data, "notes")).status_code == 201
    assert (await upload(client, account, b"task", "tasks")).status_code == 201

    page = await client.get(RECORDS, params={"table": "notes", "limit": 2}, headers=account.headers)
    assert page.status_code == 200
    body = page.json()
    assert body["total"] == 5 and body["page"] == 1 and body["limit"] == 2
    assert len(body["items"]) == 2
    last = await client.get(
        RECORDS, params={"table": "notes", "limit": 2, "page": 3}, headers=account.headers
    )
    assert len(last.json()["items"]) == 1
    everything = await client.get(RECORDS, headers=account.headers)
    assert everything.json()["total"] == 6
    assert {item["table"] for item in everything.json()["items"]} == {"notes", "tasks"}
    seen = {i["id"] for i in body["items"]} | {i["id"] for i in last.json()["items"]}
    assert len(seen) == 3

    for params in ({"limit": 0}, {"limit": 101}, {"page": 0}, {"table": "Bad"}):
        assert_error(await client.get(RECORDS, params=params, headers=account.headers), 422)


async def test_checksum_mismatch_stores_nothing(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    headers = {**upload_headers(account, b"other bytes"), "X-Checksum": sha256(b"expected")}
    response = await client.post(RECORDS, content=b"other bytes", headers=headers)
    assert_error(response, 400, "checksum_mismatch")
    await assert_nothing_stored(app)

    malformed = {**headers, "X-Checksum": "not-hex"}
    assert_error(await client.post(RECORDS, content=b"x", headers=malformed), 422)
    await assert_nothing_stored(app)


@pytest.mark.parametrize("table", ["../x", "A", "", "a" * 65, "1abc", "no-dash"])
async def test_bad_table_names_are_refused(
    app: FastAPI, client: httpx.AsyncClient, table: str
) -> None:
    account = await pro_account(app, client)
    response = await upload(client, account, b"data", table)
    assert_error(response, 422)
    await assert_nothing_stored(app)


async def test_longest_table_name_is_accepted(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    assert (await upload(client, account, b"data", "t" + "_" * 63)).status_code == 201


@pytest.mark.parametrize("extra_settings", [{"MAX_UPLOAD_BYTES": 1024}])
async def test_oversize_bodies_get_413(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    data = os.urandom(4096)
    assert_error(await upload(client, account, data), 413, "payload_too_large")

    async def chunked() -> AsyncIterator[bytes]:
        # No Content-Length: the limit must be enforced while the body streams in.
        for start in range(0, len(data), 512):
            yield data[start : start + 512]

    response = await client.post(RECORDS, content=chunked(), headers=upload_headers(account, data))
    assert_error(response, 413, "payload_too_large")
    await assert_nothing_stored(app)
    assert (await upload(client, account, data[:1024])).status_code == 201


async def test_free_tier_gets_402(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await upload(client, account, b"data")
    assert_error(response, 402, "storage_quota_exceeded")
    assert "free" in response.json()["message"] and "pro" in response.json()["message"]
    await assert_nothing_stored(app)


@pytest.mark.parametrize("extra_settings", [{"STORAGE_QUOTA_PRO_BYTES": 1000}])
async def test_pro_near_its_limit_gets_402_and_nothing_stored(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await pro_account(app, client)
    first = await upload(client, account, b"a" * 800)
    assert first.status_code == 201
    keys_before = blob_keys(app)

    response = await upload(client, account, b"b" * 201)
    assert_error(response, 402, "storage_quota_exceeded")
    assert await count_rows(app, StorageRecord) == 1
    assert blob_keys(app) == keys_before
    assert await used_bytes(app) == 800

    # A replace that grows past the limit is refused too; the old bytes stay.
    record_id = first.json()["id"]
    bigger = b"c" * 1001
    refused = await client.put(
        f"{RECORDS}/{record_id}", content=bigger, headers=upload_headers(account, bigger)
    )
    assert_error(refused, 402, "storage_quota_exceeded")
    assert (await client.get(f"{RECORDS}/{record_id}", headers=account.headers)).content == (
        b"a" * 800
    )
    assert blob_keys(app) == keys_before

    # Deleting frees the space.
    assert (await client.delete(f"{RECORDS}/{record_id}", headers=account.headers)).status_code == (
        204
    )
    assert await used_bytes(app) == 0
    assert (await upload(client, account, b"d" * 1000)).status_code == 201


async def test_replace_keeps_the_old_version_until_the_new_one_is_stored(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await pro_account(app, client)
    created = (await upload(client, account, b"version one")).json()
    url = f"{RECORDS}/{created['id']}"

    bad = {**upload_headers(account, b"version two"), "X-Checksum": sha256(b"nope")}
    assert_error(await client.put(url, content=b"version two", headers=bad), 400)
    assert (await client.get(url, headers=account.headers)).content == b"version one"
    assert len(blob_keys(app)) == 1

    replaced = await client.put(
        url, content=b"version two!", headers=upload_headers(account, b"version two!", "archive")
    )
    assert replaced.status_code == 200, replaced.text
    meta = replaced.json()
    assert meta["id"] == created["id"]
    assert meta["checksum"] == sha256(b"version two!")
    assert meta["table"] == "archive"
    fetched = await client.get(url, headers=account.headers)
    assert fetched.content == b"version two!"
    assert fetched.headers["X-Checksum"] == sha256(b"version two!")
    keys = blob_keys(app)
    assert len(keys) == 1 and "/archive/" in keys[0]
    assert await used_bytes(app) == len(b"version two!")
    assert staged_files(app) == []


async def test_delete_removes_row_and_blob(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    record_id = (await upload(client, account, b"bytes")).json()["id"]
    url = f"{RECORDS}/{record_id}"
    assert (await client.delete(url, headers=account.headers)).status_code == 204
    assert_error(await client.get(url, headers=account.headers), 404)
    assert_error(await client.delete(url, headers=account.headers), 404)
    await assert_nothing_stored(app)


async def test_another_users_record_is_404_and_untouched(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    owner = await pro_account(app, client)
    intruder = await pro_account(app, client)
    record_id = (await upload(client, owner, b"secret")).json()["id"]
    url = f"{RECORDS}/{record_id}"

    assert_error(await client.get(url, headers=intruder.headers), 404, "record_not_found")
    replaced = await client.put(url, content=b"mine", headers=upload_headers(intruder, b"mine"))
    assert_error(replaced, 404, "record_not_found")
    assert_error(await client.delete(url, headers=intruder.headers), 404)
    assert (await client.get(RECORDS, headers=intruder.headers)).json()["total"] == 0

    fetched = await client.get(url, headers=owner.headers)
    assert fetched.status_code == 200 and fetched.content == b"secret"
    assert len(blob_keys(app)) == 1
    assert_error(await client.get(f"{RECORDS}/not-a-uuid", headers=owner.headers), 422)


async def test_unauthenticated_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(RECORDS), 401)
    assert_error(await client.post(RECORDS, content=b"x", headers={"X-Table": "t"}), 401)


async def test_blob_store_failure_mid_upload_leaves_no_row(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await pro_account(app, client)
    store = app.state.blob_store

    async def failing_put(key: str, path: object) -> None:
        raise BlobStoreError("disk full")

    monkeypatch.setattr(store, "put_file", failing_put)
    response = await upload(client, account, os.urandom(2048))
    assert_error(response, 503, "blob_store_unavailable")
    await assert_nothing_stored(app)


@pytest.fixture
def fail_sql(app: FastAPI):
    """Make the database refuse statements starting with a given prefix."""
    prefixes: list[str] = []

    def refuse(conn, cursor, statement, parameters, context, executemany):
        if any(statement.lstrip().upper().startswith(p) for p in prefixes):
            raise OperationalError(statement, parameters, Exception("injected failure"))

    engine = app.state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", refuse)
    yield prefixes
    event.remove(engine, "before_cursor_execute", refuse)


async def test_database_failure_after_blob_write_leaves_no_blob(
    app: FastAPI, client: httpx.AsyncClient, fail_sql: list[str]
) -> None:
    account = await pro_account(app, client)
    fail_sql.append("INSERT INTO STORAGE_RECORDS")
    response = await upload(client, account, os.urandom(4096))
    assert_error(response, 503, "storage_unavailable")
    fail_sql.clear()
    await assert_nothing_stored(app)


async def test_database_failure_during_replace_keeps_the_old_version(
    app: FastAPI, client: httpx.AsyncClient, fail_sql: list[str]
) -> None:
    account = await pro_account(app, client)
    record_id = (await upload(client, account, b"old")).json()["id"]
    keys_before = blob_keys(app)
    fail_sql.append("UPDATE STORAGE_RECORDS")
    new = b"new and longer"
    response = await client.put(
        f"{RECORDS}/{record_id}", content=new, headers=upload_headers(account, new)
    )
    assert_error(response, 503, "storage_unavailable")
    fail_sql.clear()
    assert (await client.get(f"{RECORDS}/{record_id}", headers=account.headers)).content == b"old"
    assert blob_keys(app) == keys_before
    assert await used_bytes(app) == 3


@pytest.mark.parametrize("extra_settings", [{"STORAGE_QUOTA_PRO_BYTES": 1000}])
async def test_concurrent_uploads_at_the_quota_edge(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await pro_account(app, client)
    bodies = [bytes([i]) * 300 for i in range(8)]

    async def chunked(body: bytes) -> AsyncIterator[bytes]:
        # Without Content-Length the early check cannot refuse: every request races
        # to the atomic reservation.
        yield body[:100]
        yield body[100:]

    responses = await asyncio.gather(
        *(
            client.post(RECORDS, content=chunked(body), headers=upload_headers(account, body))
            for body in bodies
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [402] * 5, [r.text for r in responses]
    assert await used_bytes(app) == 900
    assert await count_rows(app, StorageRecord) == 3
    assert len(blob_keys(app)) == 3
    assert staged_files(app) == []


async def test_a_real_backend_failure_is_503_with_no_row(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await pro_account(app, client)
    store = app.state.blob_store
    if isinstance(store, S3BlobStore):
        store.client.delete_bucket(Bucket=store.bucket)
    else:
        # A file where the user's directory must go: the write fails inside the store.
        user_id = (await client.get("/api/v1/auth/me", headers=account.headers)).json()["id"]
        (store.root / user_id).write_bytes(b"")
    response = await upload(client, account, os.urandom(1024))
    assert_error(response, 503, "blob_store_unavailable")
    assert await count_rows(app, StorageRecord) == 0
    assert await used_bytes(app) == 0
    assert staged_files(app) == []


@pytest.mark.parametrize("extra_settings", [{"STORAGE_QUOTA_PRO_BYTES": 1000}])
async def test_unlimited_tier_is_still_counted(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await register(client)
    await set_account_tier(app, client, account, BillingTier.TEAM)
    assert (await upload(client, account, b"t" * 2000)).status_code == 201
    assert await used_bytes(app) == 2000
    # Back on pro, the bytes already held count against its limit.
    await set_account_tier(app, client, account, BillingTier.PRO)
    assert_error(await upload(client, account, b"x"), 402, "storage_quota_exceeded")
