"""How every worker's access cache learns that a row behind it changed.

PostgreSQL: the triggers of migration 004 `pg_notify` the `adiuva_access`
channel from the transaction that changes `users`, `memberships`,
`subscriptions` or `tenants`, so the notification goes out at commit and no
code path can forget it. Each worker holds one dedicated asyncpg connection
(not from the pool) that LISTENs and drops the entries each notification names.
Whenever that connection is not up — at start, after it is lost — the cache is
cleared and bypassed; it reconnects with a growing delay and pings the server
now and then, so a silently dead connection is noticed too.

A worker's own writes do not wait for their notification: a statement of any
`Database` of the process that writes to those tables holds the whole cache
(bypassed) until its connection goes back to the pool, then empties it.

SQLite (one process): every connection of every `Database` of the process gets
temporary triggers on the same tables that call back into Python. A write seen
in a statement holds the rows it touched (no cached answer is served or stored
for them) until the connection goes back to the pool, committed or rolled back;
then they are dropped once more. Every write path goes through those
connections, ORM or plain SQL. Writes from another process (an `adiuva` command
next to a live server) are not seen: `ACCESS_CACHE_TTL_SECONDS` bounds how long
they can go unnoticed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from weakref import WeakSet

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.access import AccessLookup, AccessSource
from app.auth.cache import CHANNEL, AccessCache
from app.config import Settings
from app.db import ENGINE_HOOKS, Database

log = logging.getLogger(__name__)

# The listener's connection, as it shows in pg_stat_activity (with the worker's pid).
LISTENER_APPLICATION_NAME = "adiuva-access-listener"
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 30.0
# A connection lost without its socket closing (a network partition) goes unnoticed
# until a ping fails: the cache could miss changes meanwhile, so the pings are
# frequent (one tiny query per worker every 2 s) and the window stays under 4 s.
PING_INTERVAL_SECONDS = 2.0
PING_TIMEOUT_SECONDS = 2.0
CONNECT_TIMEOUT_SECONDS = 10.0


@asynccontextmanager
async def access_source(db: Database, settings: Settings) -> AsyncIterator[AccessSource]:
    """The access source the gateway and `get_principal` share, for the life of the app."""
    lookup = AccessLookup(db)
    if settings.ACCESS_CACHE_SIZE == 0:
        yield lookup
        return
    cache = AccessCache(
        lookup, maxsize=settings.ACCESS_CACHE_SIZE, ttl=settings.ACCESS_CACHE_TTL_SECONDS
    )
    # Writes of this process reach the cache through the engine hooks below.
    caches = _caches[_database_key(db.engine)]
    caches.add(cache)
    try:
        if db.is_sqlite:
            cache.go_live()
            yield cache
            return
        listener = AccessListener(db.engine, cache)
        task = asyncio.create_task(listener.run(), name="access-cache-listener")
        try:
            yield cache
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        caches.discard(cache)


# Every cache of the process on a database, reached by the writes of every `Database`
# of the process to it (app/db.py calls `_watch` with each one's engine).
_caches: defaultdict[str | None, WeakSet[AccessCache]] = defaultdict(WeakSet)


def _database_key(engine: AsyncEngine) -> str | None:
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return f"{url.host}:{url.port}/{url.database}"
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None  # (one connection's own database: no other engine writes to it)
    return os.path.realpath(database)


def _watch(engine: AsyncEngine) -> None:
    caches = _caches[_database_key(engine)]
    if engine.dialect.name == "sqlite":
        watch_sqlite_writes(engine, caches)
    else:
        watch_own_writes(engine, caches)


ENGINE_HOOKS.append(_watch)


# --- PostgreSQL ----------------------------------------------------------------------------
class AccessListener:
    """One LISTENing connection per worker; the cache is live only while it is up."""

    def __init__(self, engine: AsyncEngine, cache: AccessCache) -> None:
        self.cache = cache
        _, options = engine.dialect.create_connect_args(engine.url)
        # Options of SQLAlchemy's asyncpg adapter, not of asyncpg.connect.
        for name in ("prepared_statement_cache_size", "prepared_statement_name_func"):
            options.pop(name, None)
        self._options: dict[str, Any] = options

    async def run(self) -> None:
        """Listen, and listen again after every loss, for ever (cancel to stop)."""
        failures = 0
        while True:
            try:
                await self._listen()
                failures = 0
            except Exception:
                # Whatever went wrong, the cache is dark (bypassed) until the next try.
                failures += 1
                log.warning(
                    "access cache listener lost; the cache is bypassed until it is back",
                    exc_info=True,
                    extra={"failures": failures},
                )
            finally:
                self.cache.go_dark()
            delay = FIRST_RETRY_SECONDS * 2 ** max(failures - 1, 0)
            await asyncio.sleep(min(delay, MAX_RETRY_SECONDS))

    async def _listen(self) -> None:
        """Returns (or raises) when the connection is gone."""
        connection: asyncpg.Connection = await asyncpg.connect(
            **self._options,
            timeout=CONNECT_TIMEOUT_SECONDS,
            server_settings={"application_name": f"{LISTENER_APPLICATION_NAME}:{os.getpid()}"},
        )
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        try:
            await connection.add_listener(CHANNEL, self._notified)
            catch_up = CatchUp(connection)
            # LISTEN is in force: anything committed from now on is delivered.
            self.cache.go_live(catch_up)
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), PING_INTERVAL_SECONDS)
                except TimeoutError:
                    await catch_up()  # the ping
        finally:
            self.cache.go_dark()
            connection.terminate()
        log.warning("access cache listener lost; the cache is bypassed until it is back")

    def _notified(self, _: object, __: int, ___: str, payload: str) -> None:
        self.cache.changed(payload)


class CatchUp:
    """A round trip on the listening connection, shared by the requests that wait for one.

    The server signals every listening backend when a transaction that notified
    commits, before that commit is acknowledged; an idle backend sends pending
    notifications before it answers `ReadyForQuery`. So once a query sent on the
    listening connection after a commit was acknowledged has been answered, that
    commit's notifications have arrived, ahead of the answer, and asyncpg has
    scheduled their callbacks first. A request of a worker that awaits this sees
    every change committed before it arrived: a logout answered by another worker
    ends the token here too, on the very next request.

    Callers that come while a round trip is under way wait for the next one (it may
    have been sent before their change was committed); every caller that comes
    before that next one is sent joins it, so a busy worker makes one at a time.
    """

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self._lock = asyncio.Lock()
        self._next: asyncio.Future[None] | None = None

    async def __call__(self) -> None:
        pending = self._next
        if pending is None:
            pending = self._next = asyncio.ensure_future(self._round_trip())
            # Retrieved here too, so a failure no waiter is left to see is not reported.
            pending.add_done_callback(lambda done: done.cancelled() or done.exception())
        await asyncio.shield(pending)

    async def _round_trip(self) -> None:
        async with self._lock:
            self._next = None  # callers from now on wait for a round trip sent after them
            await asyncio.wait_for(self._connection.execute("SELECT 1"), PING_TIMEOUT_SECONDS)


_WRITE = re.compile(r"^\s*(?:INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)
_WATCHED = re.compile(r"\b(?:users|memberships|subscriptions|tenants)\b", re.IGNORECASE)
_HOLDS_ALL = "adiuva_access_holds_all"  # connection record info: a write was seen


def watch_own_writes(engine: AsyncEngine, caches: WeakSet[AccessCache]) -> None:
    """Writes of this process to the watched tables hold the whole cache until committed.

    The triggers name the rows, but their notification arrives a moment after the
    commit; a write seen here bypasses every cached row from the statement on, and
    empties the cache when its connection goes back to the pool.
    """
    sync_engine = engine.sync_engine

    def seen(connection: Any, _: Any, statement: str, *__: Any) -> None:
        if _WRITE.match(statement) and _WATCHED.search(statement):
            info = connection.connection.info
            if _HOLDS_ALL not in info:
                holding = info[_HOLDS_ALL] = list(caches)
                for cache in holding:
                    cache.hold_all()

    def returned(_: Any, record: Any) -> None:
        for cache in record.info.pop(_HOLDS_ALL, ()) if record is not None else ():
            cache.release_all()

    event.listen(sync_engine, "after_cursor_execute", seen)
    event.listen(sync_engine.pool, "checkin", returned)
    event.listen(sync_engine.pool, "invalidate", lambda _, record, __: returned(_, record))


# --- SQLite --------------------------------------------------------------------------------
_FUNCTION = "adiuva_access_changed"
_CHANGES = "adiuva_access_changes"  # connection record info: changes seen, not yet held
_HELD = "adiuva_access_held"  # connection record info: (subjects, changes) held
_NOTE = f"SELECT {_FUNCTION}"

# Temporary triggers live on the connection that creates them: every connection of the
# app's engine, and nothing in the database file itself.
_TRIGGERS = (
    f"""CREATE TEMP TRIGGER IF NOT EXISTS adiuva_access_users_update
    AFTER UPDATE OF id, email, is_admin, is_active, token_version, email_verified_at
    ON main.users
    BEGIN {_NOTE}('u:' || OLD.id); {_NOTE}('u:' || NEW.id); END""",
    # Seats count active members only.
    f"""CREATE TEMP TRIGGER IF NOT EXISTS adiuva_access_users_active
    AFTER UPDATE OF is_active ON main.users WHEN OLD.is_active IS NOT NEW.is_active
    BEGIN {_NOTE}('t:' || tenant_id) FROM main.memberships WHERE user_id = NEW.id; END""",
    f"""CREATE TEMP TRIGGER IF NOT EXISTS adiuva_access_users_delete
    AFTER DELETE ON main.users BEGIN {_NOTE}('u:' || OLD.id); END""",
    f"""CREATE TEMP TRIGGER IF NOT EXISTS adiuva_access_memberships_insert
    AFTER INSERT ON main.memberships
    BEGIN {_NOTE}('m:' || NEW.user_id || ':' || NEW.tenant_id); {_NOTE}('t:' || NEW.tenant_id);
    END""",
    f"""CREATE TEMP TRIGGER IF NOT EXISTS adiuva_access_memberships_update
    AFTER UPDATE OF user_id, tenant_id, role ON main.memberships
    BEGIN {_NOTE}('m:' || OLD.user_id || ':' || OLD.tenant_id); {_NOTE}('t:' || OLD.tenant_id);
    {_NOTE}('m:' || NEW.user_id || ':' || NEW.tenant_id); {_NOTE}('t:' || NEW.tenant_id); END""",
    f"""CREATE TEMP TRIGGER IF NOT EXISTS adiuva_access_memberships_delete
    AFTER DELETE ON main.memberships
    BEGIN {_NOTE}('m:' || OLD.user_id || ':' || OLD.tenant_id); {_NOTE}('t:' || OLD.tenant_id);
    END""",
    f"""CREATE TEMP TRIGGER IF NOT EXISTS adiuva_access_subscriptions_insert
    AFTER INSERT ON main.subscriptions BEGIN {_NOTE}('t:' || NEW.tenant_id); END""",
    f"""CREATE TEMP TRIGGER IF NOT EXISTS adiuva_access_subscriptions_update
    AFTER UPDATE OF tenant_id, tier ON main.subscriptions
    BEGIN {_NOTE}('t:' || OLD.tenant_id); {_NOTE}('t:' || NEW.tenant_id); END""",
    f"""CREATE TEMP TRIGGER IF NOT EXISTS adiuva_access_subscriptions_delete
    AFTER DELETE ON main.subscriptions BEGIN {_NOTE}('t:' || OLD.tenant_id); END""",
    f"""CREATE TEMP TRIGGER IF NOT EXISTS adiuva_access_tenants_update
    AFTER UPDATE OF id, kind ON main.tenants
    BEGIN {_NOTE}('t:' || OLD.id); {_NOTE}('t:' || NEW.id); END""",
    f"""CREATE TEMP TRIGGER IF NOT EXISTS adiuva_access_tenants_delete
    AFTER DELETE ON main.tenants BEGIN {_NOTE}('t:' || OLD.id); END""",
)


_WATCHED_TABLES = ("users", "memberships", "subscriptions", "tenants")
_TABLES = (
    "SELECT name FROM main.sqlite_master WHERE type = 'table' "
    "AND name IN ('users', 'memberships', 'subscriptions', 'tenants')"
)


def watch_sqlite_writes(engine: AsyncEngine, caches: WeakSet[AccessCache]) -> None:
    """Hook a SQLite engine so that its writes to the tables behind the cache reach it.

    Every `Database` of the process goes through here, so a write of any of them (the
    app's, an `adiuva` command run in-process) reaches every cache on the same file.
    """
    sync_engine = engine.sync_engine

    def install(dbapi_connection: Any, record: Any) -> None:
        changes: list[str] = []
        record.info[_CHANGES] = changes
        record.info[_HELD] = []
        # Called by SQLite in the driver's thread, in the middle of a statement: it only
        # notes the change; the event loop picks it up when the statement returns.
        dbapi_connection.create_function(_FUNCTION, 1, changes.append)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(_TABLES)
            if len(cursor.fetchall()) == len(_WATCHED_TABLES):  # (not on an empty database)
                for statement in _TRIGGERS:
                    cursor.execute(statement)
        finally:
            cursor.close()

    def seen(connection: Any, *_: Any) -> None:
        info = connection.connection.info
        changes = info.get(_CHANGES)
        if changes:
            noted = changes[:]
            changes.clear()
            held = info[_HELD]
            for cache in list(caches):
                held.append((cache, cache.hold(noted), noted))

    def returned(_: Any, record: Any) -> None:
        # Committed or rolled back (or the connection is gone): the rows may be cached again.
        if record is None:
            return
        changes, held = record.info.get(_CHANGES), record.info.get(_HELD)
        if changes:  # noted by a statement that failed: its effects are undone, forget anyway
            late = changes[:]
            changes.clear()
            for cache in list(caches):
                cache.release([], late)
        while held:
            cache, subjects, noted = held.pop()
            cache.release(subjects, noted)

    event.listen(sync_engine, "connect", install)
    event.listen(sync_engine, "after_cursor_execute", seen)
    event.listen(sync_engine.pool, "checkin", returned)
    event.listen(sync_engine.pool, "invalidate", lambda _, record, __: returned(_, record))
