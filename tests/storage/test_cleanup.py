"""The demo clean-up hook removes a tenant's blobs and vectors, and may run twice."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest
from fastapi import FastAPI

from app.demo.cleanup import EndedDemoSession, cleanup_hooks
from app.models import BillingTier
from app.storage.cleanup import DemoStorageCleanup
from tests.support.builders import register
from tests.support.storage import blob_keys, me, set_account_tier, sha256

pytestmark = pytest.mark.usefixtures("backend")


async def test_hook_removes_the_tenants_blobs_and_vectors(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    gone = await register(client)
    kept = await register(client)
    for account in (gone, kept):
        await set_account_tier(app, client, account, BillingTier.PRO)
        data = f"bytes of {account.email}".encode()
        headers = {**account.headers, "X-Table": "notes", "X-Checksum": sha256(data)}
        assert (
            await client.post("/api/v1/storage/records", content=data, headers=headers)
        ).status_code == 201
        backup_headers = {
            **account.headers,
            "X-Backup-Version": "1",
            "X-Backup-Timestamp": "2026-01-01T00:00:00Z",
            "X-Backup-Checksum": sha256(data),
        }
        assert (
            await client.put("/api/v1/backup", content=data, headers=backup_headers)
        ).status_code == 201
        item = {"id": "v", "blob": base64.b64encode(data).decode(), "checksum": sha256(data)}
        upsert = await client.post(
            "/api/v1/storage/vectors/upsert", json={"items": [item]}, headers=account.headers
        )
        assert upsert.status_code == 200
    assert len(blob_keys(app)) == 4

    hook = next(h for h in cleanup_hooks(app.state) if isinstance(h, DemoStorageCleanup))
    profile = await me(client, gone)
    ended = EndedDemoSession("demo-session", uuid.UUID(profile["tenant_id"]))
    await hook(ended)
    await hook(ended)

    assert all(not key.startswith(profile["id"]) for key in blob_keys(app))
    assert len(blob_keys(app)) == 2
    query = {"vector": [1.0] * 32, "top_k": 5}
    for account, expected in ((gone, []), (kept, ["v"])):
        response = await client.post(
            "/api/v1/storage/vectors/search", json=query, headers=account.headers
        )
        assert [r["id"] for r in response.json()["results"]] == expected
