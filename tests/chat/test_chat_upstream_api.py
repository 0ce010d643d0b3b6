"""Chat routes against the local OpenAI-compatible upstream, through the full stack."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fastapi import FastAPI
from httpx_ws import aconnect_ws

from app.models import BillingTier
from tests.chat.conftest import BYOK_KEY
from tests.chat.support import ANNA, collect, ws_client
from tests.chat.upstream import LEAK
from tests.support.builders import register
from tests.support.storage import set_account_tier

pytestmark = pytest.mark.usefixtures("backend")


# --- upstream over REST -------------------------------------------------------------------
@pytest.fixture
def ping_interval() -> float:
    return 30.0


@pytest.fixture
def settings_overrides(upstream_settings, ping_interval: float) -> dict[str, object]:
    return {**upstream_settings, "WS_PING_INTERVAL_SECONDS": ping_interval}


@pytest.mark.usefixtures("upstream")
async def test_byok_key_reaches_upstream_and_is_never_logged(
    client: httpx.AsyncClient, upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await client.post(
        "/api/v1/chat", json=ANNA, headers={"X-LLM-API-KEY": f"openai:{BYOK_KEY}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["actions"][0]["data"]["title"] == "Upstream task"
    assert {r["headers"]["authorization"] for r in upstream.requests} == {f"Bearer {BYOK_KEY}"}
    assert BYOK_KEY not in caplog.text
    assert all(BYOK_KEY not in str(r.__dict__) for r in caplog.records)


async def test_upstream_failures_map_to_502_504_and_free_the_slot(
    client: httpx.AsyncClient, upstream
) -> None:
    upstream.mode = "error"
    failed = await client.post("/api/v1/chat", json=ANNA)
    assert failed.status_code == 502
    assert failed.json()["error"] == "upstream_error" and failed.json()["request_id"]
    upstream.mode = "hang"
    timed_out = await client.post("/api/v1/chat", json=ANNA)
    assert timed_out.status_code == 504 and timed_out.json()["error"] == "upstream_timeout"
    upstream.release.set()
    # Our failures are not charged to the caller's LLM quota; the units themselves count.
    status = (await client.get("/api/v1/quota/status")).json()
    assert (status["daily"]["used"], status["llm"]["used"]) == (2, 0)
    assert status["per_ip_llm"]["used"] == 0
    upstream.mode = "ok"
    # One concurrent unit per anonymous identity: this passes only if both slots came back.
    again = await client.post("/api/v1/chat", json=ANNA)
    assert again.status_code == 200, again.text
    status = (await client.get("/api/v1/quota/status")).json()
    assert (status["daily"]["used"], status["llm"]["used"]) == (3, 1)


@pytest.mark.parametrize("ping_interval", [0.05])
async def test_websocket_ping_and_disconnect_releases_the_slot(
    app: FastAPI, client, upstream
) -> None:
    upstream.mode = "hang"
    async with ws_client(app) as wc:
        async with aconnect_ws("/api/v1/chat/stream", wc) as ws:
            await ws.send_json(ANNA)
            ping = await ws.receive_json(timeout=10)
            assert ping == {"ping": True}
        # The client left mid-stream; the slot (one per anonymous identity) must come back.
        upstream.release.set()
        upstream.mode = "ok"
        for _ in range(100):
            response = await client.post("/api/v1/chat", json=ANNA)
            if response.status_code != 429:
                break
        assert response.status_code == 200, response.text


async def test_websocket_sanitizer_redacts_a_split_leak(app: FastAPI, upstream) -> None:
    upstream.mode = "leak"
    async with ws_client(app) as wc, aconnect_ws("/api/v1/chat/stream", wc) as ws:
        await ws.send_json(ANNA)
        frames, done = await collect(ws)
    assert upstream.streamed_chunks > 5  # the fragment arrived in pieces
    text = "".join(f.get("token", "") for f in frames)
    assert LEAK not in text and LEAK not in json.dumps(done)
    assert "[REDACTED]" in text


async def _ledger(client: httpx.AsyncClient, account) -> dict:
    response = await client.get("/api/v1/credits?limit=100", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_llm_usage_settles_credits_and_failures_release_them(
    app: FastAPI, client: httpx.AsyncClient, upstream
) -> None:
    account = await register(client)
    await set_account_tier(app, client, account, BillingTier.PRO)
    response = await client.post("/api/v1/chat", json=ANNA, headers=account.headers)
    assert response.status_code == 200, response.text
    ledger = await _ledger(client, account)
    reasons = [e["reason"] for e in ledger["entries"]]
    # Router call + two tool-loop rounds: three reservations, each settled to its real cost.
    assert reasons.count("reserve") == 3 and reasons.count("settle") == 3
    assert ledger["balance"] < ledger["monthly_grant"]
    spent = ledger["monthly_grant"] - ledger["balance"]

    upstream.mode = "error"
    failed = await client.post("/api/v1/chat", json=ANNA, headers=account.headers)
    assert failed.status_code == 502
    ledger = await _ledger(client, account)
    reasons = [e["reason"] for e in ledger["entries"]]
    assert reasons.count("reserve") == 4 and reasons.count("release") == 1
    assert ledger["monthly_grant"] - ledger["balance"] == spent  # nothing billed for the failure
