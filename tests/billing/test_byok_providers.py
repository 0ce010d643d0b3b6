"""The tier's count of BYOK providers: a free workspace uses one provider with its own key
a month; a key for another is refused (403) before anything is counted."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from app.models import BillingTier
from tests.gateway.conftest import PROBE_PATH, Probe, install_probe
from tests.support.builders import Account, register, set_tier, tenant_id_of

pytestmark = pytest.mark.usefixtures("backend")

OPENAI = "openai:sk-test-0123456789abcdef"
ANTHROPIC = "anthropic:sk-ant-test-0123456789"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # Concurrent requests of one free user are not refused for concurrency here.
    return {"MAX_CONCURRENT_FREE": 20}


@pytest.fixture
def probe(app: FastAPI) -> Probe:
    return install_probe(app)


async def call(client: httpx.AsyncClient, account: Account, key: str) -> httpx.Response:
    return await client.post(PROBE_PATH, headers={**account.headers, "X-LLM-API-KEY": key})


async def used_today(client: httpx.AsyncClient, account: Account) -> int:
    response = await client.get("/api/v1/quota/status", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()["daily"]["used"]


async def test_free_workspace_uses_one_provider_a_month(
    client: httpx.AsyncClient, probe: Probe
) -> None:
    account = await register(client)
    first = await call(client, account, OPENAI)
    assert first.status_code == 200, first.text
    assert first.json()["provider"] == "openai"
    used = await used_today(client, account)

    refused = await call(client, account, ANTHROPIC)
    assert refused.status_code == 403
    body = refused.json()
    assert body["error"] == "byok_provider_limit"
    assert "openai" in body["message"] and "sk-ant-test" not in body["message"]
    assert len(probe.units) == 1
    assert await used_today(client, account) == used  # nothing counted

    assert (await call(client, account, OPENAI)).status_code == 200
    # A request without a key of its own is not about providers.
    assert (await client.post(PROBE_PATH, headers=account.headers)).status_code == 200


async def test_paid_tiers_use_any_provider(
    client: httpx.AsyncClient, app: FastAPI, probe: Probe
) -> None:
    account = await register(client)
    await set_tier(app, await tenant_id_of(client, account), BillingTier.PRO)
    for key in (OPENAI, ANTHROPIC, OPENAI):
        assert (await call(client, account, key)).status_code == 200


async def test_concurrent_first_uses_take_one_provider(
    client: httpx.AsyncClient, probe: Probe
) -> None:
    account = await register(client)
    responses = await asyncio.gather(
        *(call(client, account, key) for key in (OPENAI, ANTHROPIC) * 4)
    )
    allowed = {r.json()["provider"] for r in responses if r.status_code == 200}
    assert len(allowed) == 1, [r.text for r in responses]
    assert {r.status_code for r in responses} == {200, 403}
    assert all(
        r.json()["error"] == "byok_provider_limit" for r in responses if r.status_code == 403
    )
