"""ASGI apps the benchmarks serve: a bare FastAPI baseline and the full application.

Both expose the same trivial route, `GET /api/v1/bench/ping`, so a ratio between
them is the cost of everything the full stack adds (request id and access log,
CORS, tier rate limit, quota gate, sanitizer, error handling). The bare app also
has the chat stream's path, as a WebSocket route that accepts and waits.
"""

from __future__ import annotations

import contextlib

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from app.gateway.quota_gate import QuotaGateMiddleware
from app.gateway.rate_limit import TierRateLimitMiddleware
from app.gateway.sanitizer import SanitizerMiddleware
from app.models import BillingTier
from app.work import LLMGrant, UnitOfWork


class Pong(BaseModel):
    pong: bool = True


def _add_ping(app: FastAPI) -> FastAPI:
    @app.get("/api/v1/bench/ping", response_model=Pong)
    async def ping() -> Pong:
        return Pong()

    return app


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.websocket("/api/v1/chat/stream")
    async def idle(websocket: WebSocket) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:  # hold the connection until the client leaves
                await websocket.receive_text()

    @app.get("/api/v1/health")
    async def health() -> dict:
        return {"status": "ok"}

    return _add_ping(app)


def full_app() -> FastAPI:
    """The real app (settings from the environment) plus the ping route."""
    # Imported here: the whole app (the model clients above all) takes seconds to
    # import, and a server of the bare app has no use for it.
    from app.main import create_app

    return _add_ping(create_app())


class _AdmitEverything:
    """Stands in for the gateway: every request is an admitted, unmetered unit of work."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope.setdefault("state", {})["unit_of_work"] = UnitOfWork(
                subject="bench", tier=BillingTier.FREE, llm=LLMGrant(use_llm=True)
            )
        await self.app(scope, receive, send)


GATEWAY = (TierRateLimitMiddleware, QuotaGateMiddleware, SanitizerMiddleware)


def ungated_app() -> FastAPI:
    """The full app and its routes without the gateway: the baseline of a unit of work."""
    app = full_app()
    app.user_middleware = [m for m in app.user_middleware if m.cls not in GATEWAY]
    app.add_middleware(_AdmitEverything)
    return app
