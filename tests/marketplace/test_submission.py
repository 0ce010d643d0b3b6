"""Submission with the automated checklist, and the admin review queue."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
from fastapi import FastAPI

from app.marketplace.checklist import MAX_MANIFEST_DEPTH, run_checklist
from app.models import BillingTier
from tests.marketplace.helpers import account_on, manifest
from tests.support.builders import Account, register, register_admin, set_tier, tenant_id_of

pytestmark = pytest.mark.usefixtures("backend")

ADMIN_EMAIL = "reviewer@example.com"


def nested(depth: int) -> object:
    value: object = "leaf"
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"ADMIN_EMAILS": ADMIN_EMAIL}


async def test_valid_submission_waits_for_review(client: httpx.AsyncClient, app: FastAPI) -> None:
    developer = await register(client)
    response = await client.post(
        "/api/v1/plugins", json=manifest("focus-timer"), headers=developer.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "pending_review"
    assert body["manifest"]["entrypoint"] == "main.js"
    assert body["install_count"] == 0

    # Not in the catalog until approved; visible to its author.
    browser = await account_on(client, app, BillingTier.POWER)
    catalog = (await client.get("/api/v1/plugins?q=focus", headers=browser.headers)).json()
    assert catalog["items"] == []
    assert (
        await client.get("/api/v1/plugins/focus-timer", headers=browser.headers)
    ).status_code == 404


async def test_every_failed_rule_is_named(client: httpx.AsyncClient) -> None:
    developer = await register(client)
    blob = base64.b64encode(bytes(range(256)) * 4).decode()
    bad = manifest(
        "Bad_ID!",
        version="one",
        permissions=["read:tasks", "admin:everything", "write:email"],
        icon=blob,
    )
    response = await client.post("/api/v1/plugins", json=bad, headers=developer.headers)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "checklist_failed"
    rules = {d["rule"] for d in body["details"]}
    assert rules == {"id_format", "version_format", "permissions_allowed", "no_binary_blobs"}
    for rule in rules:
        assert rule in body["message"]
    permission = next(d for d in body["details"] if d["rule"] == "permissions_allowed")
    assert "admin:everything" in permission["message"] and "write:email" in permission["message"]


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        ({"id": "has space"}, "id_format"),
        ({"id": "earnings"}, "id_format"),
        ({"id": "x" * 65}, "id_format"),
        ({"name": ""}, "name_present"),
        ({"category": "Not A Category"}, "category_format"),
        ({"price_cents": -1}, "price_format"),
        ({"price_cents": 4.99}, "price_format"),
        ({"currency": "euro"}, "price_format"),
        ({"permissions": "read:tasks"}, "permissions_allowed"),
        ({"permissions": ["read:contacts"]}, "permissions_allowed"),
        ({"icon": "data:image/png;base64,iVBORw0KGgo="}, "no_binary_blobs"),
        ({"config": {"nested": ["ok", "bin\x00ary"]}}, "no_binary_blobs"),
        ({"readme": "word " * 20_000}, "manifest_size"),
        ({"config": nested(MAX_MANIFEST_DEPTH)}, "manifest_depth"),
        ({"config": nested(5_000)}, "manifest_depth"),
    ],
)
def test_checklist_rules(overrides: dict, rule: str) -> None:
    assert [f.rule for f in run_checklist(manifest("good-id", **overrides))] == [rule]


def test_checklist_accepts_a_manifest_as_deep_as_allowed() -> None:
    assert run_checklist(manifest("deep-enough", config=nested(MAX_MANIFEST_DEPTH - 1))) == []


@pytest.mark.parametrize(
    ("depth", "error"),
    [(MAX_MANIFEST_DEPTH + 4, "checklist_failed"), (900, "validation_error")],
)
async def test_deeply_nested_manifests_are_422(
    client: httpx.AsyncClient, depth: int, error: str
) -> None:
    developer = await register(client)
    body = json.dumps(manifest("deep-one", config="<config>")).replace(
        '"<config>"', '{"a":' * depth + "1" + "}" * depth
    )
    response = await client.post(
        "/api/v1/plugins",
        content=body,
        headers={**developer.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == error
    fits = manifest("deep-one", config=nested(MAX_MANIFEST_DEPTH - 1))
    stored = await client.post("/api/v1/plugins", json=fits, headers=developer.headers)
    assert stored.status_code == 201, stored.text
    assert stored.json()["manifest"]["config"] == fits["config"]


def test_checklist_accepts_every_allowed_permission() -> None:
    permissions = [
        f"{a}:{s}"
        for a in ("read", "write")
        for s in ("tasks", "projects", "notes", "checkpoints", "calendar")
    ]
    assert run_checklist(manifest("all-perms", permissions=permissions)) == []


async def test_taken_ids_conflict(client: httpx.AsyncClient) -> None:
    first = await register(client)
    second = await register(client)
    assert (
        await client.post("/api/v1/plugins", json=manifest("shared-id"), headers=first.headers)
    ).status_code == 201
    response = await client.post(
        "/api/v1/plugins", json=manifest("shared-id"), headers=second.headers
    )
    assert response.status_code == 409
    seed = await client.post("/api/v1/plugins", json=manifest("github-sync"), headers=first.headers)
    assert seed.status_code == 409
    # The author may resubmit their own pending submission.
    again = await client.post(
        "/api/v1/plugins", json=manifest("shared-id", version="1.0.1"), headers=first.headers
    )
    assert again.status_code == 201
    assert again.json()["version"] == "1.0.1"


async def test_review_flow(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await register_admin(client, app, ADMIN_EMAIL)
    developer = await register(client)
    browser = await account_on(client, app, BillingTier.POWER)
    for plugin_id in ("review-me", "reject-me"):
        response = await client.post(
            "/api/v1/plugins", json=manifest(plugin_id), headers=developer.headers
        )
        assert response.status_code == 201

    for account in (developer, browser):
        assert (
            await client.get("/api/v1/admin/plugins/pending", headers=account.headers)
        ).status_code == 403
        forbidden = await client.post(
            "/api/v1/admin/plugins/review-me/review",
            json={"decision": "approved", "notes": ""},
            headers=account.headers,
        )
        assert forbidden.status_code == 403
        assert forbidden.json()["error"] == "admin_required"

    pending = await client.get("/api/v1/admin/plugins/pending", headers=admin.headers)
    assert pending.status_code == 200
    assert [p["id"] for p in pending.json()["items"]] == ["review-me", "reject-me"]

    approve = await client.post(
        "/api/v1/admin/plugins/review-me/review",
        json={"decision": "approved", "notes": "Looks good."},
        headers=admin.headers,
    )
    assert approve.status_code == 200, approve.text
    assert approve.json()["status"] == "approved"

    no_notes = await client.post(
        "/api/v1/admin/plugins/reject-me/review",
        json={"decision": "rejected", "notes": " "},
        headers=admin.headers,
    )
    assert no_notes.status_code == 422
    reject = await client.post(
        "/api/v1/admin/plugins/reject-me/review",
        json={"decision": "rejected", "notes": "Asks for too much."},
        headers=admin.headers,
    )
    assert reject.json()["status"] == "rejected"

    twice = await client.post(
        "/api/v1/admin/plugins/review-me/review",
        json={"decision": "rejected", "notes": "changed my mind"},
        headers=admin.headers,
    )
    assert twice.status_code == 409
    missing = await client.post(
        "/api/v1/admin/plugins/nope/review",
        json={"decision": "approved"},
        headers=admin.headers,
    )
    assert missing.status_code == 404
    assert (await client.get("/api/v1/admin/plugins/pending", headers=admin.headers)).json()[
        "items"
    ] == []

    catalog = (await client.get("/api/v1/plugins?q=Plugin%20re", headers=browser.headers)).json()
    assert [p["id"] for p in catalog["items"]] == ["review-me"]
    assert (
        await client.get("/api/v1/plugins/reject-me", headers=browser.headers)
    ).status_code == 404
    # The developer sees the rejection and may resubmit.
    mine = await client.get(
        "/api/v1/plugins/reject-me", headers=(await account_on_power(client, app, developer))
    )
    assert mine.json()["status"] == "rejected"
    resubmit = await client.post(
        "/api/v1/plugins", json=manifest("reject-me", version="1.1.0"), headers=developer.headers
    )
    assert resubmit.json()["status"] == "pending_review"


async def account_on_power(
    client: httpx.AsyncClient, app: FastAPI, account: Account
) -> dict[str, str]:
    await set_tier(app, await tenant_id_of(client, account), BillingTier.POWER)
    return account.headers


async def test_concurrent_reviews_record_one_decision(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app, ADMIN_EMAIL)
    developer = await register(client)
    await client.post("/api/v1/plugins", json=manifest("race-me"), headers=developer.headers)
    responses = await asyncio.gather(
        *(
            client.post(
                "/api/v1/admin/plugins/race-me/review",
                json={"decision": "approved", "notes": str(i)},
                headers=admin.headers,
            )
            for i in range(5)
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409, 409]
