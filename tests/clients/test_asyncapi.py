"""`/asyncapi.json`: a valid AsyncAPI 3.0 document whose frame schemas match the wire.

Validity is checked against the official AsyncAPI 3.0.0 JSON Schema, vendored
from the `@asyncapi/specs` package (6.11.1, Apache-2.0: `schemas/3.0.0-without-$id.json`)
as `asyncapi-3.0.0.schema.json` — the schema AsyncAPI's own parser validates with.
The frames are real ones, read from `/api/v1/chat/stream` through the whole stack.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws
from jsonschema import Draft7Validator, Draft202012Validator

from app.chat.schemas import DoneFrame, TokenFrame
from tests.chat.conftest import running_upstream
from tests.chat.support import ANNA, ws_client

SPEC_SCHEMA = json.loads((Path(__file__).parent / "asyncapi-3.0.0.schema.json").read_text())


@pytest.fixture(scope="module")
def upstream_server() -> Iterator[Any]:
    with running_upstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(upstream_server) -> Iterator[Any]:
    _, state = upstream_server
    state.reset()
    yield state
    state.release.set()


@pytest.fixture
def settings_overrides(upstream_server) -> dict[str, object]:
    server, _ = upstream_server
    base = f"http://127.0.0.1:{server.port}/v1"
    return {
        "LLM_MODEL": "openai/gpt-4o-mini",
        "LLM_ROUTER_MODEL": "openai/gpt-4o-mini",
        "LLM_API_BASE": base,
        "LLM_API_KEY": "sk-serverkey-0123456789",
        "LLM_TIMEOUT_SECONDS": 30.0,
        "WS_PING_INTERVAL_SECONDS": 0.05,
    }


async def _document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    assert "RateLimit-Limit" not in response.headers
    return response.json()


def _payload_validator(document: dict[str, Any], message: dict[str, Any]) -> Draft202012Validator:
    # The payloads refer to `#/components/schemas/…` of the document they sit in.
    return Draft202012Validator({**message["payload"], "components": document["components"]})


def _server_messages(document: dict[str, Any]) -> dict[str, Draft202012Validator]:
    channel = document["channels"]["chatStream"]
    validators = {}
    for ref in document["operations"]["sendAnswer"]["messages"]:
        name = ref["$ref"].rsplit("/", 1)[-1]
        message_ref = channel["messages"][name]["$ref"].rsplit("/", 1)[-1]
        validators[name] = _payload_validator(
            document, document["components"]["messages"][message_ref]
        )
    return validators


def _kind(frame: dict[str, Any], validators: dict[str, Draft202012Validator]) -> str:
    matches = [name for name, validator in validators.items() if validator.is_valid(frame)]
    assert len(matches) == 1, f"{frame} matches {matches}"
    return matches[0]


pytestmark = pytest.mark.usefixtures("backend")


async def test_the_document_is_valid_asyncapi_3(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    errors = sorted(Draft7Validator(SPEC_SCHEMA).iter_errors(document), key=str)
    assert errors == [], [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    assert document["asyncapi"] == "3.0.0"
    assert document["servers"]["api"] == {**document["servers"]["api"], "host": "testserver"}
    assert document["channels"]["chatStream"]["address"] == "/api/v1/chat/stream"
    # The schemas are the server's own models, not a copy that could drift.
    schemas = document["components"]["schemas"]
    done = DoneFrame.model_json_schema(
        mode="serialization", ref_template="#/components/schemas/{model}"
    )
    done.pop("$defs", None)
    assert schemas["DoneFrame"] == done
    assert schemas["TokenFrame"] == TokenFrame.model_json_schema(mode="serialization")


async def test_the_request_schema_accepts_a_real_request(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    message = document["components"]["messages"]["chatRequest"]
    validator = _payload_validator(document, message)
    assert validator.is_valid(ANNA)
    assert not validator.is_valid({"context": {}})


async def test_real_frames_match_the_documented_messages(
    app: FastAPI, client: httpx.AsyncClient, upstream
) -> None:
    validators = _server_messages(await _document(client))
    seen: dict[str, dict[str, Any]] = {}
    upstream.mode = "hang"
    async with ws_client(app) as wc:
        # 1. With the LLM: pings while the model is silent, then tokens and done.
        async with aconnect_ws("/api/v1/chat/stream", wc) as ws:
            await ws.send_json(ANNA)
            frame = await ws.receive_json(timeout=10)
            seen[_kind(frame, validators)] = frame
            upstream.release.set()
            while "done" not in seen and "error" not in seen:
                frame = await ws.receive_json(timeout=10)
                seen.setdefault(_kind(frame, validators), frame)
        # 2. The anonymous caller's one LLM unit is spent: the demo model answers.
        async with aconnect_ws("/api/v1/chat/stream", wc) as ws:
            await ws.send_json(ANNA)
            frame = await ws.receive_json(timeout=10)
            assert _kind(frame, validators) == "demoMode"
            seen["demoMode"] = frame
            while True:
                frame = await ws.receive_json(timeout=10)
                kind = _kind(frame, validators)
                seen.setdefault(kind, frame)
                if kind == "done":
                    break
        # 3. Not a ChatRequest: an error frame, then 1007.
        async with aconnect_ws("/api/v1/chat/stream", wc) as ws:
            await ws.send_text('{"message": ""}')
            frame = await ws.receive_json(timeout=10)
            assert _kind(frame, validators) == "error"
            seen["error"] = frame
            with pytest.raises(WebSocketDisconnect) as closed:
                await ws.receive_text(timeout=10)
            assert closed.value.code == 1007
    assert set(seen) == {"ping", "token", "done", "demoMode", "error"}, seen
    assert seen["error"]["error"] == "invalid_frame"
    assert "plan" not in seen["done"]  # omitted, not null, outside plan mode
