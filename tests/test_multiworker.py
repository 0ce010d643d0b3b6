"""The real server as four gunicorn workers on PostgreSQL and Redis, under load at one identity.

Each request goes over a real socket; the test spreads its connections over
the workers (it reads which worker holds each connection from the process
table) and proves that the limits hold for the whole deployment, not per
worker: daily quotas, the tier rate limit, concurrency slots and credits. Then
it SIGKILLs a worker in the middle of a stream: the dead worker's lease holds
its slot until it lapses, and no count or credit goes astray. Then two more
independent `adiuva serve` processes join the same deployment, as other hosts
would, and share the same limits. Last, four processes hammer admission itself
(the quota service on a database of its own) at small limits.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis
from jose import jwt
from sqlalchemy import select
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.db import Database
from app.models import BillingTier, ConcurrencyLease, QuotaKind
from app.models.quota import ConcurrencyScope
from app.quota.repository import Outcome, QuotaStore
from tests.chat.support import ANNA
from tests.chat.upstream import ServerThread, UpstreamState
from tests.support.admission_worker import (
    HAMMER_ADDRESS,
    HAMMER_PROCESSES,
    HAMMER_TASKS,
    HAMMER_VISITORS,
    HammerResult,
    hammer_admission,
)
from tests.support.admissions import admission_request
from tests.support.builders import Account, register
from tests.support.cluster_db import ClusterDatabase
from tests.support.postgres import PostgresServer, _free_port
from tests.support.servers import (
    DEADLINE,
    ServerProcess,
    base_env,
    finish,
    fresh_database,
    open_stream,
    poll,
    sort_streams,
    start_gunicorn,
    start_instances,
)
from tests.support.upstream_fixtures import upstream, upstream_env, upstream_thread

__all__ = ["upstream", "upstream_thread"]  # fixtures, used by name

WORKERS = 4
LEASE_TTL = 6
FREE_PER_MINUTE = 20
ANON_DAILY = 10
FREE_CONCURRENT = 2
POWER_CONCURRENT = 2
PRO_GRANT = 30  # credits; one upstream call costs 1 (gpt-4o-mini prices, 150 tokens)
RESERVE = 2


# --- the deployment -----------------------------------------------------------------------
def deployment_env(
    database_url: str, limiter_url: str, upstream_server: ServerThread, data_dir: Path
) -> dict[str, str]:
    """The settings every process of the deployment runs with."""
    return base_env(
        database_url,
        data_dir,
        RATE_LIMIT_STORAGE_URI=limiter_url,
        # A Redis failure must show up as errors here, not as silently unlimited traffic.
        RATE_LIMIT_FAIL_OPEN="false",
        TRUSTED_PROXIES="127.0.0.1/32",
        RATE_LIMIT_FREE_PER_MINUTE=FREE_PER_MINUTE,
        RATE_LIMIT_PRO_PER_MINUTE=1000,
        RATE_LIMIT_POWER_PER_MINUTE=1000,
        RATE_LIMIT_DAILY_PER_USER=ANON_DAILY,
        # Forty units of one visitor at once: the daily quota, not concurrency, decides.
        MAX_CONCURRENT_TASK_TREES_PER_USER=64,
        MAX_CONCURRENT_TASK_TREES=200,
        MAX_CONCURRENT_FREE=FREE_CONCURRENT,
        MAX_CONCURRENT_PRO=32,
        MAX_CONCURRENT_POWER=POWER_CONCURRENT,
        CREDIT_MONTHLY_GRANT_PRO=PRO_GRANT,
        CREDIT_MONTHLY_GRANT_POWER=1000,
        CREDIT_RESERVE_ESTIMATE=RESERVE,
        LEASE_TTL_SECONDS=LEASE_TTL,
        **upstream_env(upstream_server),
        # Several workers cannot share embedded Qdrant's files; no test here uses vectors.
        QDRANT_URL=f"http://127.0.0.1:{_free_port()}",
    )


@pytest.fixture(scope="module")
def limiter_url(redis_url: str) -> str:
    # A Redis database of its own, empty: no window left over from other tests.
    url = redis_url.rsplit("/", 1)[0] + "/2"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def cluster_url(postgres_server: PostgresServer) -> Iterator[str]:
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="module")
def cluster(
    cluster_url: str,
    limiter_url: str,
    upstream_thread,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    upstream_server, _ = upstream_thread
    workdir = tmp_path_factory.mktemp("cluster")
    env = deployment_env(cluster_url, limiter_url, upstream_server, workdir / "data")
    server = start_gunicorn(env, workdir, workers=WORKERS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def db(cluster_url: str) -> AsyncIterator[ClusterDatabase]:
    database = ClusterDatabase(cluster_url)
    yield database
    await database.dispose()


@pytest.fixture
async def api(cluster: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster.base_url, timeout=60) as client:
        yield client


async def spread_connections(
    cluster: ServerProcess, stack: AsyncExitStack, wanted: int = 8
) -> list[tuple[httpx.AsyncClient, int]]:
    """Keep-alive connections, each a client of its own, spread over several workers.

    The kernel hands each new connection to whichever worker accepts first, and on
    a busy machine one worker may be starved for a while; connections are opened
    until every worker holds one, or at least three do after 64 tries. Limits shared
    by three separate processes are shared by any number.
    """
    connections: list[tuple[httpx.AsyncClient, int]] = []
    for _ in range(96):
        client = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=cluster.base_url, timeout=60, limits=httpx.Limits(max_connections=1)
            )
        )
        # Health is exempt from the rate limit: opening the connection costs nothing.
        response = await client.get("/api/v1/health")
        port = response.extensions["network_stream"].get_extra_info("client_addr")[1]
        pid = cluster.worker_serving(port)
        assert pid is not None
        connections.append((client, pid))
        workers = len({p for _, p in connections})
        if len(connections) >= wanted and (
            workers == WORKERS or (workers >= 3 and len(connections) >= 64)
        ):
            return connections
    raise AssertionError(f"connections reached too few workers: {connections}")


async def user(
    api: httpx.AsyncClient, db: ClusterDatabase, tier: BillingTier
) -> tuple[Account, uuid.UUID, uuid.UUID]:
    """A new account on `tier`, its user id and tenant id."""
    account = await register(api)
    # Read from the token, not from /auth/me: that call would count against the rate limit.
    claims = jwt.get_unverified_claims(account.access_token)
    user_id, tenant_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["tid"])
    await db.set_tier(tenant_id, tier)
    return account, user_id, tenant_id


# --- limits shared by every worker ---------------------------------------------------------
async def test_daily_quota_admits_exactly_its_limit_across_workers(
    cluster: ServerProcess, api: httpx.AsyncClient, db: ClusterDatabase, upstream
) -> None:
    # A visitor of its own: the fingerprint covers the (forwarded) client address.
    first = await api.get("/api/v1/quota/status", headers={"X-Forwarded-For": "198.51.100.250"})
    visitor = first.cookies["demo_session_id"]
    async with AsyncExitStack() as stack:
        connections = await spread_connections(cluster, stack, wanted=20)

        async def unit(n: int) -> httpx.Response:
            client, _ = connections[n % len(connections)]
            # One visitor (one cookie) behind a trusted proxy, from forty addresses: only
            # the visitor's daily quota can refuse (each address has its own rate window).
            return await client.post(
                "/api/v1/chat",
                json=ANNA,
                headers={
                    "Cookie": f"demo_session_id={visitor}",
                    "X-Forwarded-For": f"198.51.100.{n + 1}",
                },
            )

        responses = await asyncio.gather(*(unit(n) for n in range(40)))
    outcomes = [(r.status_code, r.json().get("error")) for r in responses]
    assert outcomes.count((200, None)) == ANON_DAILY, (outcomes, cluster.log_text()[-4000:])
    assert outcomes.count((429, "daily_quota")) == 40 - ANON_DAILY, outcomes
    subject = f"anon:{visitor}"
    assert await db.counter(subject, QuotaKind.TOTAL) == ANON_DAILY
    # One unit used the LLM; the rest were the demo fallback.
    assert await db.counter(subject, QuotaKind.LLM) == 1
    assert sum(r.headers.get("X-Demo-Mode") == "true" for r in responses) == ANON_DAILY - 1


async def test_tier_rate_limit_is_one_window_for_all_workers(
    cluster: ServerProcess, api: httpx.AsyncClient, db: ClusterDatabase
) -> None:
    account, _, _ = await user(api, db, BillingTier.FREE)
    async with AsyncExitStack() as stack:
        connections = await spread_connections(cluster, stack)

        async def call(n: int) -> tuple[int, httpx.Response]:
            client, pid = connections[n % len(connections)]
            return pid, await client.get("/api/v1/auth/me", headers=account.headers)

        results = await asyncio.gather(*(call(n) for n in range(2 * FREE_PER_MINUTE)))
    passed = [(pid, r) for pid, r in results if r.status_code == 200]
    refused = [r for _, r in results if r.status_code != 200]
    # Per-worker windows would have let up to 4 × 20 through.
    assert len(passed) == FREE_PER_MINUTE
    assert {r.status_code for r in refused} == {429}
    assert {r.json()["error"] for r in refused} == {"rate_limited"}
    assert all(r.headers["RateLimit-Limit"] == str(FREE_PER_MINUTE) for _, r in passed)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert len({pid for pid, _ in passed}) > 1  # admitted by several workers, counted once


async def test_concurrency_slots_never_exceed_the_limit_and_all_come_back(
    cluster: ServerProcess, api: httpx.AsyncClient, db: ClusterDatabase, upstream
) -> None:
    upstream.mode = "hang"
    account, user_id, _ = await user(api, db, BillingTier.FREE)
    scope = f"subject:user:{user_id}"
    samples: list[int] = []
    sampling = True

    async def sample() -> None:
        while sampling:
            samples.append(len(await db.leases(scope)))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        streams = await asyncio.gather(
            *(open_stream(cluster, account.access_token) for _ in range(8))
        )
        first = await sort_streams(streams, refusals=8 - FREE_CONCURRENT)
        assert {frame["error"] for _, frame in first.refused} == {"concurrency_limit"}
        assert {ws.close_code for ws, _ in first.refused} == {4429}
        # Both admitted streams are in flight, each on whichever worker took it.
        await poll(lambda: _received(upstream, FREE_CONCURRENT), "both streams upstream")
        admitted = [ws for ws in streams if ws not in {ws for ws, _ in first.refused}]
        workers = {cluster.worker_serving(ws.local_address[1]) for ws in admitted}
        assert None not in workers
        # A second wave while the slots are held: refused on every worker.
        more = await asyncio.gather(*(open_stream(cluster, account.access_token) for _ in range(4)))
        second = await sort_streams(more, refusals=4)
        assert {frame["error"] for _, frame in second.refused} == {"concurrency_limit"}
        upstream.release.set()
        done = await asyncio.gather(*first.running)
    finally:
        sampling = False
        await sampler
    assert len(done) == FREE_CONCURRENT
    assert all(frame.get("done") for frame in done), done
    assert all(ws.close_code == 1000 for ws in admitted)
    assert max(samples) == FREE_CONCURRENT
    assert all(n <= FREE_CONCURRENT for n in samples)

    async def returned() -> bool:
        return not await db.leases(scope, live_only=False)

    await poll(returned, "every lease to be given back")


async def _received(upstream: UpstreamState, count: int) -> bool:
    return len(upstream.requests) >= count


async def test_credits_never_go_negative_and_the_ledger_sums_to_the_balance(
    cluster: ServerProcess, api: httpx.AsyncClient, db: ClusterDatabase, upstream
) -> None:
    account, _, tenant_id = await user(api, db, BillingTier.PRO)
    async with AsyncExitStack() as stack:
        connections = await spread_connections(cluster, stack, wanted=12)

        async def unit(n: int) -> httpx.Response:
            client, _ = connections[n % len(connections)]
            return await client.post("/api/v1/chat", json=ANNA, headers=account.headers)

        responses = await asyncio.gather(*(unit(n) for n in range(24)))
    statuses = [r.status_code for r in responses]
    # 30 credits for 24 units of three 1-credit calls: the balance stops most of them.
    assert set(statuses) <= {200, 402} and 402 in statuses, statuses
    assert {r.json()["error"] for r in responses if r.status_code == 402} == {
        "insufficient_credits"
    }
    ledger = await db.ledger(tenant_id)
    assert ledger.balance >= 0 and ledger.lowest_balance_after >= 0
    assert ledger.total == ledger.balance
    assert ledger.open_reservations == 0
    # Every call that reached the upstream was billed exactly once, and nothing else was.
    assert PRO_GRANT - ledger.balance == len(upstream.requests)
    assert 3 * statuses.count(200) <= len(upstream.requests) <= PRO_GRANT


async def test_idle_sockets_hold_nothing_and_new_cookies_share_the_address_llm_budget(
    cluster: ServerProcess, api: httpx.AsyncClient, db: ClusterDatabase, upstream
) -> None:
    # Twelve silent sockets, each a fresh visitor at an address of its own, on any worker.
    idle = [
        await connect(
            f"{cluster.ws_url}/api/v1/chat/stream",
            additional_headers={"X-Forwarded-For": f"198.51.100.{n + 1}"},
            open_timeout=60,
        )
        for n in range(12)
    ]
    try:
        assert await db.leases("system") == []  # open, silent: no system slot held
        account, _, _ = await user(api, db, BillingTier.PRO)
        answered = await api.post("/api/v1/chat", json=ANNA, headers=account.headers)
        assert answered.status_code == 200, answered.text
        assert answered.json()["demo"] is False

        # One address, a new cookie on every request, spread over the workers: the
        # address's LLM budget (3 by default) holds, the rest is the demo fallback.
        async with AsyncExitStack() as stack:
            connections = await spread_connections(cluster, stack, wanted=8)
            replies = await asyncio.gather(
                *(
                    connections[n % len(connections)][0].post(
                        "/api/v1/chat",
                        json=ANNA,
                        headers={
                            "Cookie": f"demo_session_id={uuid.uuid4().hex}",
                            "X-Forwarded-For": "192.0.2.77",
                        },
                    )
                    for n in range(10)
                )
            )
        assert [r.status_code for r in replies] == [200] * 10
        assert sorted(r.json()["demo"] for r in replies) == [False] * 3 + [True] * 7
        assert await db.counter("ip:192.0.2.77", QuotaKind.LLM) == 3
    finally:
        for ws in idle:
            await ws.close()


# --- a worker dies mid-stream --------------------------------------------------------------
async def test_a_killed_worker_loses_nothing_and_its_slot_frees_when_the_lease_lapses(
    cluster: ServerProcess, api: httpx.AsyncClient, db: ClusterDatabase, upstream
) -> None:
    upstream.mode = "hang"
    account, user_id, tenant_id = await user(api, db, BillingTier.POWER)
    scope = f"subject:user:{user_id}"
    doomed = await open_stream(cluster, account.access_token)
    # The stream's first model call is in flight, so its credits are reserved.
    await poll(lambda: _received(upstream, 1), "the stream to reach the upstream")
    (lease,) = await db.leases(scope)
    assert (await db.ledger(tenant_id)).open_reservations == 1
    victim = cluster.worker_serving(doomed.local_address[1])
    assert victim is not None

    os.kill(victim, signal.SIGKILL)
    with pytest.raises(ConnectionClosed):
        await finish(doomed)
    assert doomed.close_code == 1006  # no close frame: the process is gone

    # The dead worker never gave its slot back: it stays taken until the lease lapses.
    assert [row.lease_id for row in await db.leases(scope)] == [lease.lease_id]
    survivor = await open_stream(cluster, account.access_token)
    await poll(lambda: _received(upstream, 2), "the survivor to reach the upstream")
    refused = await finish(await open_stream(cluster, account.access_token))
    assert refused["error"] == "concurrency_limit"
    # The other workers (and the one gunicorn starts in the victim's place) keep serving.
    assert (await api.get("/api/v1/quota/status")).status_code == 200

    async def replaced() -> bool:
        pids = cluster.worker_pids()
        return len(pids) == WORKERS and victim not in pids

    await poll(replaced, "gunicorn to replace the dead worker")

    async def lapsed() -> bool:
        return lease.lease_id not in {row.lease_id for row in await db.leases(scope)}

    await poll(lapsed, "the dead worker's lease to lapse", deadline=LEASE_TTL + DEADLINE)
    successor = await open_stream(cluster, account.access_token)
    upstream.release.set()
    done = await asyncio.gather(finish(survivor), finish(successor))
    assert all(frame.get("done") for frame in done), done

    async def returned() -> bool:
        return not await db.leases(scope, live_only=False)

    await poll(returned, "every slot to be free again")
    # Three units were admitted and counted (the refused one was not), the dead one included.
    assert await db.counter(f"user:{user_id}", QuotaKind.TOTAL) == 3
    # The dead stream's reservation stays charged (never under-billed); the books balance.
    ledger = await db.ledger(tenant_id)
    assert ledger.open_reservations == 1
    assert ledger.total == ledger.balance and ledger.lowest_balance_after >= 0


# --- independent instances (hosts) ---------------------------------------------------------
@pytest.fixture(scope="module")
def instances(
    cluster_url: str,
    limiter_url: str,
    upstream_thread,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[ServerProcess]]:
    """Two more `adiuva serve` processes of the same deployment, as if on other hosts."""
    upstream_server, _ = upstream_thread
    specs = []
    for name in ("host-a", "host-b"):
        workdir = tmp_path_factory.mktemp(name)
        specs.append(
            (deployment_env(cluster_url, limiter_url, upstream_server, workdir / "data"), workdir)
        )
    servers = start_instances(specs)
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


async def test_independent_instances_share_every_limit(
    instances: list[ServerProcess], db: ClusterDatabase, upstream
) -> None:
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=s.base_url, timeout=60))
            for s in instances
        ]

        def on(n: int) -> httpx.AsyncClient:
            return clients[n % len(clients)]

        # The per-minute window: half of it spent on each instance, then none left on either.
        account, _, _ = await user(clients[0], db, BillingTier.FREE)

        async def burst() -> list[int]:
            calls = await asyncio.gather(
                *(
                    on(n).get("/api/v1/auth/me", headers=account.headers)
                    for n in range(FREE_PER_MINUTE)
                )
            )
            return [r.status_code for r in calls]

        assert await burst() == [200] * FREE_PER_MINUTE
        # Per-instance windows would each have room for ten more.
        assert await burst() == [429] * FREE_PER_MINUTE

        # The daily quota of one visitor.
        # A visitor of its own: the fingerprint covers the (forwarded) client address.
        first = await clients[0].get(
            "/api/v1/quota/status", headers={"X-Forwarded-For": "203.0.113.250"}
        )
        visitor = first.cookies["demo_session_id"]
        units = await asyncio.gather(
            *(
                on(n).post(
                    "/api/v1/chat",
                    json=ANNA,
                    headers={
                        "Cookie": f"demo_session_id={visitor}",
                        "X-Forwarded-For": f"203.0.113.{n + 1}",
                    },
                )
                for n in range(40)
            )
        )
        assert [r.status_code for r in units].count(200) == ANON_DAILY
        assert await db.counter(f"anon:{visitor}", QuotaKind.TOTAL) == ANON_DAILY

        # Concurrency slots, for a user whose per-minute window is untouched.
        account, user_id, _ = await user(clients[1], db, BillingTier.FREE)

    upstream.mode = "hang"
    streams = await asyncio.gather(
        *(open_stream(instances[n % 2], account.access_token) for n in range(6))
    )
    sorted_streams = await sort_streams(streams, refusals=6 - FREE_CONCURRENT)
    assert {frame["error"] for _, frame in sorted_streams.refused} == {"concurrency_limit"}
    scope = f"subject:user:{user_id}"
    assert len(await db.leases(scope)) == FREE_CONCURRENT
    upstream.release.set()
    done = await asyncio.gather(*sorted_streams.running)
    assert len(done) == FREE_CONCURRENT
    assert all(frame.get("done") for frame in done), done

    async def returned() -> bool:
        return not await db.leases(scope, live_only=False)

    await poll(returned, "every lease to be given back")


# --- admission hammered by several processes at small limits ---------------------------------
def most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in events:  # at equal times an end (-1) sorts before a start
        running += change
        peak = max(peak, running)
    return peak


@pytest.fixture
def hammer_url(postgres_server: PostgresServer) -> Iterator[str]:
    with fresh_database(postgres_server) as url:
        yield url


async def test_admission_hammered_by_several_processes_never_over_admits(
    hammer_url: str, tmp_path: Path
) -> None:
    """Four processes, eight units in flight each, at a limit of 2 per visitor and 5 for the
    system, with lapsed leases of crashed workers in the way: never more admitted at
    once than a limit, each visitor's daily quota exact, the address's LLM budget exact,
    and every slot back at the end."""
    database, cluster_db = Database(hammer_url), ClusterDatabase(hammer_url)
    try:
        await hammer_and_check(database, cluster_db, hammer_url, tmp_path)
    finally:
        await cluster_db.dispose()
        await database.dispose()


async def hammer_and_check(
    database: Database, cluster_db: ClusterDatabase, url: str, tmp_path: Path
) -> None:
    context = multiprocessing.get_context("spawn")
    store = QuotaStore.for_database(database)
    # Crashed workers' leases, lapsed: three system slots, and one of a visitor's.
    lapsed = [
        admission_request(f"subject:crashed-{n}", now=datetime.now(UTC), ttl=-1) for n in range(3)
    ] + [admission_request(f"subject:anon:{HAMMER_VISITORS[0]}", now=datetime.now(UTC), ttl=-1)]
    for request in lapsed:
        assert await store.admit(request) is Outcome.OK
    readies = [context.Event() for _ in range(HAMMER_PROCESSES)]
    start, results = context.Event(), context.Queue()
    workers = [
        context.Process(
            target=hammer_admission,
            args=(url, str(tmp_path / f"w{n}"), readies[n], start, results),
        )
        for n in range(HAMMER_PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        for ready in readies:
            assert await asyncio.to_thread(ready.wait, 120), "a worker did not start"
        start.set()
        outcomes: list[HammerResult] = [
            await asyncio.to_thread(results.get, True, 300) for _ in workers
        ]
    finally:
        for worker in workers:
            await asyncio.to_thread(worker.join, 30)
            if worker.is_alive():
                worker.kill()
    held = [entry for outcome in outcomes for entry in outcome.held]
    refusals: Counter[str] = Counter()
    for outcome in outcomes:
        refusals.update(outcome.refusals)

    # Never more at once than a limit: per visitor, and for the whole system.
    assert most_at_once([(a, b) for _, a, b in held]) <= 5
    for visitor in HAMMER_VISITORS:
        assert most_at_once([(a, b) for v, a, b in held if v == visitor]) <= 2
    # Both limits refused units (the test was a real race), each as its own.
    assert refusals["concurrency_limit"] > 0 and refusals["at_capacity"] > 0
    assert refusals["daily_quota"] == HAMMER_PROCESSES * HAMMER_TASKS

    # Daily quotas exact: 40 units per visitor, 10 LLM answers for the address.
    for visitor in HAMMER_VISITORS:
        assert sum(v == visitor for v, _, _ in held) == 40
        assert await cluster_db.counter(f"anon:{visitor}", QuotaKind.TOTAL) == 40
    assert sum(outcome.llm_units for outcome in outcomes) == 10
    assert await cluster_db.counter(f"ip:{HAMMER_ADDRESS}", QuotaKind.LLM) == 10
    visitor_llm = [
        await cluster_db.counter(f"anon:{visitor}", QuotaKind.LLM) for visitor in HAMMER_VISITORS
    ]
    assert sum(visitor_llm) == 10 and max(visitor_llm) <= 5

    # Every slot is back; what is left is the crashed workers' own scopes, which nobody
    # filled, until maintenance deletes them.
    async with cluster_db.sessionmaker() as session:
        remaining = set(await session.scalars(select(ConcurrencyLease.scope)))
    assert remaining == {f"subject:crashed-{n}" for n in range(3)}
    assert await store.delete_lapsed_leases(datetime.now(UTC)) == 3
    assert await cluster_db.lease_rows() == 0
    async with cluster_db.sessionmaker() as session:
        assert (await session.execute(select(ConcurrencyScope.scope))).all() == []
