"""Fixtures and helpers for the storage and backup tests.

`blob_backend` runs a test once on the filesystem blob store and once on S3,
where S3 is moto in server mode: boto3 talks real HTTP to it on a loopback port.
"""

from __future__ import annotations

import hashlib
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from fastapi import FastAPI
from moto.server import ThreadedMotoServer
from sqlalchemy import func, select

from app.models import BackupMetadata, BillingTier, StorageRecord, StorageUsage
from app.storage.blobs import FileBlobStore, S3BlobStore
from tests.support.builders import Account, set_tier, tenant_id_of

S3_REGION = "us-east-1"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# The gateway's per-minute tier limits are not what these tests are about.
NO_RATE_LIMITS = {
    "RATE_LIMIT_FREE_PER_MINUTE": 100_000,
    "RATE_LIMIT_PRO_PER_MINUTE": 100_000,
    "RATE_LIMIT_POWER_PER_MINUTE": 100_000,
    "RATE_LIMIT_TEAM_PER_MINUTE_PER_SEAT": 100_000,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        region_name=S3_REGION,
        endpoint_url=endpoint,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture(params=["file", "s3"])
def blob_backend(request: pytest.FixtureRequest) -> dict[str, object]:
    """Settings selecting one blob store; S3 gets a fresh bucket on the moto server."""
    if request.param == "file":
        return {"BLOB_STORE": "file"}
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"adiuva-test-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    return {
        "BLOB_STORE": "s3",
        "S3_BUCKET": bucket,
        "S3_REGION": S3_REGION,
        "S3_ENDPOINT_URL": endpoint,
        **S3_CREDENTIALS,
    }


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_keys(app: FastAPI) -> list[str]:
    store = app.state.blob_store
    if isinstance(store, FileBlobStore):
        return store.keys()
    assert isinstance(store, S3BlobStore)
    response = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(obj["Key"] for obj in response.get("Contents", []))


def staged_files(app: FastAPI) -> list[str]:
    staging = app.state.blob_store.staging_dir
    return sorted(p.name for p in staging.iterdir()) if staging.exists() else []


async def me(client: httpx.AsyncClient, account: Account) -> dict[str, Any]:
    response = await client.get("/api/v1/auth/me", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def set_account_tier(
    app: FastAPI, client: httpx.AsyncClient, account: Account, tier: BillingTier
) -> None:
    await set_tier(app, await tenant_id_of(client, account), tier)


async def count_rows(app: FastAPI, model: type[StorageRecord] | type[BackupMetadata]) -> int:
    async with app.state.db.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def used_bytes(app: FastAPI, kind: str = "records") -> int:
    async with app.state.db.sessionmaker() as session:
        value = await session.scalar(
            select(func.coalesce(func.sum(StorageUsage.used_bytes), 0)).where(
                StorageUsage.kind == kind
            )
        )
        return int(value or 0)


@pytest.fixture
def extra_settings() -> dict[str, object]:
    """Parametrize in a test to add settings (quotas, upload limit)."""
    return {}


@pytest.fixture
def settings_overrides(
    blob_backend: dict[str, object], extra_settings: dict[str, object]
) -> dict[str, object]:
    """Storage and backup tests run on both blob stores, without rate limits."""
    return {**NO_RATE_LIMITS, **blob_backend, **extra_settings}
