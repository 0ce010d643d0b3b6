"""The server's WebSocket settings (`app.server.server_limits`) over a real socket.

A client offering permessage-deflate (browsers and `websockets` do) gets a plain
WebSocket: no compressor is kept for the socket's life.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from app.server import server_limits
from tests.support.servers import poll
from tests.support.settings import make_settings


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


@pytest.fixture
async def ws_url(tmp_path: Path) -> AsyncIterator[str]:
    """A uvicorn server with the app's settings, on a tiny echo app."""
    settings = make_settings("", tmp_path)
    config = uvicorn.Config(
        Starlette(routes=[WebSocketRoute("/echo", echo)]),
        log_level="warning",
        **server_limits(settings),
    )
    server = uvicorn.Server(config)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    serving = asyncio.create_task(server.serve(sockets=[listener]))

    async def started() -> bool:
        if serving.done():
            serving.result()  # the server failed to start: show why
        return server.started

    try:
        await poll(started, "the server to start")
        yield f"ws://127.0.0.1:{port}/echo"
    finally:
        server.should_exit = True
        await serving
        listener.close()


async def test_a_client_offering_compression_gets_a_plain_websocket(ws_url: str) -> None:
    async with connect(ws_url, compression="deflate", open_timeout=30) as ws:
        assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        message = '{"message": "' + "plan my week " * 100 + '"}'
        await ws.send(message)
        assert await ws.recv() == message
