"""NUL characters and lone surrogates are refused at the edge (422), for every route."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel

from app.errors import install_error_handlers
from app.gateway.input_guard import InputGuardMiddleware, check_json_body
from app.kit.text import MAX_JSON_DEPTH, find_bad_json
from app.models import BillingTier
from tests.marketplace.helpers import account_on, manifest
from tests.support.builders import register
from tests.support.demo import SESSIONS, start_session


def raw_json(value: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A JSON body as a real client escapes it (`\\ud800`, `\\u0000`)."""
    return {
        "content": json.dumps(value),  # ensure_ascii: surrogates travel as \\uXXXX escapes
        "headers": {**(headers or {}), "Content-Type": "application/json"},
    }


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# --- the mechanism, on a tiny app ------------------------------------------------------
class Echo(BaseModel):
    text: str
    extra: dict[str, Any] = {}


@pytest.fixture
async def tiny() -> httpx.AsyncClient:
    app = FastAPI(dependencies=[Depends(check_json_body)])
    install_error_handlers(app)
    calls: list[str] = []

    @app.post("/echo")
    async def echo(body: Echo) -> dict[str, str]:
        calls.append(body.text)
        return {"text": body.text}

    @app.get("/search")
    async def search(q: str = "") -> dict[str, str]:
        calls.append(q)
        return {"q": q}

    @app.post("/raw")
    async def raw(request_body: bytes = b"") -> dict[str, int]:
        return {"ok": 1}

    app.add_middleware(InputGuardMiddleware)
    app.state.calls = calls
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tiny") as client:
        client.calls = calls  # type: ignore[attr-defined]
        yield client


@pytest.mark.parametrize(
    "body",
    [
        {"text": "a\x00b"},
        {"text": "\ud800"},
        {"text": "ok\udfffok"},
        {"text": "ok", "extra": {"k\x00": 1}},
        {"text": "ok", "extra": {"list": ["fine", ["\udbff"]]}},
    ],
)
async def test_json_bodies_with_bad_text_are_refused(tiny: httpx.AsyncClient, body) -> None:
    response = await tiny.post("/echo", **raw_json(body))
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert response.json()["details"][0]["type"] == "string_characters"
    assert tiny.calls == []  # type: ignore[attr-defined]


async def test_paired_surrogates_and_ordinary_text_pass(tiny: httpx.AsyncClient) -> None:
    response = await tiny.post("/echo", **raw_json({"text": "emoji 😀 and ümlaut"}))
    assert response.status_code == 200
    assert response.json() == {"text": "emoji 😀 and ümlaut"}


async def test_json_nested_too_deep_is_refused(tiny: httpx.AsyncClient) -> None:
    body = '{"text": "x", "extra": ' + nested(MAX_JSON_DEPTH + 5) + "}"
    response = await tiny.post("/echo", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["details"][0]["type"] == "json_too_deep"
    fits = '{"text": "x", "extra": ' + nested(MAX_JSON_DEPTH - 2) + "}"
    ok = await tiny.post("/echo", content=fits, headers={"Content-Type": "application/json"})
    assert ok.status_code == 200


@pytest.mark.parametrize("query", ["q=a%00b", "q=%00", "a%00=1", "q=ok&z=%00"])
async def test_query_strings_with_nul_are_refused(tiny: httpx.AsyncClient, query: str) -> None:
    response = await tiny.get(f"/search?{query}")
    assert response.status_code == 422
    assert set(response.json()) >= {"error", "message", "request_id"}
    assert tiny.calls == []  # type: ignore[attr-defined]


async def test_paths_with_nul_are_refused(tiny: httpx.AsyncClient) -> None:
    response = await tiny.get("/search%00")
    assert response.status_code == 422


async def test_invalid_utf8_in_the_query_is_replaced_not_refused(tiny: httpx.AsyncClient) -> None:
    # Percent-encoded surrogate bytes are not UTF-8: routes see U+FFFD, which is harmless.
    response = await tiny.get("/search?q=%ED%A0%80")
    assert response.status_code == 200
    assert response.json() == {"q": "\ufffd\ufffd\ufffd"}


def test_find_bad_json_walks_without_recursion() -> None:
    deep: Any = "\x00"
    for _ in range(10_000):
        deep = [deep]
    assert find_bad_json(deep, max_depth=20_000) == ((0,) * 10_000, "text")
    assert find_bad_json(deep)[1] == "depth"  # type: ignore[index]
    assert find_bad_json({"a": ["b", {"c": "d"}]}) is None


# --- through the whole application, on both databases ---------------------------------
@pytest.mark.usefixtures("backend")
async def test_nul_in_a_demo_session_path_is_422(client: httpx.AsyncClient) -> None:
    session = await start_session(client)
    response = await client.get(f"{SESSIONS}/{session['session_id']}%00")
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    ok = await client.get(f"{SESSIONS}/{session['session_id']}")
    assert ok.status_code == 200


@pytest.mark.usefixtures("backend")
async def test_nul_in_a_plugin_search_is_422(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await account_on(client, app, BillingTier.POWER)
    response = await client.get("/api/v1/plugins?q=sync%00", headers=account.headers)
    assert response.status_code == 422
    ok = await client.get("/api/v1/plugins?q=sync", headers=account.headers)
    assert ok.status_code == 200


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize(
    "overrides",
    [{"name": "Plugin \ud800"}, {"description": "a\x00b"}, {"settings": {"\udc00": "x"}}],
)
async def test_bad_text_in_a_manifest_is_422(client: httpx.AsyncClient, overrides) -> None:
    developer = await register(client)
    response = await client.post(
        "/api/v1/plugins",
        **raw_json(manifest("odd-text", **overrides), developer.headers),
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    again = await client.post(
        "/api/v1/plugins", json=manifest("odd-text"), headers=developer.headers
    )
    assert again.status_code == 201  # nothing of the refused one was stored


@pytest.mark.usefixtures("backend")
async def test_bad_text_in_a_chat_message_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/chat", **raw_json({"message": "add a task \ud83d"}))
    assert response.status_code == 422
    assert response.json()["details"][0]["loc"] == ["body", "message"]


async def test_a_demo_session_header_no_session_could_have_is_refused_as_invalid(client) -> None:
    for bogus in ("demo_\x00abc", "demo_é", "a" * 65, "x y"):
        response = await client.get(
            "/api/v1/quota/status",
            headers={"X-Demo-Session-Id": bogus.encode("latin-1", "replace")},
        )
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_demo_session"
