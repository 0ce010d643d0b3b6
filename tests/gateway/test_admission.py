"""A unit of work is admitted when it starts, and a unit that does no work costs nothing.

SPEC §12.1–3 through the real chat routes (REST and WebSocket), on SQLite and
PostgreSQL: idle sockets hold no slot, refused or invalid requests give back
every count, and fresh cookies cannot multiply an address's LLM answers.
"""

from __future__ import annotations

import secrets
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from tests.chat.support import ANNA, collect
from tests.support.builders import client_for, register

pytestmark = pytest.mark.usefixtures("backend")

CHAT = "/api/v1/chat"
STREAM = "/api/v1/chat/stream"
GATE = {
    "RATE_LIMIT_FREE_PER_MINUTE": 10_000,
    "RATE_LIMIT_DAILY_PER_USER": 10,
    "RATE_LIMIT_DAILY_LLM_PER_USER": 1,
    "RATE_LIMIT_DAILY_PER_IP": 50,
    "RATE_LIMIT_DAILY_LLM_PER_IP": 3,
}


@pytest.fixture
def settings_overrides() -> dict:
    return dict(GATE)


def ws_client(app: FastAPI, ip: str = "203.0.113.10") -> httpx.AsyncClient:
    transport = ASGIWebSocketTransport(app=app, client=(ip, 50000), initial_receive_timeout=10)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def visitor_cookie() -> dict[str, str]:
    """What a browser sends back after its first response: a fresh visitor id each time."""
    return {"Cookie": f"demo_session_id={secrets.token_hex(16)}"}


async def usage(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> dict:
    status = (await client.get("/api/v1/quota/status", headers=headers)).json()
    return {
        "daily": status["daily"]["used"],
        "llm": status["llm"]["used"],
        "per_ip": status["per_ip"] and status["per_ip"]["used"],
        "per_ip_llm": status["per_ip_llm"] and status["per_ip_llm"]["used"],
        "in_use": status["concurrency"]["in_use"],
        "system_in_use": status["concurrency"]["system_in_use"],
    }


NOTHING_USED = {
    "daily": 0,
    "llm": 0,
    "per_ip": 0,
    "per_ip_llm": 0,
    "in_use": 0,
    "system_in_use": 0,
}


# --- idle sockets ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "settings_overrides",
    [{**GATE, "MAX_CONCURRENT_TASK_TREES": 2, "WS_MAX_ANONYMOUS_PER_IP": 10}],
)
async def test_idle_sockets_hold_no_slot_and_starve_no_one(app: FastAPI, client) -> None:
    account = await register(client)
    cookie = visitor_cookie()
    async with AsyncExitStack() as stack:
        idle_client = await stack.enter_async_context(ws_client(app, ip="198.51.100.7"))
        for _ in range(10):  # ten silent sockets, each its own visitor, from one address
            await stack.enter_async_context(
                aconnect_ws(STREAM, idle_client, headers=visitor_cookie())
            )
        watcher = client_for(app, ip="198.51.100.7")
        stack.push_async_callback(watcher.aclose)
        assert await usage(watcher, cookie) == NOTHING_USED

        # With two system slots, a signed-in user still chats, over REST and WebSocket.
        for _ in range(3):
            response = await client.post(CHAT, json=ANNA, headers=account.headers)
            assert response.status_code == 200, response.text
        user_ws = await stack.enter_async_context(ws_client(app))
        async with aconnect_ws(f"{STREAM}?token={account.access_token}", user_ws) as ws:
            await ws.send_json(ANNA)
            _, done = await collect(ws)
        assert done.get("done") is True, done
        assert (await usage(client, account.headers))["system_in_use"] == 0


@pytest.mark.parametrize("settings_overrides", [{**GATE, "WS_FIRST_FRAME_TIMEOUT_SECONDS": 0.2}])
async def test_a_socket_that_sends_nothing_is_closed(app: FastAPI, client) -> None:
    async with ws_client(app) as wc, aconnect_ws(STREAM, wc) as ws:
        error = await ws.receive_json(timeout=10)
        assert error["error"] == "request_timeout" and error["request_id"]
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json(timeout=10)
    assert closed.value.code == 4408
    assert await usage(client) == NOTHING_USED


@pytest.mark.parametrize("settings_overrides", [{**GATE, "WS_MAX_ANONYMOUS_PER_IP": 2}])
async def test_open_anonymous_sockets_are_capped_per_address(app: FastAPI, client) -> None:
    account = await register(client)
    async with ws_client(app) as wc, AsyncExitStack() as stack:
        first = await stack.enter_async_context(aconnect_ws(STREAM, wc, headers=visitor_cookie()))
        await stack.enter_async_context(aconnect_ws(STREAM, wc, headers=visitor_cookie()))
        # This transport has no denial responses: the refusal is a close before accept
        # (a real server answers the handshake with the 429 and its JSON body instead).
        with pytest.raises(WebSocketDisconnect) as refused:
            await stack.enter_async_context(aconnect_ws(STREAM, wc, headers=visitor_cookie()))
        assert (refused.value.code, refused.value.reason) == (1013, "too_many_connections")

        # Someone signed in, from the same address, is not counted against it.
        async with aconnect_ws(f"{STREAM}?token={account.access_token}", wc) as ws:
            await ws.send_json(ANNA)
            _, done = await collect(ws)
            assert done.get("done") is True, done

        # A visitor who uses its socket frees its place once the stream is over.
        await first.send_json(ANNA)
        _, done = await collect(first)
        assert done.get("done") is True, done
        for _ in range(100):  # the server notices the close asynchronously
            try:
                async with aconnect_ws(STREAM, wc, headers=visitor_cookie()) as again:
                    await again.send_json(ANNA)
                    _, done = await collect(again)
                break
            except WebSocketDisconnect:
                continue
        assert done.get("done") is True, done


