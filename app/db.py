"""Async engine and sessions; the request-scoped session commits on success only.

Dropped connections (a database restart, a terminated backend, an idle timeout)
are handled optimistically, not with a ping per checkout: a pooled asyncpg
connection that the server has already closed is noticed without a round trip
(the driver saw the socket close) and replaced at checkout; one that fails in
use is invalidated by SQLAlchemy, a single-statement read is retried once on a
fresh connection (`read_once_retried`), and a request's session answers 503
`database_unavailable` instead of a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Annotated, Any
from weakref import WeakKeyDictionary

from fastapi import Depends, Request
from sqlalchemy import Row, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql import Executable

from app.config import Settings
from app.errors import ServiceUnavailable


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _set_sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Writers from concurrent requests wait for each other instead of failing.
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# Called with the engine of every `Database` (app/auth/invalidation.py watches the
# writes of every SQLite database of the process through it). Migrations use
# `build_engine` alone.
ENGINE_HOOKS: list[Callable[[AsyncEngine], None]] = []


def build_engine(url: str, settings: Settings | None = None) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
        return engine
    pool_size = settings.DATABASE_POOL_SIZE if settings else 10
    max_overflow = settings.DATABASE_MAX_OVERFLOW if settings else 20
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=max_overflow)
    event.listen(engine.sync_engine.pool, "checkout", _discard_closed)
    return engine


# One writer at a time per SQLite database of the process (SQLite serves one worker).
_SQLITE_WRITERS: WeakKeyDictionary[Any, asyncio.Lock] = WeakKeyDictionary()


@contextlib.asynccontextmanager
async def begin_write(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """`engine.begin()` for a write transaction on a hot path (admission, credits).

    SQLite has one writer at a time; concurrent writers otherwise meet in its busy
    handler, which sleeps and retries (1 ms, 2 ms, 5 ms … 100 ms), so under load
    most of a write's time was spent asleep. On SQLite these transactions queue on
    a lock in the event loop instead and each starts the moment the previous ends.
    """
    if engine.dialect.name != "sqlite":
        async with engine.begin() as connection:
            yield connection
        return
    lock = _SQLITE_WRITERS.setdefault(engine.sync_engine, asyncio.Lock())
    async with lock, engine.begin() as connection:
        yield connection


def _discard_closed(_: Any, record: Any, __: Any) -> None:
    """A connection the server has closed is replaced at checkout, at no round trip.

    (asyncpg marks a connection closed as soon as the event loop sees its socket
    close; raising DisconnectionError makes the pool connect afresh.)
    """
    driver = record.driver_connection
    if driver is not None and driver.is_closed():
        raise DisconnectionError("connection closed by the server")


def is_disconnect(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


async def read_once_retried(
    engine: AsyncEngine, statement: Executable, params: Mapping[str, Any]
) -> Row[Any] | None:
    """The first row of a read-only statement; retried once if the connection was dead.

    SQLAlchemy invalidates a connection found dead, so the retry gets a fresh one.
    """
    for attempt in (1, 2):
        try:
            async with engine.connect() as connection:
                return (await connection.execute(statement, params)).first()
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


class Database:
    """Owns the engine; created and disposed by the app's lifespan."""

    def __init__(self, url: str, settings: Settings | None = None) -> None:
        self.url = url
        self.engine = build_engine(url, settings)
        for hook in ENGINE_HOOKS:
            hook(self.engine)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.url)

    async def dispose(self) -> None:
        await self.engine.dispose()


async def get_database(request: Request) -> Database:
    return request.app.state.db


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: commit if the handler returned, roll back if it raised."""
    db: Database = request.app.state.db
    async with db.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException as exc:
            if not is_disconnect(exc):
                await session.rollback()
                raise
            # The connection died under the request: SQLAlchemy has invalidated it (the
            # next checkout connects afresh); the client may retry at once.
            with contextlib.suppress(SQLAlchemyError):
                await session.rollback()
            raise ServiceUnavailable(
                "The database connection was lost; retry the request.",
                error="database_unavailable",
                headers={"Retry-After": "1"},
            ) from exc


# Function scope: the commit happens before the response is sent, so a failed commit
# is reported to the client instead of being lost after a 2xx.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(get_database)]
