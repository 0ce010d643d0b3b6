"""Body and header caps (SPEC §12.6): on a tiny app, then through the whole stack."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request, WebSocket
from starlette.testclient import TestClient, WebSocketDenialResponse

from app.config import Settings
from app.gateway.body_limit import BodyLimitMiddleware
from app.kit.policy import BodyKind, RoutePolicies, RoutePolicy
from tests.chat.support import ANNA
from tests.support.billing import WEBHOOK_SECRET, sign, stripe_event

MiB = 1024 * 1024
CHUNK = 64 * 1024
JSON_CAP = 1 * MiB  # the defaults: the full-stack tests run on them
WEBHOOK_CAP = 512 * 1024


class Source:
    """A streamed request body (no Content-Length) that counts what the server pulled."""

    def __init__(self, total: int, prefix: bytes = b"") -> None:
        self.total = total
        self.prefix = prefix
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        data = self.prefix
        sent = 0
        while sent < self.total:
            chunk = (data + b" " * CHUNK)[: min(CHUNK, self.total - sent)]
            data = data[len(chunk) :]
            sent += len(chunk)
            self.pulled = sent
            yield chunk


def assert_refused(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["message"] and body["request_id"]
    assert response.headers["connection"] == "close"


# --- the middleware on a tiny app --------------------------------------------------------


def tiny_app(**caps: int) -> tuple[FastAPI, list[int]]:
    """A JSON route and an upload route behind the middleware; records what routes read."""
    settings = Settings(_env_file=None, **caps)  # type: ignore[arg-type]
    app = FastAPI()
    seen: list[int] = []

    @app.post("/api/v1/echo")
    async def echo(request: Request) -> dict:
        body = await request.body()
        seen.append(len(body))
        return {"size": len(body)}

    @app.post("/api/v1/upload")
    async def upload(request: Request) -> dict:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        seen.append(size)
        return {"size": size}

    @app.websocket("/api/v1/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"hello": True})
        await websocket.close()

    policies = RoutePolicies()
    policies.declare("POST", "/api/v1/echo", RoutePolicy())
    policies.declare("POST", "/api/v1/upload", RoutePolicy(body=BodyKind.UPLOAD))
    app.add_middleware(BodyLimitMiddleware, policies=policies, settings=settings)
    return app, seen


def tiny_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_streamed_body_under_the_cap_arrives_whole() -> None:
    app, seen = tiny_app(MAX_JSON_BODY_BYTES=100_000)
    async with tiny_client(app) as client:
        response = await client.post("/api/v1/echo", content=Source(100_000))
    assert response.json() == {"size": 100_000}
    assert seen == [100_000]


async def test_a_streamed_body_over_the_cap_never_reaches_the_route() -> None:
    app, seen = tiny_app(MAX_JSON_BODY_BYTES=100_000)
    source = Source(50 * MiB)
    async with tiny_client(app) as client:
        response = await client.post("/api/v1/echo", content=source)
    assert response.status_code == 413
    assert seen == []
    # Reading stopped at the chunk that passed the cap.
    assert source.pulled <= 100_000 + CHUNK


async def test_a_declared_length_over_the_cap_is_refused_unread() -> None:
    app, seen = tiny_app(MAX_JSON_BODY_BYTES=100_000)
    async with tiny_client(app) as client:
        response = await client.post("/api/v1/echo", content=b" " * 100_001)
    assert response.status_code == 413
    assert seen == []


async def test_uploads_keep_their_own_cap() -> None:
    app, seen = tiny_app(MAX_JSON_BODY_BYTES=100_000)
    async with tiny_client(app) as client:
        response = await client.post("/api/v1/upload", content=Source(300_000))
    assert response.json() == {"size": 300_000}
    assert seen == [300_000]


async def test_headers_over_the_cap_are_431() -> None:
    app, seen = tiny_app(MAX_HEADER_BYTES=4096)
    async with tiny_client(app) as client:
        ok = await client.post("/api/v1/echo", content=b"{}", headers={"X-Pad": "a" * 3000})
        refused = await client.post("/api/v1/echo", content=b"{}", headers={"X-Pad": "a" * 5000})
        many = await client.post(
            "/api/v1/echo", content=b"{}", headers={f"X-Pad-{i}": "a" * 100 for i in range(50)}
        )
    assert ok.status_code == 200
    assert refused.status_code == 431 and many.status_code == 431
    assert seen == [2]


def test_websocket_handshake_headers_over_the_cap_are_431() -> None:
    app, _ = tiny_app(MAX_HEADER_BYTES=4096)
    with TestClient(app) as client:
        with client.websocket_connect("/api/v1/ws", headers={"X-Pad": "a" * 3000}) as ws:
            assert ws.receive_json() == {"hello": True}
        with (
            pytest.raises(WebSocketDenialResponse) as denied,
            client.websocket_connect("/api/v1/ws", headers={"X-Pad": "a" * 5000}),
        ):
            pass
    assert denied.value.status_code == 431
    assert denied.value.json()["error"] == "request_headers_too_large"


# --- through the whole stack, on both databases ---------------------------------------------

WEBHOOK = "/api/v1/billing/webhook"
# Each route with a request a real client would send to it.
ROUTES = {
    "chat": ("/api/v1/chat", ANNA),
    "login": ("/api/v1/auth/login", {"email": "someone@example.com", "password": "x" * 12}),
    "demo_sessions": ("/api/v1/demo/sessions", {"demo_account_type": "freelancer"}),
}


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"STRIPE_SECRET_KEY": "", "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}


def padded(document: object, size: int) -> bytes:
    """A JSON document padded with trailing whitespace (still valid JSON) to `size` bytes."""
    raw = json.dumps(document).encode()
    return raw + b" " * (size - len(raw))


def webhook_event() -> str:
    return stripe_event("invoice.paid", {"id": "in_1", "object": "invoice", "customer": "cus_x"})


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize("route", [*ROUTES, "webhook"])
@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_an_oversized_body_is_413(
    client: httpx.AsyncClient, route: str, streamed: bool
) -> None:
    if route == "webhook":
        path, cap, document = WEBHOOK, WEBHOOK_CAP, json.loads(webhook_event())
    else:
        (path, document), cap = ROUTES[route], JSON_CAP
    body = padded(document, cap + 1)
    headers = {"Content-Type": "application/json"}
    if route == "webhook":
        headers["Stripe-Signature"] = sign(body.decode())
    if streamed:
        source = Source(50 * MiB, prefix=body[:-1])
        response = await client.post(path, content=source, headers=headers)
        assert source.pulled <= cap + CHUNK
    else:
        response = await client.post(path, content=body, headers=headers)
    assert_refused(response, 413, "payload_too_large")
    assert str(cap) in response.json()["message"]


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize("route", [*ROUTES, "webhook"])
async def test_headers_over_the_cap_are_431_on_every_route(
    client: httpx.AsyncClient, route: str
) -> None:
    path, document = ROUTES.get(route, (WEBHOOK, {}))
    response = await client.post(path, json=document, headers={"X-Padding": "a" * (40 * 1024)})
    assert_refused(response, 431, "request_headers_too_large")


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_bodies_just_under_the_cap_still_work(
    client: httpx.AsyncClient, streamed: bool
) -> None:
    def send(path: str, body: bytes, **headers: str):
        headers = {"Content-Type": "application/json", **headers}
        if streamed:
            return client.post(path, content=Source(len(body), prefix=body), headers=headers)
        return client.post(path, content=body, headers=headers)

    session = await send("/api/v1/demo/sessions", padded(ROUTES["demo_sessions"][1], JSON_CAP))
    assert session.status_code == 201, session.text
    chat = await send(
        "/api/v1/chat",
        padded(ANNA, JSON_CAP),
        **{"X-Demo-Session-Id": session.json()["session_id"]},
    )
    assert chat.status_code == 200, chat.text
    login = await send("/api/v1/auth/login", padded(ROUTES["login"][1], JSON_CAP))
    assert login.status_code == 401, login.text  # read and judged: no such account
    event = padded(json.loads(webhook_event()), WEBHOOK_CAP).decode()
    hook = await send(WEBHOOK, event.encode(), **{"Stripe-Signature": sign(event)})
    assert hook.status_code == 200, hook.text


@pytest.mark.usefixtures("backend")
async def test_a_refused_chat_body_costs_no_quota(client: httpx.AsyncClient) -> None:
    refused = await client.post(
        "/api/v1/chat", content=Source(5 * MiB), headers={"Content-Type": "application/json"}
    )
    assert refused.status_code == 413
    status = await client.get("/api/v1/quota/status")
    assert status.json()["daily"]["used"] == 0, status.text
    assert status.json()["per_ip"]["used"] == 0
