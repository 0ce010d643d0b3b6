"""The WebSocket path over a real socket: uvicorn serving the app, a websockets client."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.config import Settings
from app.main import create_app
from tests.chat.upstream import ServerThread

pytestmark = pytest.mark.usefixtures("backend")


async def test_stream_over_a_real_socket(settings: Settings) -> None:
    server = ServerThread(create_app(settings)).start()
    try:
        url = f"ws://127.0.0.1:{server.port}/api/v1/chat/stream"
        async with connect(url) as ws:
            await ws.send(json.dumps({"message": "write a note about the retro: ship smaller"}))
            frames = []
            while not frames or not frames[-1].get("done"):
                frames.append(json.loads(await ws.recv()))
        tokens = [f["token"] for f in frames if "token" in f]
        done = frames[-1]
        assert len(tokens) > 2 and "".join(tokens) == done["response"]
        assert done["agent"] == "note_agent"
        assert [a["type"] for a in done["actions"]] == ["create_record", "index_document"]
        note = done["actions"][0]["data"]
        assert (note["title"], note["body"]) == ("Retro", "ship smaller")
        assert ws.close_code == 1000
    finally:
        server.stop()


@pytest.mark.parametrize("settings_overrides", [{"WS_MAX_ANONYMOUS_PER_IP": 1}])
async def test_the_address_cap_answers_the_handshake_with_429_and_a_json_body(
    settings: Settings,
) -> None:
    server = ServerThread(create_app(settings)).start()
    try:
        url = f"ws://127.0.0.1:{server.port}/api/v1/chat/stream"
        async with connect(url) as first:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url):
                    pass
            response = refused.value.response
            assert response.status_code == 429
            assert int(response.headers["Retry-After"]) >= 1
            body = json.loads(response.body)
            assert body["error"] == "too_many_connections"
            assert body["request_id"] == response.headers["X-Request-ID"]
            # The socket that holds the place still works.
            await first.send(json.dumps({"message": "write a note about the retro: ship it"}))
            frames = []
            while not frames or not frames[-1].get("done"):
                frames.append(json.loads(await first.recv()))
    finally:
        server.stop()
