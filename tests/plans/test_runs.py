"""Plan runs through the HTTP API, on both databases."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from app.models import BillingTier
from tests.chat.conftest import ROOMY_QUOTAS
from tests.plans.support import CONTEXT, PROJECT_RUN, account_on, wait_for_end
from tests.support.builders import register, set_tier, tenant_id_of

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(ROOMY_QUOTAS)


async def test_power_user_runs_a_playbook_end_to_end(app: FastAPI, client) -> None:
    account = await account_on(client, app, BillingTier.POWER)
    started = await client.post(
        "/api/v1/plans/playbook/create_tasks_from_project/runs",
        json=PROJECT_RUN,
        headers=account.headers,
    )
    assert started.status_code == 202, started.text
    run = started.json()
    assert started.headers["location"] == f"/api/v1/plans/runs/{run['run_id']}"
    assert run["playbook"] == "create_tasks_from_project" and run["plan_id"] is None
    assert [s["id"] for s in run["steps"]] == ["step_1", "step_2"]
    body = await wait_for_end(client, account, run["run_id"])
    assert body["status"] == "succeeded", body
    assert [s["status"] for s in body["steps"]] == ["succeeded", "succeeded"]
    assert body["outputs"] == "available" and body["credits_spent"] == 0
    extract, create = body["steps"]
    assert extract["kind"] == "llm" and extract["output"]["text"]
    [action] = create["output"]["actions"]
    assert action["type"] == "create_record" and action["table"] == "tasks"
    assert action["data"] | {"title": "Call Anna", "due_date": "2026-11-19"} == action["data"]
    assert body["actions"] == [action]
    assert body["started_at"] and body["finished_at"] >= body["started_at"]
    # The prompt text behind the template never reaches the client.
    assert "Adiuva plan template" not in started.text + str(body)


async def test_playbook_inputs_are_validated(app: FastAPI, client) -> None:
    account = await account_on(client, app, BillingTier.POWER)
    url = "/api/v1/plans/playbook/generate_weekly_note/runs"
    for inputs in ({}, {"week_start": "not a date"}, {"week_start": "2026-11-16", "x": "y"}):
        refused = await client.post(
            url, json={"inputs": inputs, "context": CONTEXT}, headers=account.headers
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "validation_error" and refused.json()["request_id"]
    missing = await client.post(
        "/api/v1/plans/playbook/nope/runs", json={"inputs": {}}, headers=account.headers
    )
    assert missing.status_code == 404 and missing.json()["error"] == "playbook_not_found"


async def test_weekly_note_playbook_creates_and_indexes_the_note(app: FastAPI, client) -> None:
    account = await account_on(client, app, BillingTier.PRO)
    started = await client.post(
        "/api/v1/plans/playbook/generate_weekly_note/runs",
        json={
            "inputs": {"week_start": "2026-11-16", "message": "write a note called Week 47"},
            "context": CONTEXT,
        },
        headers=account.headers,
    )
    assert started.status_code == 202, started.text
    body = await wait_for_end(client, account, started.json()["run_id"])
    assert body["status"] == "succeeded", body
    kinds = [(a["type"], a["table"]) for a in body["actions"]]
    assert kinds == [("create_record", "notes"), ("index_document", "notes")]
    created, indexed = body["actions"]
    assert created["data"]["title"] == "Week 47" and indexed["id"] == created["id"]


async def test_plan_mode_plans_run_for_power_only_for_their_tenant(app: FastAPI, client) -> None:
    power = await account_on(client, app, BillingTier.POWER)
    planned = await client.post(
        "/api/v1/chat",
        json={
            "message": "add a task to call Anna tomorrow",
            "context": CONTEXT,
            "execution_mode": "plan",
        },
        headers=power.headers,
    )
    assert planned.status_code == 200, planned.text
    plan_id = planned.json()["plan_id"]
    # Another workspace (even on the power tier) does not know this plan.
    other = await account_on(client, app, BillingTier.POWER)
    stranger = await client.post(
        f"/api/v1/plans/{plan_id}/runs",
        json={"inputs": {"message": "add a task to call Anna tomorrow"}},
        headers=other.headers,
    )
    assert stranger.status_code == 404 and stranger.json()["error"] == "plan_not_found"
    # The plan's `$input.message` is required.
    missing = await client.post(
        f"/api/v1/plans/{plan_id}/runs", json={"inputs": {}}, headers=power.headers
    )
    assert missing.status_code == 422
    started = await client.post(
        f"/api/v1/plans/{plan_id}/runs",
        json={"inputs": {"message": "add a task to call Anna tomorrow"}, "context": CONTEXT},
        headers=power.headers,
    )
    assert started.status_code == 202, started.text
    body = await wait_for_end(client, power, started.json()["run_id"])
    assert body["status"] == "succeeded" and body["plan_id"] == plan_id
    [action] = body["actions"]
    assert action["type"] == "create_record" and action["data"]["title"] == "Call Anna"
    # Another tenant cannot see or cancel the run.
    run_url = f"/api/v1/plans/runs/{body['run_id']}"
    assert (await client.get(run_url, headers=other.headers)).status_code == 404
    assert (await client.delete(run_url, headers=other.headers)).status_code == 404
    assert (await client.get(run_url)).status_code == 401


async def test_free_tier_runs_playbooks_but_not_plan_mode(app: FastAPI, client) -> None:
    free = await register(client)
    started = await client.post(
        "/api/v1/plans/playbook/create_tasks_from_project/runs",
        json=PROJECT_RUN,
        headers=free.headers,
    )
    assert started.status_code == 202, started.text
    assert (await wait_for_end(client, free, started.json()["run_id"]))["status"] == "succeeded"
    # Plan mode is the batch builder (power+): refused when asking for a plan, and a
    # plan issued before a downgrade no longer runs.
    plan_request = {"message": "add a task to call Anna", "execution_mode": "plan"}
    refused = await client.post("/api/v1/chat", json=plan_request, headers=free.headers)
    assert refused.status_code == 403 and refused.json()["error"] == "feature_not_available"
    account = await account_on(client, app, BillingTier.POWER)
    plan_id = (
        await client.post("/api/v1/chat", json=plan_request, headers=account.headers)
    ).json()["plan_id"]
    await set_tier(app, await tenant_id_of(client, account), BillingTier.FREE)
    downgraded = await client.post(
        f"/api/v1/plans/{plan_id}/runs",
        json={"inputs": {"message": "add a task to call Anna"}},
        headers=account.headers,
    )
    assert downgraded.status_code == 403, downgraded.text
    assert downgraded.json()["error"] == "feature_not_available"
    assert downgraded.json()["request_id"]
