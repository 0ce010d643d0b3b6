"""CORS for the Electron renderer's real origins, over HTTP and on WebSocket handshakes.

Through the whole app on the default `CORS_ORIGINS` (what an Electron client gets
out of the box), on SQLite and PostgreSQL: preflights and responses as a browser
sees them, the `null` origin without credentials or cookie, refusals in the error
shape, and the WebSocket's origin check (over the ASGI app, and over a real socket
for the status a client sees).
"""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.config import Settings
from app.gateway.cors import ALLOWED_HEADERS, EXPOSED_HEADERS
from app.main import create_app
from tests.chat.support import ANNA
from tests.chat.upstream import ServerThread
from tests.support.builders import register

pytestmark = pytest.mark.usefixtures("backend")

STREAM = "/api/v1/chat/stream"
# What a renderer runs from: the packaged app's scheme, Vite on either loopback name,
# and a renderer loaded from a file (Chromium sends `null`).
ELECTRON_ORIGINS = ["app://.", "http://localhost:5173", "http://127.0.0.1:5173", "null"]
# Headers the desktop client sends besides the safelisted ones.
CLIENT_HEADERS = (
    "authorization, content-type, x-demo-session-id, x-llm-api-key, if-none-match, "
    "x-backup-timestamp, x-checksum, x-request-id"
)
# Headers it reads.
CLIENT_READS = [
    "X-Quota-Reset",
    "X-Demo-Mode",
    "X-Checksum",
    "Last-Modified",
    "ETag",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
    "X-Request-ID",
]
# Sent by Stripe's servers to the webhook, never by a page.
SERVER_TO_SERVER_HEADERS = {"stripe-signature"}


@pytest.fixture
def settings_overrides() -> dict:
    # The app's own CORS defaults; room for the requests these tests make.
    return {"RATE_LIMIT_FREE_PER_MINUTE": 10_000}


def preflight(origin: str, method: str = "POST", headers: str = CLIENT_HEADERS) -> dict:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


def visitor_cookie() -> dict[str, str]:
    return {"Cookie": f"demo_session_id={secrets.token_hex(16)}"}


