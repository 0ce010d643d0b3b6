"""Shared pieces of the chat API tests: a request, a WebSocket client, frame collection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from httpx_ws.transport import ASGIWebSocketTransport

CONTEXT = {
    "today": "2026-11-18",
    "projects": [{"id": "p1", "name": "Website relaunch"}],
    "tasks": [{"id": "t1", "title": "Write website copy", "due_date": "2026-11-18"}],
}
ANNA = {"message": "add a task to call Anna tomorrow, high priority", "context": CONTEXT}


@asynccontextmanager
async def ws_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # The handshake passes the gate's database admission: allow for a loaded machine.
    transport = ASGIWebSocketTransport(app=app, initial_receive_timeout=10)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def collect(ws) -> tuple[list[dict], dict]:
    frames = []
    while True:
        frame = await ws.receive_json(timeout=10)
        frames.append(frame)
        if frame.get("done") or frame.get("error"):
            return frames, frame
