"""REST, WebSocket and metadata routes through the full middleware stack, on both databases."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws

from tests.chat.conftest import ROOMY_QUOTAS
from tests.chat.support import ANNA, collect, ws_client
from tests.support.builders import register

pytestmark = pytest.mark.usefixtures("backend")


# --- REST ------------------------------------------------------------------------------
async def test_chat_with_the_demo_model(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.post("/api/v1/chat", json=ANNA, headers=account.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["agent"] == "task_agent" and body["demo"] is False
    assert "x-demo-mode" not in response.headers
    [action] = body["actions"]
    assert action["type"] == "create_record" and action["table"] == "tasks"
    assert (
        action["data"] | {"title": "Call Anna", "priority": "high", "due_date": "2026-11-19"}
        == action["data"]
    )


async def test_spent_llm_quota_falls_back_to_demo(client: httpx.AsyncClient) -> None:
    first = await client.post("/api/v1/chat", json=ANNA)  # anonymous: 1 LLM unit a day
    assert first.status_code == 200 and first.json()["demo"] is False
    second = await client.post("/api/v1/chat", json=ANNA)
    assert second.status_code == 200
    assert second.headers["x-demo-mode"] == "true"
    assert second.json()["demo"] is True
    assert second.json()["actions"][0]["data"]["title"] == "Call Anna"


async def test_tier_gates(client: httpx.AsyncClient) -> None:
    account = await register(client)
    refused = await client.post(
        "/api/v1/chat",
        json={"message": "list checkpoints", "agent": "checkpoint_agent"},
        headers=account.headers,
    )
    assert refused.status_code == 403 and refused.json()["error"] == "agent_not_available"
    plan = await client.post(
        "/api/v1/chat", json={**ANNA, "execution_mode": "plan"}, headers=account.headers
    )
    assert plan.status_code == 403 and plan.json()["error"] == "feature_not_available"
    assert "request_id" in plan.json()


async def test_invalid_request_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/chat", json={"message": ""})
    assert response.status_code == 422 and response.json()["error"] == "validation_error"


async def test_agents_and_playbooks_metadata(client: httpx.AsyncClient) -> None:
    agents = (await client.get("/api/v1/agents")).json()
    assert {a["id"]: len(a["tools"]) for a in agents} == {
        "task_agent": 8,
        "project_agent": 6,
        "checkpoint_agent": 4,
        "note_agent": 5,
    }
    note = (await client.get("/api/v1/agents/note_agent")).json()
    assert note["examples"] and note["tags"]
    assert note["tools"][2]["input_schema"]["properties"]["title"]["type"] == "string"
    checkpoint = (await client.get("/api/v1/agents/checkpoint_agent")).json()
    assert "free" not in checkpoint["tiers"]
    missing = await client.get("/api/v1/agents/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "agent_not_found"
    playbooks = (await client.get("/api/v1/plans/playbook")).json()
    assert [p["id"] for p in playbooks] == ["create_tasks_from_project", "generate_weekly_note"]
    one = await client.get("/api/v1/plans/playbook/generate_weekly_note")
    assert one.json()["steps"][0]["template_id"] == "tpl_note_weekly_summary"
    assert (await client.get("/api/v1/plans/playbook/unknown")).status_code == 404


# --- WebSocket ------------------------------------------------------------------------------
@pytest.mark.parametrize("settings_overrides", [ROOMY_QUOTAS])
async def test_websocket_streams_tokens_then_done(app: FastAPI, client) -> None:
    account = await register(client)
    async with (
        ws_client(app) as wc,
        aconnect_ws(f"/api/v1/chat/stream?token={account.access_token}", wc) as ws,
    ):
        await ws.send_json(ANNA)
        frames, done = await collect(ws)
    tokens = [f["token"] for f in frames if "token" in f]
    assert len(tokens) > 3
    assert done["response"] == "".join(tokens)
    assert done["agent"] == "task_agent" and done["demo"] is False
    assert done["actions"][0]["data"]["title"] == "Call Anna"


@pytest.mark.parametrize("settings_overrides", [ROOMY_QUOTAS])
async def test_websocket_bad_token_closes_1008(app: FastAPI) -> None:
    async with ws_client(app) as wc:
        with pytest.raises(WebSocketDisconnect) as closed:  # the handshake is refused
            async with aconnect_ws("/api/v1/chat/stream?token=forged", wc) as ws:
                await ws.receive_json(timeout=10)
    assert closed.value.code == 1008


@pytest.mark.parametrize("settings_overrides", [ROOMY_QUOTAS])
async def test_websocket_malformed_first_frame(app: FastAPI) -> None:
    async with ws_client(app) as wc, aconnect_ws("/api/v1/chat/stream", wc) as ws:
        await ws.send_text("{not json")
        error = await ws.receive_json(timeout=10)
        assert error["error"] == "invalid_frame"
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json(timeout=10)
    assert closed.value.code == 1007


@pytest.mark.parametrize("settings_overrides", [{**ROOMY_QUOTAS, "WS_MAX_FRAME_BYTES": 256}])
async def test_websocket_frame_over_limit_closes_1009(app: FastAPI) -> None:
    async with ws_client(app) as wc, aconnect_ws("/api/v1/chat/stream", wc) as ws:
        await ws.send_text(json.dumps({"message": "x" * 1000}))
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json(timeout=10)
    assert closed.value.code == 1009


@pytest.mark.parametrize("settings_overrides", [ROOMY_QUOTAS])
async def test_websocket_refusal_sends_error_frame_and_4403(app: FastAPI, client) -> None:
    account = await register(client)  # free tier: no checkpoint agent
    async with (
        ws_client(app) as wc,
        aconnect_ws(f"/api/v1/chat/stream?token={account.access_token}", wc) as ws,
    ):
        await ws.send_json({"message": "list checkpoints", "agent": "checkpoint_agent"})
        error = await ws.receive_json(timeout=10)
        assert error["error"] == "agent_not_available" and error["request_id"]
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json(timeout=10)
    assert closed.value.code == 4403


async def test_websocket_demo_fallback_is_marked(app: FastAPI) -> None:
    async with ws_client(app) as wc:
        answers = []
        for _ in range(2):  # the anonymous visitor's one LLM unit, then the fallback
            async with aconnect_ws("/api/v1/chat/stream", wc) as ws:
                await ws.send_json(ANNA)
                frames, done = await collect(ws)
                answers.append((frames[0] == {"demo": True}, done))
    assert [(marked, done["demo"]) for marked, done in answers] == [(False, False), (True, True)]
    assert answers[1][1]["actions"][0]["data"]["title"] == "Call Anna"


# --- dates at the edges of the calendar -------------------------------------------------
@pytest.mark.parametrize("today", ["9999-12-31", "0001-01-01", "1969-12-31", "3000-01-01"])
async def test_context_dates_out_of_range_are_422(client: httpx.AsyncClient, today: str) -> None:
    account = await register(client)
    for message in ("add a task to call Anna tomorrow", "add a task due end of next month"):
        response = await client.post(
            "/api/v1/chat",
            json={"message": message, "context": {"today": today}},
            headers=account.headers,
        )
        assert response.status_code == 422, response.text
        assert response.json()["details"][0]["loc"] == ["body", "context", "today"]


@pytest.mark.parametrize(
    "message",
    [
        "add a task to call Anna tomorrow",
        "add a task to call Anna in 999 weeks",
        "add a task to call Anna by the end of next month",
        "add a task to call Anna next sunday",
    ],
)
async def test_relative_dates_from_the_latest_today(client: httpx.AsyncClient, message) -> None:
    account = await register(client)
    response = await client.post(
        "/api/v1/chat",
        json={"message": message, "context": {"today": "2999-12-31"}},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    [action] = response.json()["actions"]
    assert action["data"]["due_date"] > "2999-12-31"


def test_relative_dates_past_year_9999_are_no_date() -> None:
    from datetime import date

    from app.chat.demo_intent import parse_date

    assert parse_date("call Anna tomorrow", date(9999, 12, 31)) is None
    assert parse_date("call Anna in 999 weeks", date(9999, 1, 1)) is None
    assert parse_date("call Anna tomorrow", date(2026, 11, 18)) == date(2026, 11, 19)
