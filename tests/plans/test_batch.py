"""Batch jobs active under concurrency, cancellation and credits, against the local upstream.

The upstream holds every model call until the test releases it, so runs stay running
while the test starts more.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from app.models import BillingTier
from tests.chat.conftest import ROOMY_QUOTAS
from tests.plans.support import PROJECT_RUN, account_on, wait_for_end, wait_until
from tests.support.builders import Account
from tests.support.upstream_fixtures import upstream, upstream_env, upstream_thread

__all__ = ["upstream", "upstream_thread"]  # fixtures

pytestmark = pytest.mark.usefixtures("backend")

PLAYBOOK = "/api/v1/plans/playbook/create_tasks_from_project/runs"


@pytest.fixture
def settings_overrides(upstream_thread) -> dict[str, object]:
    return {
        **ROOMY_QUOTAS,
        **upstream_env(upstream_thread[0]),
        "RATE_LIMIT_PRO_PER_MINUTE": 5000,
        "RATE_LIMIT_FREE_PER_MINUTE": 5000,
    }


@pytest.fixture
def held(upstream):
    """The upstream holding every call until `upstream.release` is set."""
    upstream.mode = "hang"
    return upstream


async def _statuses(client: httpx.AsyncClient, account: Account, run_ids: list[str]) -> list:
    return [
        (await client.get(f"/api/v1/plans/runs/{r}", headers=account.headers)).json()["status"]
        for r in run_ids
    ]


async def _daily_used(client: httpx.AsyncClient, account: Account) -> int:
    status = await client.get("/api/v1/quota/status", headers=account.headers)
    return status.json()["daily"]["used"]


@pytest.mark.parametrize(("tier", "limit"), [(BillingTier.FREE, 2), (BillingTier.PRO, 10)])
async def test_exactly_the_batch_limit_runs_at_once(
    app: FastAPI, client, held, tier: BillingTier, limit: int
) -> None:
    account = await account_on(client, app, tier)
    answers = await asyncio.gather(
        *(
            client.post(PLAYBOOK, json=PROJECT_RUN, headers=account.headers)
            for _ in range(limit + 4)
        )
    )
    accepted = [a.json()["run_id"] for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code != 202]
    assert len(accepted) == limit, [a.text for a in refused]
    assert {(a.status_code, a.json()["error"]) for a in refused} == {(429, "batch_limit")}
    assert all(a.headers["retry-after"] for a in refused)
    # Refused runs cost nothing: only the admitted ones count against the day.
    assert await _daily_used(client, account) == limit

    async def all_running() -> bool:
        return await _statuses(client, account, accepted) == ["running"] * limit

    await wait_until(all_running, "every admitted run running")
    again = await client.post(PLAYBOOK, json=PROJECT_RUN, headers=account.headers)
    assert again.status_code == 429
    held.release.set()
    ended = [await wait_for_end(client, account, run_id) for run_id in accepted]
    assert {run["status"] for run in ended} == {"succeeded"}
    # Each ended run gave its slot back.
    after = await client.post(PLAYBOOK, json=PROJECT_RUN, headers=account.headers)
    assert after.status_code == 202, after.text
    await wait_for_end(client, account, after.json()["run_id"])


async def test_cancel_interrupts_the_step_frees_the_slot_and_charges_nothing(
    app: FastAPI, client, held
) -> None:
    account = await account_on(client, app, BillingTier.PRO)
    before = (await client.get("/api/v1/credits", headers=account.headers)).json()["balance"]
    started = await client.post(PLAYBOOK, json=PROJECT_RUN, headers=account.headers)
    run_id = started.json()["run_id"]
    run_url = f"/api/v1/plans/runs/{run_id}"

    async def step_running() -> bool:
        body = (await client.get(run_url, headers=account.headers)).json()
        return body["steps"][0]["status"] == "running"

    await wait_until(step_running, "the first step running")
    cancelled = await client.delete(run_url, headers=account.headers)
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["finished_at"]
    assert [s["status"] for s in body["steps"]] == ["cancelled", "pending"]
    assert body["credits_spent"] == 0
    again = await client.delete(run_url, headers=account.headers)
    assert again.status_code == 409 and again.json()["error"] == "run_ended"
    # The reservation of the interrupted call went back.
    after = (await client.get("/api/v1/credits", headers=account.headers)).json()["balance"]
    assert after == before
    quota = (await client.get("/api/v1/quota/status", headers=account.headers)).json()
    assert quota["daily"]["used"] == 1  # the run was started for the caller: it counts
    held.release.set()


async def test_a_run_cancelled_before_any_step_began_costs_nothing(
    app: FastAPI, client, held
) -> None:
    account = await account_on(client, app, BillingTier.PRO)
    outcomes = []
    for _ in range(3):
        started = await client.post(PLAYBOOK, json=PROJECT_RUN, headers=account.headers)
        run_url = f"/api/v1/plans/runs/{started.json()['run_id']}"
        body = (await client.delete(run_url, headers=account.headers)).json()
        assert body["status"] == "cancelled", body
        outcomes.append(all(step["status"] == "pending" for step in body["steps"]))
    # A run whose first step had begun counts (it was started for the caller); one
    # cancelled before that did no work, and gives every count back.
    assert await _daily_used(client, account) == outcomes.count(False)
    held.release.set()


async def test_cancel_frees_the_batch_slot_at_once(app: FastAPI, client, held) -> None:
    account = await account_on(client, app, BillingTier.FREE)
    first, second = [
        (await client.post(PLAYBOOK, json=PROJECT_RUN, headers=account.headers)).json()["run_id"]
        for _ in range(2)
    ]
    full = await client.post(PLAYBOOK, json=PROJECT_RUN, headers=account.headers)
    assert full.status_code == 429 and full.json()["error"] == "batch_limit"
    assert (await client.delete(f"/api/v1/plans/runs/{first}", headers=account.headers)).json()[
        "status"
    ] == "cancelled"
    third = await client.post(PLAYBOOK, json=PROJECT_RUN, headers=account.headers)
    assert third.status_code == 202, third.text
    held.release.set()
    for run_id in (second, third.json()["run_id"]):
        assert (await wait_for_end(client, account, run_id))["status"] == "succeeded"


async def test_credits_settle_step_by_step(app: FastAPI, client, upstream) -> None:
    account = await account_on(client, app, BillingTier.PRO)
    before = (await client.get("/api/v1/credits", headers=account.headers)).json()["balance"]
    started = await client.post(PLAYBOOK, json=PROJECT_RUN, headers=account.headers)
    body = await wait_for_end(client, account, started.json()["run_id"])
    assert body["status"] == "succeeded", body
    llm_step, data_step = body["steps"]
    assert llm_step["credits"] > 0 and data_step["credits"] == 0
    assert body["credits_spent"] == llm_step["credits"]
    credits = (await client.get("/api/v1/credits", headers=account.headers)).json()
    assert before - credits["balance"] == body["credits_spent"]
    # Each model call of the step reserved and settled, as a chat call does.
    reasons = [entry["reason"] for entry in credits["entries"]]
    assert reasons.count("reserve") == len(upstream.requests) == reasons.count("settle")
    [action] = body["actions"]
    assert action["data"]["title"] == "Upstream task"


async def test_shutdown_ends_running_runs_as_failed_with_leases_released(
    app: FastAPI, client, held
) -> None:
    from sqlalchemy import func, select

    from app.models import ConcurrencyLease

    account = await account_on(client, app, BillingTier.PRO)
    run_id = (await client.post(PLAYBOOK, json=PROJECT_RUN, headers=account.headers)).json()[
        "run_id"
    ]

    async def step_running() -> bool:
        body = (await client.get(f"/api/v1/plans/runs/{run_id}", headers=account.headers)).json()
        return body["steps"][0]["status"] == "running"

    await wait_until(step_running, "the first step running")
    await app.state.shutdown.drain()
    body = await wait_for_end(client, account, run_id)
    assert (body["status"], body["error"]) == ("failed", "server_shutting_down")
    assert body["steps"][0]["status"] == "failed"
    async with app.state.db.sessionmaker() as session:
        leases = await session.scalar(select(func.count()).select_from(ConcurrencyLease))
    assert leases == 0
    refused = await client.post(PLAYBOOK, json=PROJECT_RUN, headers=account.headers)
    assert refused.status_code == 503 and refused.json()["error"] == "server_shutting_down"
    held.release.set()
