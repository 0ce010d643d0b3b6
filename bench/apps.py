"""ASGI apps the benchmarks serve: a bare FastAPI baseline and the full application.

Both expose the same trivial route, `GET /api/v1/bench/ping`, so a ratio between
them is the cost of everything the full stack adds (request id and access log,
CORS, tier rate limit, quota gate, sanitizer, error handling).
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

from app.main import create_app


class Pong(BaseModel):
    pong: bool = True


def _add_ping(app: FastAPI) -> FastAPI:
    @app.get("/api/v1/bench/ping", response_model=Pong)
    async def ping() -> Pong:
        return Pong()

    return app


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/v1/health")
    async def health() -> dict:
        return {"status": "ok"}

    return _add_ping(app)


def full_app() -> FastAPI:
    """The real app (settings from the environment) plus the ping route."""
    return _add_ping(create_app())
