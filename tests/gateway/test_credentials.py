"""A credential that was presented and does not hold is a 401 on every limited route.

Bearer tokens (garbage, expired, revoked by logout), `?token=` on the WebSocket,
`X-Demo-Session-Id` and demo session tokens of unknown, expired or ended
sessions: refused by the gateway with 401 in the error shape (close 1008 on the
WebSocket), never answered as an anonymous caller, and at no cost to the user or
session they name. Only a request without any credential is anonymous.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws
from sqlalchemy import select

from app.auth.security import TokenCodec
from app.models import ConcurrencyLease, QuotaCounter
from tests.chat.support import ANNA, collect, ws_client
from tests.support.builders import client_for, register
from tests.support.demo import SESSIONS, expire_session, header, start_session

pytestmark = pytest.mark.usefixtures("backend")

QUOTA = "/api/v1/quota/status"
CHAT = "/api/v1/chat"
STREAM = "/api/v1/chat/stream"
# Routes that read who is calling, and public ones that only pass the gateway.
ROUTES = (
    ("GET", QUOTA),
    ("GET", "/api/v1/credits"),
    ("GET", "/api/v1/demo/accounts"),
    ("GET", "/api/v1/agents"),
    ("GET", f"{SESSIONS}/current"),
)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # Many requests from one test address; the window itself is tested at the end.
    return {"RATE_LIMIT_FREE_PER_MINUTE": 10_000}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def counted(app: FastAPI) -> tuple[list, list]:
    async with app.state.db.engine.connect() as connection:
        counters = (await connection.execute(select(QuotaCounter.subject, QuotaCounter.used))).all()
        leases = (await connection.execute(select(ConcurrencyLease.scope))).all()
    return sorted(map(tuple, counters)), sorted(map(tuple, leases))


def assert_401(response: httpx.Response, error: str, *, challenge: bool = True) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == error
    assert body["message"] and body["request_id"] == response.headers["x-request-id"]
    if challenge:
        assert response.headers["www-authenticate"] == "Bearer"
    assert "set-cookie" not in response.headers  # no visitor is minted for a refusal


async def expired_access_token(client: httpx.AsyncClient, settings) -> str:
    account = await register(client)
    codec = TokenCodec(settings)
    claims = codec.decode(account.access_token, "access")
    return codec.encode(
        "access", claims["sub"], timedelta(seconds=-60), tid=claims["tid"], ver=claims["ver"]
    ).token


async def revoked_access_token(client: httpx.AsyncClient) -> str:
    account = await register(client)
    logout = await client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": account.refresh_token},
        headers=account.headers,
    )
    assert logout.status_code == 204, logout.text
    return account.access_token


async def test_bad_bearer_tokens_are_401_on_every_route(client, app, settings):
    tokens = {
        "garbage": "not-a-jwt",
        "expired": await expired_access_token(client, settings),
        "revoked": await revoked_access_token(client),
    }
    before = await counted(app)
    for token in tokens.values():
        for method, path in ROUTES:
            response = await client.request(method, path, headers=bearer(token))
            assert_401(response, "invalid_token")
        chat = await client.post(CHAT, json=ANNA, headers=bearer(token))
        assert_401(chat, "invalid_token")
    assert await counted(app) == before


async def test_an_authorization_header_without_a_bearer_token_is_401(client, app):
    before = await counted(app)
    for value in ("Basic Zm9vOmJhcg==", "Token abc123", "Bearer", "Bearer    "):
        for method, path in ROUTES:
            response = await client.request(method, path, headers={"Authorization": value})
            assert_401(response, "invalid_token")
        assert_401(
            await client.post(CHAT, json=ANNA, headers={"Authorization": value}), "invalid_token"
        )
    assert await counted(app) == before


async def test_two_different_credentials_of_one_kind_are_refused(client, app):
    account = await register(client)
    other = await register(client)
    mine = ("Authorization", f"Bearer {account.access_token}")
    for second in ("Basic Zm9vOmJhcg==", f"Bearer {other.access_token}"):
        response = await client.get("/api/v1/credits", headers=[mine, ("Authorization", second)])
        assert_401(response, "ambiguous_credentials")
    first, again = await start_session(client), await start_session(client)
    response = await client.get(
        f"{SESSIONS}/current",
        headers=[
            ("X-Demo-Session-Id", first["session_id"]),
            ("X-Demo-Session-Id", again["session_id"]),
        ],
    )
    assert_401(response, "ambiguous_credentials")
    # The same header twice with one value is one credential.
    assert (await client.get("/api/v1/credits", headers=[mine, mine])).status_code == 200


async def test_without_any_credential_the_caller_is_anonymous(client):
    response = await client.get(QUOTA)
    assert response.status_code == 200, response.text
    assert response.json()["identity"] == "anonymous"
    assert "demo_session_id=" in response.headers["set-cookie"]


async def test_demo_credentials_of_sessions_gone_are_401(client, app):
    expired, ended = await start_session(client), await start_session(client)
    await expire_session(app, expired["session_id"])
    deleted = await client.delete(f"{SESSIONS}/{ended['session_id']}")
    assert deleted.status_code == 204
    cases = [
        (header("demo_" + "x" * 32), "invalid_demo_session"),
        (header(expired["session_id"]), "session_expired"),
        (bearer(expired["session_token"]), "session_expired"),
        (header(ended["session_id"]), "session_ended"),
        (bearer(ended["session_token"]), "session_ended"),
    ]
    before = await counted(app)
    for headers, error in cases:
        for method, path in ROUTES:
            assert_401(await client.request(method, path, headers=headers), error)
        assert_401(await client.post(CHAT, json=ANNA, headers=headers), error)
    assert await counted(app) == before


async def test_an_empty_session_header_is_no_credential(client):
    response = await client.get(QUOTA, headers={"X-Demo-Session-Id": ""})
    assert response.status_code == 200 and response.json()["identity"] == "anonymous"


async def test_a_bad_bearer_is_not_excused_by_a_good_session_header(client):
    session = await start_session(client)
    response = await client.get(
        QUOTA, headers={**bearer("not-a-jwt"), **header(session["session_id"])}
    )
    assert_401(response, "invalid_token")
    alone = await client.get(QUOTA, headers=header(session["session_id"]))
    assert alone.status_code == 200 and alone.json()["identity"] == "demo"


async def test_routes_outside_the_gateway_ignore_a_stale_bearer(client, settings):
    """Signing in again is how a client with an expired token recovers."""
    account = await register(client)
    stale = bearer(await expired_access_token(client, settings))
    login = await client.post(
        "/api/v1/auth/login",
        json={"email": account.email, "password": account.password},
        headers=stale,
    )
    assert login.status_code == 200, login.text
    assert (await client.get("/api/v1/health", headers=stale)).status_code == 200


async def _handshake_refusal(app: FastAPI, url: str, headers: dict | None = None) -> int:
    async with ws_client(app) as wc:
        with pytest.raises(WebSocketDisconnect) as refused:
            async with aconnect_ws(url, wc, headers=headers or {}):
                raise AssertionError("the handshake was accepted")
    return refused.value.code


async def test_websocket_handshakes_with_bad_credentials_are_refused(client, app, settings):
    expired = await expired_access_token(client, settings)
    ended = await start_session(client)
    assert (await client.delete(f"{SESSIONS}/{ended['session_id']}")).status_code == 204
    before = await counted(app)
    assert await _handshake_refusal(app, f"{STREAM}?token=not-a-jwt") == 1008
    assert await _handshake_refusal(app, f"{STREAM}?token={expired}") == 1008
    assert await _handshake_refusal(app, f"{STREAM}?token={ended['session_token']}") == 1008
    assert await _handshake_refusal(app, STREAM, header(ended["session_id"])) == 1008
    assert await _handshake_refusal(app, STREAM, bearer(expired)) == 1008
    assert await counted(app) == before


async def test_a_demo_session_streams_from_a_browser_with_its_token(client, app):
    """Browsers cannot set X-Demo-Session-Id on a WebSocket: `?token=` carries the session."""
    session = await start_session(client)
    message = {"message": "Mark the packaging mock-ups task as done"}
    url = f"{STREAM}?token={session['session_token']}"
    async with ws_client(app) as wc, aconnect_ws(url, wc) as ws:
        await ws.send_json(message)
        frames, done = await collect(ws)
    assert done.get("done") is True, done
    assert "".join(f.get("token", "") for f in frames) == done["response"]
    # The session's own workspace was the context: the action names its sample task.
    assert [a["id"] for a in done["actions"]] == ["task_nw_packaging"]
    status = (await client.get(QUOTA, headers=header(session["session_id"]))).json()
    assert status["identity"] == "demo" and status["daily"]["used"] == 1


@pytest.mark.parametrize("settings_overrides", [{"RATE_LIMIT_FREE_PER_MINUTE": 5}])
async def test_bad_credentials_count_in_the_address_window_not_the_owners(client, app):
    account = await register(client)
    revoked = await revoked_access_token(client)
    async with client_for(app, "198.51.100.40") as attacker:
        statuses = [
            (await attacker.get(QUOTA, headers=bearer(revoked))).status_code for _ in range(6)
        ]
        assert statuses == [401] * 5 + [429]
        # The address's anonymous window is what was spent.
        assert (await attacker.get(QUOTA)).status_code == 429
    mine = await client.get(QUOTA, headers=account.headers)
    assert mine.status_code == 200
    assert mine.headers["ratelimit-remaining"] == "4"
