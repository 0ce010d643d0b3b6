"""Plan-run test helpers: accounts on a tier, polling a run to its end, the workspace."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from app.models import BillingTier
from tests.support.builders import Account, register, set_tier, tenant_id_of
from tests.support.servers import poll

TERMINAL = {"succeeded", "failed", "cancelled"}
CONTEXT = {
    "today": "2026-11-18",
    "projects": [{"id": "p1", "name": "Website relaunch"}],
    "tasks": [{"id": "t1", "title": "Write website copy", "project_id": "p1"}],
    "notes": [{"id": "n1", "title": "Kickoff", "project_id": "p1", "body": "Fonts, copy."}],
}
PROJECT_RUN = {
    "inputs": {"project_id": "p1", "message": "add a task to call Anna tomorrow, high priority"},
    "context": CONTEXT,
}


async def account_on(
    client: httpx.AsyncClient, app: FastAPI, tier: BillingTier, **headers: str
) -> Account:
    account = await register(client)
    if tier is not BillingTier.FREE:
        await set_tier(app, await tenant_id_of(client, account), tier)
    return account


async def wait_for_end(client: httpx.AsyncClient, account: Account, run_id: str) -> dict:
    """Poll the run (a bounded number of times) until it has ended."""
    for _ in range(500):
        response = await client.get(f"/api/v1/plans/runs/{run_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in TERMINAL:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} did not end: {body}")


async def wait_until(predicate, what: str) -> None:
    """Await a condition the app reaches by itself."""
    await poll(predicate, what)
