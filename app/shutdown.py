"""Graceful shutdown: tell open chat streams the server is going away, then wait for them.

A server about to stop calls `GracefulShutdown.drain()` *before* it closes its
connections (see `app/server.py`). Each open `/chat/stream` session watches the
signal: it stops its model call (settling the credits it used), sends a last
`{"error": "server_shutting_down", …}` frame and closes with 1012 (service
restart); its concurrency leases are released on the way out. `drain()` returns
when the last stream has closed (the server bounds the wait).

The server finds this object in the ASGI lifespan state (`LIFESPAN_STATE_KEY`),
the channel the ASGI spec gives a server and its app; the app keeps it on
`app.state.shutdown`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from fastapi import FastAPI

from app.config import Settings

log = logging.getLogger(__name__)

LIFESPAN_STATE_KEY = "graceful_shutdown"
# RFC 6455 / IANA: "service restart" — the client should reconnect, to this or another worker.
WS_SERVICE_RESTART = 1012


class GracefulShutdown:
    def __init__(self) -> None:
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._streams = 0

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def open_streams(self) -> int:
        return self._streams

    async def wait(self) -> None:
        await self._stopping.wait()

    @contextmanager
    def stream(self) -> Iterator[None]:
        """Count one open stream for `drain()` to wait for."""
        self._streams += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._streams -= 1
            if self._streams == 0:
                self._idle.set()

    async def drain(self) -> None:
        """Ask every open stream to finish, and wait until the last one has closed."""
        if self._streams:
            log.info("shutting down: closing open chat streams", extra={"streams": self._streams})
        self._stopping.set()
        await self._idle.wait()


@asynccontextmanager
async def shutdown_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    app.state.shutdown = GracefulShutdown()
    yield