def ws_client(app: FastAPI) -> httpx.AsyncClient:
    transport = ASGIWebSocketTransport(
        app=app, client=("203.0.113.10", 50000), initial_receive_timeout=10
    )
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def daily_used(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get("/api/v1/quota/status", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["daily"]["used"]


def exposed(response: httpx.Response) -> set[str]:
    raw = response.headers.get("access-control-expose-headers", "")
    return {name.strip().lower() for name in raw.split(",") if name.strip()}


# --- preflights ----------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ELECTRON_ORIGINS)
async def test_every_electron_origin_passes_the_preflight_with_every_client_header(
    client: httpx.AsyncClient, origin: str
) -> None:
    response = await client.options("/api/v1/chat", headers=preflight(origin))
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == origin
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {h.strip() for h in CLIENT_HEADERS.split(",")} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    credentials = response.headers.get("access-control-allow-credentials")
    assert credentials == (None if origin == "null" else "true")


async def test_a_preflight_from_another_origin_is_refused_in_the_error_shape(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options("/api/v1/chat", headers=preflight("https://attacker.example"))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == "cors_refused"
    assert "'https://attacker.example' is not allowed" in body["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "access-control-allow-origin" not in response.headers
    assert "Origin" in response.headers["vary"]


async def test_a_preflight_naming_an_unknown_header_is_refused_and_says_which(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options(
        "/api/v1/chat",
        headers=preflight("http://localhost:5173", "PUT", "content-type, x-debug-token"),
    )
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "cors_refused"
    assert body["message"] == "CORS preflight refused: header x-debug-token is not allowed."


async def test_file_origin_of_older_electron_is_refused_unless_listed(
    client: httpx.AsyncClient,
) -> None:
    refused = await client.options("/api/v1/chat", headers=preflight("file://"))
    assert refused.status_code == 403 and refused.json()["error"] == "cors_refused"


# --- responses ---------------------------------------------------------------------------


async def test_a_renderer_reads_every_header_the_client_needs(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.get(
        "/api/v1/auth/me",
        headers={**account.headers, "Origin": "app://."},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "app://."
    assert response.headers["access-control-allow-credentials"] == "true"
    assert {name.lower() for name in CLIENT_READS} <= exposed(response)


@pytest.mark.parametrize("settings_overrides", [{"RATE_LIMIT_DAILY_PER_USER": 1}])
async def test_the_quota_reset_of_a_429_is_readable_by_the_page(
    client: httpx.AsyncClient,
) -> None:
    origin = {"Origin": "http://localhost:5173", **visitor_cookie()}
    assert (await client.post("/api/v1/chat", json=ANNA, headers=origin)).status_code == 200
    refused = await client.post("/api/v1/chat", json=ANNA, headers=origin)
    assert refused.status_code == 429
    assert refused.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert refused.headers["x-quota-reset"].endswith("Z")
    assert "x-quota-reset" in exposed(refused)


async def test_every_header_the_api_documents_is_allowed_or_exposed(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    sent = {
        scheme["name"].lower()
        for scheme in document.get("components", {}).get("securitySchemes", {}).values()
        if scheme.get("type") == "apiKey" and scheme.get("in") == "header"
    }
    read: set[str] = set()
    for path in document["paths"].values():
        for operation in path.values():
            if not isinstance(operation, dict):
                continue
            sent |= {
                param["name"].lower()
                for param in operation.get("parameters", [])
                if param.get("in") == "header"
            }
            for answer in operation.get("responses", {}).values():
                read |= {name.lower() for name in answer.get("headers", {})}
    assert sent - SERVER_TO_SERVER_HEADERS <= {name.lower() for name in ALLOWED_HEADERS}
    # A page reads the CORS-safelisted response headers without exposing them, and never
    # reads Set-Cookie (a forbidden response header name).
    readable_anyway = {
        "cache-control",
        "content-language",
        "content-length",
        "content-type",
        "expires",
        "last-modified",
        "pragma",
        "set-cookie",
    }
    assert read - readable_anyway <= {name.lower() for name in EXPOSED_HEADERS}


async def test_a_response_to_another_origin_grants_it_nothing(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/health", headers={"Origin": "https://attacker.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


# --- the null origin: bearer credentials only ------------------------------------------------


async def test_the_null_origin_uses_bearer_tokens_without_credentialed_cors(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    response = await client.get("/api/v1/auth/me", headers={**account.headers, "Origin": "null"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "null"
    assert "access-control-allow-credentials" not in response.headers
    assert "x-quota-reset" in exposed(response)


async def test_the_null_origin_neither_reads_nor_gets_the_visitor_cookie(
    client: httpx.AsyncClient,
) -> None:
    cookie = visitor_cookie()
    assert (await client.post("/api/v1/chat", json=ANNA, headers=cookie)).status_code == 200
    assert await daily_used(client, cookie) == 1
    # The same cookie from a file page: not the visitor's identity, and no cookie back.
    from_file_page = {**cookie, "Origin": "null"}
    assert await daily_used(client, from_file_page) == 0
    response = await client.get("/api/v1/quota/status", headers={"Origin": "null"})
    assert "set-cookie" not in response.headers
    # Without the Origin header (the desktop app's main process, curl) nothing changed.
    fresh = await client.get("/api/v1/quota/status", headers={"User-Agent": "other"})
    assert "demo_session_id=" in fresh.headers["set-cookie"]


# --- the WebSocket ----------------------------------------------------------------------------


async def test_a_websocket_from_another_origin_is_refused_before_it_opens(app: FastAPI) -> None:
    async with ws_client(app) as wc:
        with pytest.raises(WebSocketDisconnect) as refused:
            async with aconnect_ws(STREAM, wc, headers={"Origin": "https://attacker.example"}):
                pass
    assert refused.value.code == 1008
    assert refused.value.reason == "origin_not_allowed"


@pytest.mark.parametrize("origin", [*ELECTRON_ORIGINS, None])
async def test_a_websocket_from_an_allowed_origin_or_no_browser_streams(
    app: FastAPI, origin: str | None
) -> None:
    headers = {"Origin": origin} if origin else {}
    async with ws_client(app) as wc, aconnect_ws(STREAM, wc, headers=headers) as ws:
        await ws.send_json(ANNA)
        frames = []
        while not (frames and (frames[-1].get("done") or frames[-1].get("error"))):
            frames.append(await ws.receive_json(timeout=10))
    assert frames[-1]["done"] is True
    assert any("token" in frame for frame in frames)


async def test_a_websocket_from_the_null_origin_rides_no_cookie(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    cookie = visitor_cookie()
    async with (
        ws_client(app) as wc,
        aconnect_ws(STREAM, wc, headers={**cookie, "Origin": "null"}) as ws,
    ):
        assert "set-cookie" not in ws.response.headers
        await ws.send_json(ANNA)
        while not (await ws.receive_json(timeout=10)).get("done"):
            pass
    # The unit was not the cookie's visitor's.
    assert await daily_used(client, cookie) == 0
    # With its own token, a file page is that user.
    account = await register(client)
    async with (
        ws_client(app) as wc,
        aconnect_ws(f"{STREAM}?token={account.access_token}", wc, headers={"Origin": "null"}) as ws,
    ):
        await ws.send_json(ANNA)
        while not (await ws.receive_json(timeout=10)).get("done"):
            pass
    assert await daily_used(client, account.headers) == 1


async def test_over_a_real_socket_the_refusal_is_a_403_with_the_error_body(
    settings: Settings,
) -> None:
    server = ServerThread(create_app(settings)).start()
    try:
        url = f"ws://127.0.0.1:{server.port}{STREAM}"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, origin="https://attacker.example"):
                pass
        response = refused.value.response
        assert response.status_code == 403
        assert response.headers["Content-Type"] == "application/json"
        body = json.loads(response.body)
        assert body["error"] == "origin_not_allowed"
        assert body["request_id"] == response.headers["X-Request-ID"]
        # The desktop app's main process sends no Origin: it is not a page.
        async with connect(url, open_timeout=30) as ws:
            await ws.send(json.dumps(ANNA))
            while not json.loads(await ws.recv()).get("done"):
                pass
    finally:
        server.stop()


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings_overrides",
    [{"CORS_ORIGINS": "app://adiuva", "CORS_ORIGIN_REGEX": r"http://(localhost|127\.0\.0\.1):\d+"}],
)
async def test_configured_origins_and_a_dev_server_pattern(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    for origin in ("app://adiuva", "http://localhost:4321", "http://127.0.0.1:8080"):
        response = await client.options("/api/v1/chat", headers=preflight(origin))
        assert response.status_code == 200, origin
    for origin in ("app://.", "http://localhost.attacker.example:80", "null"):
        response = await client.options("/api/v1/chat", headers=preflight(origin))
        assert response.status_code == 403, origin
    async with ws_client(app) as wc:
        with pytest.raises(WebSocketDisconnect):
            async with aconnect_ws(STREAM, wc, headers={"Origin": "null"}):
                pass
