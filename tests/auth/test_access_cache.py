"""The per-worker cache of callers: no query on a cached caller, never a stale answer.

A signed-in request whose caller is cached reads no row. A write is seen by the
next request however it is made (ORM, plain `update()`, raw SQL, another
`Database` of the process), and while it is not yet over (written, committed,
connection not yet back in the pool) no old row is served or cached. On
PostgreSQL the cache is live only while its listening connection is up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from app.auth.cache import AccessCache, subjects_of
from app.auth.invalidation import LISTENER_APPLICATION_NAME
from app.auth.security import InvalidToken, TokenCodec
from app.models import BillingTier, Subscription
from tests.support.builders import Account, register
from tests.support.servers import poll

pytestmark = pytest.mark.usefixtures("backend")

ME = "/api/v1/auth/me"


@contextmanager
def statements(app: FastAPI) -> Iterator[list[str]]:
    """Every statement the app's engine sends while the block runs."""
    sent: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:
        sent.append(statement)

    engine = app.state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


async def live_cache(app: FastAPI) -> AccessCache:
    cache = app.state.access_lookup
    assert isinstance(cache, AccessCache)

    async def is_live() -> bool:
        return cache.live

    await poll(is_live, "the access cache to go live")
    return cache


async def me(client: httpx.AsyncClient, account: Account) -> dict:
    response = await client.get(ME, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_cached_caller_costs_no_query(client, app):
    await live_cache(app)
    account = await register(client)
    await me(client, account)
    with statements(app) as sent:
        for _ in range(3):
            assert (await me(client, account))["tier"] == "free"
    assert sent == []


async def test_every_kind_of_write_is_seen_by_the_next_request(client, app, database_url):
    await live_cache(app)
    account = await register(client)
    tenant_id = uuid.UUID((await me(client, account))["tenant_id"])
    tier_of = Subscription.__table__.c

    # A plain Core update() through the app's engine.
    async with app.state.db.engine.begin() as connection:
        await connection.execute(
            update(Subscription).where(tier_of.tenant_id == tenant_id).values(tier="pro")
        )
    assert (await me(client, account))["tier"] == "pro"
    # Raw SQL.
    async with app.state.db.engine.begin() as connection:
        await connection.execute(
            text("UPDATE subscriptions SET tier = 'power' WHERE tenant_id = :tenant"),
            {"tenant": tenant_id.hex if app.state.db.is_sqlite else tenant_id},
        )
    assert (await me(client, account))["tier"] == "power"


async def test_a_write_holds_its_rows_until_its_connection_is_back(client, app):
    await live_cache(app)
    account = await register(client)
    tenant_id = uuid.UUID((await me(client, account))["tenant_id"])
    await me(client, account)  # cached
    async with app.state.db.engine.connect() as connection:
        await connection.execute(
            update(Subscription)
            .where(Subscription.tenant_id == tenant_id)
            .values(tier=BillingTier.PRO)
        )
        # Not committed: the old row is still the truth, but it is not cached either...
        assert (await me(client, account))["tier"] == "free"
        await connection.commit()
        # ...so once committed it is seen, before the connection is even back in the pool.
        assert (await me(client, account))["tier"] == "pro"
    assert (await me(client, account))["tier"] == "pro"


async def test_a_change_notified_by_another_process_reaches_the_cache(
    client, app, database_url, backend
):
    if backend != "postgresql":
        pytest.skip("on SQLite the app is one process")
    await live_cache(app)
    account = await register(client)
    tenant_id = (await me(client, account))["tenant_id"]
    # Another client of the database: only its notification can tell this app.
    outsider = create_async_engine(database_url)
    try:
        async with outsider.begin() as connection:
            await connection.execute(
                text("UPDATE subscriptions SET tier = 'power' WHERE tenant_id = :tenant"),
                {"tenant": uuid.UUID(tenant_id)},
            )

        async def seen() -> bool:
            return (await me(client, account))["tier"] == "power"

        await poll(seen, "the notification to reach the cache")
    finally:
        await outsider.dispose()


async def test_the_cache_is_dark_while_its_listener_is_down(client, app, database_url, backend):
    if backend != "postgresql":
        pytest.skip("SQLite has no listener")
    cache = await live_cache(app)
    account = await register(client)
    tenant_id = uuid.UUID((await me(client, account))["tenant_id"])
    await me(client, account)
    outsider = create_async_engine(database_url)
    try:
        async with outsider.begin() as connection:
            killed = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name LIKE :name"
                ),
                {"name": f"{LISTENER_APPLICATION_NAME}:%"},
            )
        assert killed == 1

        async def dark() -> bool:
            return not cache.live

        await poll(dark, "the cache to notice its listener is gone")
        assert len(cache) == 0
        # A change that notifies no one (triggers off, as on a replica) is still seen:
        # while the listener is down, every lookup reads the row.
        async with outsider.begin() as connection:
            await connection.execute(text("SET LOCAL session_replication_role = replica"))
            await connection.execute(
                update(Subscription)
                .where(Subscription.tenant_id == tenant_id)
                .values(tier=BillingTier.POWER)
            )
        if not cache.live:
            assert (await me(client, account))["tier"] == "power"
            assert len(cache) == 0

        async def back() -> bool:
            return cache.live

        await poll(back, "the listener to come back")
        assert (await me(client, account))["tier"] == "power"
    finally:
        await outsider.dispose()


def test_change_payloads_name_users_tenants_and_memberships():
    user, tenant = uuid.uuid4(), uuid.uuid4()
    assert subjects_of(f"u:{user}") == (user,)
    assert subjects_of(f"t:{tenant.hex}") == (tenant,)  # as SQLite stores it
    assert subjects_of(f"m:{user}:{tenant}") == (user, tenant)
    for bad in ("", "u:", "x:" + str(user), f"m:{user}", f"u:{user}:{tenant}", "u:nope"):
        with pytest.raises(ValueError):
            subjects_of(bad)


def test_a_verified_token_is_never_served_past_its_exp(settings):
    now = [1_000_000.0]
    codec = TokenCodec(settings, clock=lambda: now[0])
    # Signed for the real clock (python-jose checks it too), five minutes ahead.
    issued = codec.encode("access", str(uuid.uuid4()), timedelta(minutes=5), tid="t", ver=0)
    exp = int(issued.expires_at.timestamp())
    now[0] = exp - 1
    claims = codec.decode(issued.token, "access")
    claims["sub"] = "changed by the caller"
    assert codec.decode(issued.token, "access")["sub"] != "changed by the caller"
    with pytest.raises(InvalidToken):
        codec.decode(issued.token, "refresh")  # the type is checked on every call
    now[0] = exp
    with pytest.raises(InvalidToken):
        codec.decode(issued.token, "access")
    # A forged token never enters the cache, however often it is sent.
    forged = issued.token[:-2] + ("AA" if not issued.token.endswith("AA") else "BB")
    now[0] = exp - 1
    for _ in range(2):
        with pytest.raises(InvalidToken):
            codec.decode(forged, "access")