# --- refused and invalid work costs nothing ---------------------------------------------
async def test_invalid_requests_cost_an_anonymous_visitor_nothing(client) -> None:
    cookie = visitor_cookie()
    for body in ({"message": ""}, {}, {"message": "x" * 9000}, {"mesage": "typo"}):
        response = await client.post(CHAT, json=body, headers=cookie)
        assert response.status_code == 422, response.text
    broken = await client.post(
        CHAT,
        content=b'{"message": "add a task',
        headers={**cookie, "Content-Type": "application/json"},
    )
    assert broken.status_code in (400, 422), broken.text
    assert await usage(client, cookie) == NOTHING_USED

    # The one LLM answer of the day is still there.
    answered = await client.post(CHAT, json=ANNA, headers=cookie)
    assert answered.status_code == 200 and answered.json()["demo"] is False
    assert await usage(client, cookie) == {
        **NOTHING_USED,
        "daily": 1,
        "llm": 1,
        "per_ip": 1,
        "per_ip_llm": 1,
    }


async def test_requests_the_route_refuses_cost_a_free_user_nothing(client) -> None:
    account = await register(client)
    before = await usage(client, account.headers)
    checkpoint = await client.post(
        CHAT,
        json={"message": "list my checkpoints", "agent": "checkpoint_agent"},
        headers=account.headers,
    )
    assert checkpoint.status_code == 403, checkpoint.text
    plan = await client.post(
        CHAT,
        json={"message": "turn the website relaunch into tasks", "execution_mode": "plan"},
        headers=account.headers,
    )
    assert plan.status_code == 403, plan.text
    assert await usage(client, account.headers) == before

    answered = await client.post(CHAT, json=ANNA, headers=account.headers)
    assert answered.status_code == 200, answered.text
    after = await usage(client, account.headers)
    assert (after["daily"], after["llm"]) == (before["daily"] + 1, before["llm"] + 1)


async def test_refused_websocket_units_cost_nothing(app: FastAPI, client) -> None:
    account = await register(client)
    before = await usage(client, account.headers)
    url = f"{STREAM}?token={account.access_token}"
    async with ws_client(app) as wc:
        async with aconnect_ws(url, wc) as ws:
            await ws.send_text('{"message": "add a task to call Anna"')  # cut short
            assert (await ws.receive_json(timeout=10))["error"] == "invalid_frame"
            with pytest.raises(WebSocketDisconnect) as closed:
                await ws.receive_json(timeout=10)
        assert closed.value.code == 1007
        async with aconnect_ws(url, wc) as ws:
            await ws.send_json({"message": "list my checkpoints", "agent": "checkpoint_agent"})
            assert (await ws.receive_json(timeout=10))["error"] == "agent_not_available"
            with pytest.raises(WebSocketDisconnect) as closed:
                await ws.receive_json(timeout=10)
        assert closed.value.code == 4403
        assert await usage(client, account.headers) == before

        async with aconnect_ws(url, wc) as ws:
            await ws.send_json(ANNA)
            _, done = await collect(ws)
    assert done.get("done") is True, done
    after = await usage(client, account.headers)
    assert (after["daily"], after["llm"]) == (before["daily"] + 1, before["llm"] + 1)


# --- anonymous LLM use per address --------------------------------------------------------
async def test_fresh_cookies_cannot_multiply_an_addresss_llm_answers(app: FastAPI) -> None:
    async with client_for(app, ip="192.0.2.44") as client:
        answers = []
        for _ in range(8):
            response = await client.post(CHAT, json=ANNA, headers=visitor_cookie())
            assert response.status_code == 200, response.text
            answers.append((response.json()["demo"], response.headers.get("x-demo-mode")))
        assert answers == [(False, None)] * 3 + [(True, "true")] * 5
        status = (await client.get("/api/v1/quota/status", headers=visitor_cookie())).json()
        assert status["per_ip_llm"] == {"limit": 3, "used": 3, "remaining": 0}
        assert status["per_ip"]["used"] == 8
        assert status["fallback_active"] is True
    # Another address has its own budget.
    async with client_for(app, ip="192.0.2.45") as other:
        response = await other.post(CHAT, json=ANNA)
        assert response.json()["demo"] is False


# --- reconnecting ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "settings_overrides",
    [{**GATE, "RATE_LIMIT_DAILY_PER_USER": 100, "RATE_LIMIT_DAILY_LLM_PER_USER": 100}],
)
async def test_a_client_reconnecting_right_after_done_never_meets_its_own_slot(
    app: FastAPI, client
) -> None:
    cookie = visitor_cookie()  # one anonymous identity: one concurrent unit
    async with ws_client(app) as wc:
        for _ in range(15):
            async with aconnect_ws(STREAM, wc, headers=cookie) as ws:
                await ws.send_json(ANNA)
                frames, last = await collect(ws)
            assert last.get("done") is True, frames
    for _ in range(15):
        response = await client.post(CHAT, json=ANNA, headers=cookie)
        assert response.status_code == 200, response.text
