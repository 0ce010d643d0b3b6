"""Each of four gunicorn workers caches its callers; a change reaches all of them at once.

The deployment of tests/test_multiworker.py (PostgreSQL, Redis, four workers).
Every worker's cache is filled first, then a row changes — a tier, a
membership, a user's active flag, a logout served by one worker — and the very
next request on every other worker sees it. A worker whose listening connection
is lost clears its cache and reads every row until the listener is back. And
when the database drops every connection of the app, requests go on.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.auth.invalidation import LISTENER_APPLICATION_NAME
from app.models import BillingTier, Membership, MembershipRole, Subscription, User
from tests.support.builders import PASSWORD, Account
from tests.support.cluster_db import ClusterDatabase
from tests.support.servers import ServerProcess, poll
from tests.support.upstream_fixtures import upstream_thread
from tests.test_multiworker import (
    api,
    cluster,
    cluster_url,
    db,
    limiter_url,
    spread_connections,
    user,
)

# Fixtures, used by name.
__all__ = ["api", "cluster", "cluster_url", "db", "limiter_url", "upstream_thread"]

ME = "/api/v1/auth/me"
Connections = list[tuple[httpx.AsyncClient, int]]


@pytest.fixture(scope="module")
async def admin(cluster_url: str) -> AsyncIterator[AsyncEngine]:
    """The test's own connection to the deployment's database, for what an operator does."""
    engine = create_async_engine(
        cluster_url, connect_args={"server_settings": {"application_name": "cluster-test"}}
    )
    yield engine
    await engine.dispose()


async def on_every_connection(connections: Connections, account: Account) -> list[httpx.Response]:
    # A refused token is limited as an anonymous caller, per address: one address each.
    return [
        await client.get(ME, headers={**account.headers, "X-Forwarded-For": fresh_address()})
        for client, _ in connections
    ]


def fresh_address() -> str:
    octets = uuid.uuid4().bytes
    return f"198.18.{octets[0]}.{octets[1]}"


async def warmed(connections: Connections, account: Account, tier: str) -> None:
    """Every worker has served (and cached) the caller."""
    for response in await on_every_connection(connections, account):
        assert response.status_code == 200, response.text
        assert response.json()["tier"] == tier


async def listener_backend(admin: AsyncEngine, worker: int) -> int | None:
    async with admin.connect() as connection:
        return await connection.scalar(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
            {"name": f"{LISTENER_APPLICATION_NAME}:{worker}"},
        )


async def silently_set_tier(admin: AsyncEngine, tenant_id: uuid.UUID, tier: BillingTier) -> None:
    """Change a tier with the triggers off (as a replica applies a change): no notification."""
    async with admin.begin() as connection:
        await connection.execute(text("SET LOCAL session_replication_role = replica"))
        await connection.execute(
            update(Subscription).where(Subscription.tenant_id == tenant_id).values(tier=tier)
        )


async def test_tier_membership_and_active_flag_changes_reach_every_worker_at_once(
    cluster: ServerProcess, api: httpx.AsyncClient, db: ClusterDatabase
) -> None:
    async with AsyncExitStack() as stack:
        connections = await spread_connections(cluster, stack)
        member, _, tenant_id = await user(api, db, BillingTier.POWER)
        await warmed(connections, member, "power")

        await db.set_tier(tenant_id, BillingTier.PRO)  # as the Stripe webhook does
        assert [r.json()["tier"] for r in await on_every_connection(connections, member)] == [
            "pro"
        ] * len(connections)

        async with db.sessionmaker.begin() as session:
            await session.execute(delete(Membership).where(Membership.tenant_id == tenant_id))
        removed = await on_every_connection(connections, member)
        assert {r.status_code for r in removed} == {401}, [r.text for r in removed]

        inactive, user_id, _ = await user(api, db, BillingTier.POWER)
        await warmed(connections, inactive, "power")
        async with db.sessionmaker.begin() as session:
            await session.execute(update(User).where(User.id == user_id).values(is_active=False))
        refused = await on_every_connection(connections, inactive)
        assert {r.status_code for r in refused} == {401}, [r.text for r in refused]


async def test_a_member_removed_through_the_api_is_refused_by_every_worker(
    cluster: ServerProcess, api: httpx.AsyncClient, db: ClusterDatabase
) -> None:
    async with AsyncExitStack() as stack:
        connections = await spread_connections(cluster, stack)
        owner, _, _ = await user(api, db, BillingTier.FREE)
        member, member_id, _ = await user(api, db, BillingTier.FREE)
        created = await api.post("/api/v1/tenants", json={"name": "Crew"}, headers=owner.headers)
        assert created.status_code == 201, created.text
        team = uuid.UUID(created.json()["id"])
        await db.set_tier(team, BillingTier.TEAM)
        # As an accepted invitation does (the mailed flow is tests/tenants' business).
        async with db.sessionmaker.begin() as session:
            session.add(Membership(tenant_id=team, user_id=member_id, role=MembershipRole.MEMBER))
        headers = {**member.headers, "X-Tenant-Id": str(team)}
        for response in [
            await client.get(ME, headers={**headers, "X-Forwarded-For": fresh_address()})
            for client, _ in connections
        ]:
            assert response.status_code == 200, response.text  # every worker has cached it

        client, worker = connections[0]
        removed = await client.delete(
            f"/api/v1/tenants/{team}/members/{member_id}", headers=owner.headers
        )
        assert removed.status_code == 204, removed.text
        others = [(c, pid) for c, pid in connections if pid != worker]
        assert others
        after = [
            await c.get(ME, headers={**headers, "X-Forwarded-For": fresh_address()})
            for c, _ in others
        ]
        assert {r.status_code for r in after} == {403}, [r.text for r in after]
        assert {r.json()["error"] for r in after} == {"not_a_member"}


async def test_a_logout_on_one_worker_ends_the_token_on_every_other(
    cluster: ServerProcess, api: httpx.AsyncClient, db: ClusterDatabase
) -> None:
    async with AsyncExitStack() as stack:
        connections = await spread_connections(cluster, stack)
        account, _, _ = await user(api, db, BillingTier.POWER)
        await warmed(connections, account, "power")
        client, worker = connections[0]
        logout = await client.post(
            "/api/v1/auth/logout", json={"refresh_token": account.refresh_token}
        )
        assert logout.status_code == 204
        others = [(c, pid) for c, pid in connections if pid != worker]
        assert others
        after = await on_every_connection(others, account)
        assert {r.status_code for r in after} == {401}, [r.text for r in after]
        assert {r.json()["error"] for r in after} == {"invalid_token"}


async def test_a_worker_whose_listener_is_lost_clears_its_cache_and_reads_every_row(
    cluster: ServerProcess, api: httpx.AsyncClient, db: ClusterDatabase, admin: AsyncEngine
) -> None:
    async with AsyncExitStack() as stack:
        connections = await spread_connections(cluster, stack)
        client, worker = connections[0]
        account, _, tenant_id = await user(api, db, BillingTier.POWER)

        async def tier() -> str:
            response = await client.get(ME, headers=account.headers)
            assert response.status_code == 200, response.text
            return response.json()["tier"]

        async def listening() -> bool:
            return await listener_backend(admin, worker) is not None

        await poll(listening, "the worker's listener")
        assert await tier() == "power"
        # The worker really answers from its cache: a change nobody is told of is not seen.
        await silently_set_tier(admin, tenant_id, BillingTier.PRO)
        assert await tier() == "power"

        # Its listener is lost: the cache goes, so the next request reads the row.
        first = await listener_backend(admin, worker)
        async with admin.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})

        async def replaced() -> bool:
            return await listener_backend(admin, worker) not in (None, first)

        await poll(replaced, "the worker to listen again")
        assert await tier() == "pro"

        # While it is down, nothing is cached: two changes nobody is told of are both
        # seen. (If the listener came back in between, the round proves nothing: again.)
        for _ in range(5):
            current = await listener_backend(admin, worker)
            async with admin.connect() as connection:
                await connection.execute(
                    text("SELECT pg_terminate_backend(:pid)"), {"pid": current}
                )

            async def gone(current: int | None = current) -> bool:
                return await listener_backend(admin, worker) != current

            await poll(gone, "the listener's backend to end")
            if await listener_backend(admin, worker) is not None:
                continue
            await silently_set_tier(admin, tenant_id, BillingTier.POWER)
            assert await tier() == "power"
            await silently_set_tier(admin, tenant_id, BillingTier.PRO)
            seen = await tier()
            if await listener_backend(admin, worker) is None:
                assert seen == "pro"
                break
        else:
            pytest.fail("the listener always came back before a round could run")
        await poll(listening, "the worker to listen again")


async def test_dropped_database_connections_cost_at_most_one_request(
    cluster: ServerProcess, api: httpx.AsyncClient, db: ClusterDatabase, admin: AsyncEngine
) -> None:
    async with AsyncExitStack() as stack:
        connections = await spread_connections(cluster, stack)
        accounts = []
        for client, _ in connections:  # every worker's pool holds live connections
            response = await client.post(
                "/api/v1/auth/register",
                json={"email": f"pool-{uuid.uuid4().hex[:12]}@example.com", "password": PASSWORD},
            )
            assert response.status_code == 201, response.text
            body = response.json()
            accounts.append({"Authorization": f"Bearer {body['access_token']}"})
        await db.engine.dispose()  # the test's own pooled connections would go too

        # As a database restart does: every connection of the app ends, listeners too.
        async with admin.connect() as connection:
            ended = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name <> 'cluster-test'"
                )
            )
        assert ended >= len({pid for _, pid in connections})

        statuses = []
        for (client, _), headers in zip(connections, accounts, strict=True):
            for method, path, kwargs in (
                ("GET", ME, {"headers": headers}),
                ("GET", "/api/v1/quota/status", {"headers": headers}),
                (
                    "POST",
                    "/api/v1/auth/register",
                    {
                        "json": {
                            "email": f"again-{uuid.uuid4().hex[:12]}@example.com",
                            "password": PASSWORD,
                        }
                    },
                ),
            ):
                response = await client.request(method, path, **kwargs)
                statuses.append(response.status_code)
                if response.status_code >= 500:
                    assert response.status_code == 503, response.text
                    assert response.json()["error"] in (
                        "database_unavailable",
                        "identity_unavailable",
                        "quota_unavailable",
                    )
    failed = [s for s in statuses if s >= 400]
    assert len(failed) <= 1, statuses
