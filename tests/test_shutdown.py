"""Graceful shutdown: SIGTERM to a real server process while a stream and a request run.

The open stream gets a last `server_shutting_down` frame and a 1012 close
while its model call still hangs; its lease and its credit reservation are
given back; the in-flight HTTP request finishes; the process exits by itself
(one `adiuva serve` process, and gunicorn with our worker). A request that
outlives the graceful timeout is cut, and still leaves nothing behind. The
app's side of the hook (`app.state.shutdown.drain()`) is also tested in
process, on both database backends.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws
from jose import jwt
from sqlalchemy import func, select

from app.models import BillingTier, ConcurrencyLease
from tests.chat.support import ANNA, ws_client
from tests.chat.upstream import UpstreamState
from tests.support.builders import Account, register
from tests.support.cluster_db import ClusterDatabase
from tests.support.postgres import PostgresServer, _free_port
from tests.support.servers import (
    STOP_DEADLINE,
    ServerProcess,
    base_env,
    finish,
    fresh_database,
    open_stream,
    poll,
    start_gunicorn,
    start_single,
)
from tests.support.upstream_fixtures import upstream, upstream_env, upstream_thread

__all__ = ["upstream", "upstream_thread"]  # fixtures, used by name


@pytest.fixture
def server_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture
async def db(server_database_url: str) -> AsyncIterator[ClusterDatabase]:
    database = ClusterDatabase(server_database_url)
    yield database
    await database.dispose()


@pytest.fixture
def server_env(
    server_database_url: str, upstream_thread, tmp_path: Path, redis_url: str
) -> dict[str, str]:
    upstream_server, _ = upstream_thread
    return base_env(
        server_database_url,
        tmp_path / "data",
        # Several gunicorn workers refuse a per-process store (app/deployment.py).
        RATE_LIMIT_STORAGE_URI=redis_url.rsplit("/", 1)[0] + "/1",
        QDRANT_URL=f"http://127.0.0.1:{_free_port()}",
        **upstream_env(upstream_server),
    )


async def _pro_account(client: httpx.AsyncClient, db: ClusterDatabase) -> tuple[Account, uuid.UUID]:
    account = await register(client)
    tenant_id = uuid.UUID(jwt.get_unverified_claims(account.access_token)["tid"])
    await db.set_tier(tenant_id, BillingTier.PRO)
    return account, tenant_id


async def _exited_cleanly(server: ServerProcess) -> bool:
    """The process ran its whole shutdown and exited by itself.

    uvicorn re-raises the SIGTERM it caught once it has shut down, so a single
    process ends "killed by SIGTERM"; gunicorn's master exits 0.
    """
    code = await asyncio.to_thread(server.process.wait, STOP_DEADLINE)
    return code in (0, -signal.SIGTERM) and "Application shutdown complete" in server.log_text()


def _received(upstream: UpstreamState, count: int):
    async def check() -> bool:
        return len(upstream.requests) >= count

    return check


@pytest.mark.parametrize("kind", ["single", "gunicorn"])
async def test_sigterm_closes_streams_cleanly_and_lets_requests_finish(
    kind: str, server_env: dict[str, str], db: ClusterDatabase, upstream, tmp_path: Path
) -> None:
    if kind == "single":
        server = start_single(server_env, tmp_path / "server")
    else:
        server = start_gunicorn(server_env, tmp_path / "server", workers=2)
    try:
        upstream.mode = "hang"
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            account, tenant_id = await _pro_account(client, db)
            stream = await open_stream(server, account.access_token)
            await poll(_received(upstream, 1), "the stream's model call")
            # An anonymous caller's request, in flight on the upstream too.
            in_flight = asyncio.create_task(client.post("/api/v1/chat", json=ANNA))
            await poll(_received(upstream, 2), "the request's model call")

            server.process.send_signal(signal.SIGTERM)
            last = await finish(stream)
            assert last["error"] == "server_shutting_down" and last["request_id"]
            assert stream.close_code == 1012
            # The stream ended while its model call still hung: nobody waited for it.
            assert not upstream.release.is_set()
            upstream.release.set()
            response = await in_flight
        assert response.status_code == 200, response.text
        assert response.json()["actions"]
        assert await _exited_cleanly(server)
    finally:
        server.stop()
    assert await db.lease_rows() == 0
    ledger = await db.ledger(tenant_id)
    # The stream's reservation was settled (released: its call produced nothing).
    assert ledger.open_reservations == 0
    assert ledger.total == ledger.balance


async def test_a_request_past_the_graceful_timeout_is_cut_and_leaves_nothing_behind(
    server_env: dict[str, str], db: ClusterDatabase, upstream, tmp_path: Path
) -> None:
    server = start_single(server_env, tmp_path / "server", graceful_timeout=2)
    try:
        upstream.mode = "hang"
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            account, tenant_id = await _pro_account(client, db)
            in_flight = asyncio.create_task(
                client.post("/api/v1/chat", json=ANNA, headers=account.headers)
            )
            await poll(_received(upstream, 1), "the request's model call")
            server.process.send_signal(signal.SIGTERM)
            # The upstream never answers; the server stops waiting after its timeout.
            assert await _exited_cleanly(server)
            with pytest.raises(httpx.HTTPError):
                (await in_flight).raise_for_status()
    finally:
        server.stop()
    assert await db.lease_rows() == 0
    ledger = await db.ledger(tenant_id)
    assert ledger.open_reservations == 0
    assert ledger.total == ledger.balance


# --- the app's side of the hook, in process, on both backends ------------------------------
@pytest.fixture
def settings_overrides(upstream_thread) -> dict[str, object]:
    upstream_server, _ = upstream_thread
    return upstream_env(upstream_server)


async def _lease_rows(app: FastAPI) -> int:
    async with app.state.db.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(ConcurrencyLease)) or 0)


@pytest.mark.usefixtures("backend")
async def test_draining_ends_open_streams_with_a_last_frame_and_refuses_new_ones(
    app: FastAPI, upstream
) -> None:
    upstream.mode = "hang"
    async with ws_client(app) as wc:
        async with aconnect_ws("/api/v1/chat/stream", wc) as ws:
            await ws.send_json(ANNA)
            await poll(_received(upstream, 1), "the stream's model call")
            assert app.state.shutdown.open_streams == 1
            drained = asyncio.create_task(app.state.shutdown.drain())
            last = await ws.receive_json(timeout=10)
            with pytest.raises(WebSocketDisconnect) as closed:
                await ws.receive_json(timeout=10)
        assert last["error"] == "server_shutting_down"
        assert closed.value.code == 1012
        await asyncio.wait_for(drained, 10)
        assert await _lease_rows(app) == 0
        # A stream that arrives while the app drains is told at once, before its first frame.
        async with aconnect_ws("/api/v1/chat/stream", wc) as late:
            frame = await late.receive_json(timeout=10)
            with pytest.raises(WebSocketDisconnect) as closed:
                await late.receive_json(timeout=10)
        assert frame["error"] == "server_shutting_down" and closed.value.code == 1012
    assert not upstream.release.is_set() and len(upstream.requests) == 1
    assert await _lease_rows(app) == 0
