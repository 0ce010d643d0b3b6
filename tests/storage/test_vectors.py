"""Vectors through embedded Qdrant (a per-test directory under the test's DATA_DIR)."""

from __future__ import annotations

import base64

import httpx
import pytest
from fastapi import FastAPI

from app.models import BillingTier
from app.storage.vectors import hash_vector
from tests.support.builders import Account, register
from tests.support.storage import set_account_tier, sha256

pytestmark = pytest.mark.usefixtures("backend")

VECTORS = "/api/v1/storage/vectors"


@pytest.fixture
def blob_backend() -> dict[str, object]:
    return {"BLOB_STORE": "file"}


def item(id_: str, blob: bytes, vector: list[float] | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "id": id_,
        "blob": base64.b64encode(blob).decode(),
        "checksum": sha256(blob),
    }
    if vector is not None:
        body["vector"] = vector
    return body


def unit(index: int, weight: float = 1.0, rest: float = 0.0) -> list[float]:
    vector = [rest] * 32
    vector[index] = weight
    return vector


async def pro_account(app: FastAPI, client: httpx.AsyncClient) -> Account:
    account = await register(client)
    await set_account_tier(app, client, account, BillingTier.PRO)
    return account


async def upsert(client: httpx.AsyncClient, account: Account, *items: dict) -> httpx.Response:
    return await client.post(
        f"{VECTORS}/upsert", json={"items": list(items)}, headers=account.headers
    )


async def search(client: httpx.AsyncClient, account: Account, **query: object) -> list[dict]:
    response = await client.post(f"{VECTORS}/search", json=query, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()["results"]


async def delete(client: httpx.AsyncClient, account: Account, ids: list[str]) -> httpx.Response:
    return await client.request("DELETE", VECTORS, json={"ids": ids}, headers=account.headers)


def test_hash_vectors_are_deterministic() -> None:
    first = hash_vector(b"ciphertext", 32)
    assert first == hash_vector(b"ciphertext", 32)
    assert len(first) == 32 and all(-1.0 <= v <= 1.0 for v in first)
    assert first != hash_vector(b"ciphertext!", 32)
    assert hash_vector(b"ciphertext", 64)[:32] == first
    assert len(hash_vector(b"ciphertext", 100)) == 100


async def test_upsert_without_vector_finds_the_same_blob(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await pro_account(app, client)
    response = await upsert(client, account, item("n1", b"alpha"), item("n2", b"beta"))
    assert response.status_code == 200, response.text
    assert response.json() == {"upserted": 2, "ids": ["n1", "n2"]}

    blob = base64.b64encode(b"alpha").decode()
    results = await search(client, account, blob=blob, top_k=5)
    assert results[0]["id"] == "n1"
    assert results[0]["score"] == pytest.approx(1.0)
    assert results[0]["blob"] == blob
    assert results[0]["checksum"] == sha256(b"alpha")
    by_vector = await search(client, account, vector=hash_vector(b"beta", 32), top_k=1)
    assert [r["id"] for r in by_vector] == ["n2"]

    # Upserting the same id replaces the point.
    assert (await upsert(client, account, item("n1", b"gamma"))).status_code == 200
    results = await search(client, account, blob=base64.b64encode(b"gamma").decode(), top_k=5)
    assert results[0]["id"] == "n1" and results[0]["score"] == pytest.approx(1.0)
    assert len(results) == 2


async def test_search_orders_by_score(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    far = unit(1)
    near = [0.9] + [0.1] * 31
    exact = unit(0)
    response = await upsert(
        client,
        account,
        item("far", b"1", far),
        item("exact", b"2", exact),
        item("near", b"3", near),
    )
    assert response.status_code == 200
    results = await search(client, account, vector=unit(0), top_k=3)
    assert [r["id"] for r in results] == ["exact", "near", "far"]
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert [r["id"] for r in await search(client, account, vector=unit(0), top_k=2)] == [
        "exact",
        "near",
    ]


async def test_users_only_see_and_delete_their_own_points(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    alice = await pro_account(app, client)
    bob = await pro_account(app, client)
    assert (
        await upsert(client, alice, item("shared", b"alice-1"), item("a2", b"alice-2"))
    ).status_code == 200
    assert (await upsert(client, bob, item("shared", b"bob-1"))).status_code == 200

    bob_results = await search(client, bob, vector=unit(0), top_k=10)
    assert [(r["id"], r["blob"]) for r in bob_results] == [
        ("shared", base64.b64encode(b"bob-1").decode())
    ]
    by_alices_blob = await search(client, bob, blob=base64.b64encode(b"alice-2").decode(), top_k=10)
    assert [r["id"] for r in by_alices_blob] == ["shared"]
    assert by_alices_blob[0]["blob"] == base64.b64encode(b"bob-1").decode()

    # Bob's delete of Alice's id touches nothing of hers.
    response = await delete(client, bob, ["a2"])
    assert response.status_code == 200 and response.json() == {"deleted": 0}
    response = await delete(client, bob, ["shared"])
    assert response.json() == {"deleted": 1}
    assert await search(client, bob, vector=unit(0), top_k=10) == []

    alice_ids = {r["id"] for r in await search(client, alice, vector=unit(0), top_k=10)}
    assert alice_ids == {"shared", "a2"}
    alice_shared = await search(client, alice, blob=base64.b64encode(b"alice-1").decode(), top_k=1)
    assert alice_shared[0]["id"] == "shared" and alice_shared[0]["score"] == pytest.approx(1.0)


async def test_dimension_mismatch_is_422(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    response = await upsert(client, account, item("x", b"x", [0.5] * 31))
    assert response.status_code == 422
    assert response.json()["error"] == "vector_dimension_mismatch"
    response = await client.post(
        f"{VECTORS}/search", json={"vector": [0.5] * 33, "top_k": 1}, headers=account.headers
    )
    assert response.status_code == 422
    assert response.json()["error"] == "vector_dimension_mismatch"
    assert await search(client, account, vector=unit(0), top_k=10) == []


async def test_bad_items_store_nothing(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await pro_account(app, client)
    wrong = {**item("a", b"bytes"), "checksum": sha256(b"other")}
    response = await upsert(client, account, item("ok", b"fine"), wrong)
    assert response.status_code == 400 and response.json()["error"] == "checksum_mismatch"
    response = await upsert(client, account, {**item("b", b"x"), "blob": "***"})
    assert response.status_code == 422 and response.json()["error"] == "invalid_base64"
    response = await upsert(client, account, item("c", b"1"), item("c", b"2"))
    assert response.status_code == 422
    response = await upsert(client, account, item("z", b"1", [0.0] * 32))
    assert response.status_code == 422
    response = await client.post(f"{VECTORS}/search", json={"top_k": 3}, headers=account.headers)
    assert response.status_code == 422
    assert await search(client, account, vector=unit(0), top_k=10) == []


async def test_free_tier_cannot_store_vectors(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await upsert(client, account, item("a", b"x"))
    assert response.status_code == 402
    assert response.json()["error"] == "storage_quota_exceeded"
    assert (await client.post(f"{VECTORS}/search", json={"vector": unit(0)})).status_code == 401
