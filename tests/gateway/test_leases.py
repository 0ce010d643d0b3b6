"""The quota store below the gate: slots, lapsed leases, renewals, counters, races, cost.

On both databases: PostgreSQL runs `quota_admit()` / `quota_release()` (migration
005), SQLite the same steps in one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import event, select

from app.models import QuotaCounter, QuotaKind
from app.models.base import utcnow
from app.models.quota import ConcurrencyLease, ConcurrencyScope
from app.quota.repository import AdmissionRequest, Outcome, QuotaStore
from app.quota.service import SYSTEM_SCOPE
from app.work import Identity, IdentityKind
from tests.support.admissions import admission_request

pytestmark = pytest.mark.usefixtures("backend")


def store_of(app: FastAPI) -> QuotaStore:
    return app.state.quotas.store


async def in_use(app: FastAPI, scope: str) -> int:
    async with app.state.db.sessionmaker() as session:
        value = await session.scalar(
            select(ConcurrencyScope.in_use).where(ConcurrencyScope.scope == scope)
        )
    return int(value or 0)


async def lease_rows(app: FastAPI) -> set[tuple[str, str]]:
    async with app.state.db.sessionmaker() as session:
        rows = await session.execute(select(ConcurrencyLease.lease_id, ConcurrencyLease.scope))
    return {(lease_id, scope) for lease_id, scope in rows}


async def counters(app: FastAPI) -> dict[tuple[str, str], int]:
    async with app.state.db.sessionmaker() as session:
        rows = await session.execute(
            select(QuotaCounter.subject, QuotaCounter.kind, QuotaCounter.used)
        )
    # A count taken and given back in one admission may leave its row at zero.
    return {(subject, kind.value): used for subject, kind, used in rows if used}


async def test_a_scope_holds_its_limit_and_a_release_frees_one_slot(app):
    store = store_of(app)
    taken = [admission_request("subject:a", limit=50) for _ in range(50)]
    assert [await store.admit(r) for r in taken] == [Outcome.OK] * 50
    assert await store.admit(admission_request("subject:a", limit=50)) is Outcome.CONCURRENCY_LIMIT
    assert await in_use(app, "subject:a") == 50
    assert await in_use(app, "system") == 50

    await store.release(taken[17].lease_id, taken[17].day, [])
    assert await in_use(app, "subject:a") == 49
    assert (taken[17].lease_id, "subject:a") not in await lease_rows(app)
    assert await store.admit(admission_request("subject:a", limit=50)) is Outcome.OK
    # Releasing twice frees nothing more.
    await store.release(taken[17].lease_id, taken[17].day, [])
    assert await in_use(app, "subject:a") == 50


async def test_a_full_system_refuses_and_the_refusal_takes_nothing(app):
    store = store_of(app)
    for n in range(3):
        assert await store.admit(admission_request(f"subject:{n}", system_limit=3)) is Outcome.OK
    refused = admission_request("subject:late", system_limit=3, daily_per_ip=10)
    assert await store.admit(refused) is Outcome.AT_CAPACITY
    assert await in_use(app, "subject:late") == 0
    assert await in_use(app, "system") == 3
    assert not {row for row in await lease_rows(app) if row[0] == refused.lease_id}
    assert ("subject:late", "total") not in await counters(app)


async def test_a_lapsed_lease_is_taken_over_and_its_holder_cannot_touch_the_new_one(app):
    store = store_of(app)
    now = utcnow()
    crashed = admission_request("subject:b", limit=1, now=now, ttl=1)
    assert await store.admit(crashed) is Outcome.OK
    assert await store.admit(admission_request("subject:b", limit=1, now=now)) is (
        Outcome.CONCURRENCY_LIMIT
    )
    assert await store.admit(admission_request("subject:c", limit=1, now=now)) is Outcome.OK

    later = now + timedelta(seconds=2)
    successor = admission_request("subject:b", limit=1, now=later)
    assert await store.admit(successor) is Outcome.OK
    assert await in_use(app, "subject:b") == 1
    # The crashed holder comes back: its renewal and its release find nothing of its own.
    assert await store.renew(crashed.lease_id, later, later + timedelta(seconds=60)) is False
    await store.release(crashed.lease_id, crashed.day, [])
    assert await in_use(app, "subject:b") == 1
    assert (successor.lease_id, "subject:b") in await lease_rows(app)
    assert await store.admit(admission_request("subject:b", limit=1, now=later)) is (
        Outcome.CONCURRENCY_LIMIT
    )


async def test_a_renewed_lease_stays_taken(app):
    store = store_of(app)
    now = utcnow()
    running = admission_request("subject:d", limit=1, now=now, ttl=1)
    assert await store.admit(running) is Outcome.OK
    assert await store.renew(running.lease_id, now, now + timedelta(seconds=120)) is True
    later = now + timedelta(seconds=60)
    assert await store.admit(admission_request("subject:d", limit=1, now=later)) is (
        Outcome.CONCURRENCY_LIMIT
    )
    usage = await store.usage("subject:d", "ip:x", "subject:d", "system", now.date(), later)
    assert (usage.in_use, usage.system_in_use) == (1, 1)


async def test_concurrent_admissions_never_exceed_the_limit(app):
    store = store_of(app)
    now = utcnow()
    outcomes = await asyncio.gather(
        *(store.admit(admission_request("subject:e", limit=7, now=now)) for _ in range(25))
    )
    assert outcomes.count(Outcome.OK) == 7
    assert outcomes.count(Outcome.CONCURRENCY_LIMIT) == 18
    assert await in_use(app, "subject:e") == 7
    assert len([row for row in await lease_rows(app) if row[1] == "subject:e"]) == 7


async def test_daily_refusals_give_back_what_the_unit_had_taken(app):
    store = store_of(app)

    def unit(**limits: int) -> AdmissionRequest:
        return admission_request("subject:f", ip="192.0.2.9", **limits)

    assert await store.admit(unit(daily_total=1, daily_per_ip=2)) is Outcome.OK
    assert await store.admit(unit(daily_total=1, daily_per_ip=2)) is Outcome.DAILY_QUOTA
    assert await store.admit(admission_request("subject:g", ip="192.0.2.9", daily_per_ip=2)) is (
        Outcome.OK
    )
    refused = admission_request("subject:h", ip="192.0.2.9", daily_per_ip=2)
    assert await store.admit(refused) is Outcome.IP_QUOTA
    assert await counters(app) == {
        ("subject:f", "total"): 1,
        ("subject:g", "total"): 1,
        ("ip:192.0.2.9", "total"): 2,
    }
    assert await in_use(app, "subject:f") == 1 and await in_use(app, "subject:h") == 0
    assert await in_use(app, "system") == 2


async def test_the_llm_counts_fall_back_without_refusing(app):
    store = store_of(app)

    def unit(subject: str) -> AdmissionRequest:
        return admission_request(
            subject, ip="192.0.2.7", daily_per_ip=50, daily_llm=1, daily_llm_per_ip=2
        )

    assert await store.admit(unit("subject:i")) is Outcome.OK
    # The visitor's own LLM unit is spent: the address's LLM count it took goes back.
    assert await store.admit(unit("subject:i")) is Outcome.LLM_QUOTA_EXHAUSTED
    assert await store.admit(unit("subject:j")) is Outcome.OK
    # The address's LLM budget is spent: nothing more of it is taken.
    assert await store.admit(unit("subject:k")) is Outcome.IP_LLM_QUOTA_EXHAUSTED
    assert await counters(app) == {
        ("subject:i", "total"): 2,
        ("subject:i", "llm"): 1,
        ("subject:j", "total"): 1,
        ("subject:j", "llm"): 1,
        ("subject:k", "total"): 1,
        ("ip:192.0.2.7", "total"): 4,
        ("ip:192.0.2.7", "llm"): 2,
    }


async def test_release_gives_back_the_counts_it_is_given_and_never_below_zero(app):
    store = store_of(app)
    unit = admission_request("subject:l", ip="192.0.2.5", daily_per_ip=5, daily_llm=5)
    assert await store.admit(unit) is Outcome.OK
    counts = [("subject:l", QuotaKind.TOTAL), ("ip:192.0.2.5", QuotaKind.TOTAL)]
    await store.release(unit.lease_id, unit.day, counts)
    await store.release(unit.lease_id, unit.day, counts)  # a second time: already at zero
    assert await counters(app) == {("subject:l", "llm"): 1}
    assert await in_use(app, "subject:l") == 0 and await lease_rows(app) == set()


@contextmanager
def statements_sent(app: FastAPI) -> Iterator[list[str]]:
    """Every statement sent to the database: SQLAlchemy's, and asyncpg's own (PostgreSQL)."""
    sent: list[str] = []
    engine = app.state.db.engine.sync_engine
    drivers: list = []

    def on_cursor(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append(statement)

    def on_query(record) -> None:
        sent.append(record.query)

    def on_checkout(dbapi_connection, record, proxy) -> None:
        if hasattr(record.driver_connection, "add_query_logger"):  # asyncpg
            record.driver_connection.add_query_logger(on_query)
            drivers.append(record.driver_connection)

    event.listen(engine, "before_cursor_execute", on_cursor)
    event.listen(engine, "checkout", on_checkout)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", on_cursor)
        event.remove(engine, "checkout", on_checkout)
        for driver in drivers:
            driver.remove_query_logger(on_query)


# What the pool itself sends on checkout when it pings connections (pool_pre_ping):
# not part of admission, and the same whatever the limits.
POOL_PING = {"BEGIN", "", "ROLLBACK"}


async def test_admission_cost_does_not_grow_with_the_limit(app, backend):
    """The same statements at a limit of 10 and of 100,000 (with 100 leases held there):
    one statement each for admission and release on PostgreSQL, and no enumeration."""
    store = store_of(app)
    for _ in range(100):
        held = admission_request(
            "subject:big", limit=100_000, system_scope="subject:big:system", system_limit=100_000
        )
        assert await store.admit(held) is Outcome.OK

    async def statements(scope: str, limit: int) -> list[str]:
        unit = admission_request(
            scope, limit=limit, system_scope=f"{scope}:system", system_limit=limit, daily_llm=limit
        )
        with statements_sent(app) as sent:
            assert await store.admit(unit) is Outcome.OK
            await store.release(unit.lease_id, unit.day, [(scope, QuotaKind.LLM)])
            # asyncpg hands each logged query to the event loop (call_soon): one turn of
            # the loop delivers them.
            await asyncio.sleep(0)
        return sent

    small = await statements("subject:small", 10)
    big = await statements("subject:big", 100_000)
    assert small == big
    assert not any("RECURSIVE" in s.upper() for s in big)
    if backend == "postgresql":
        quota_work = [s for s in big if s.strip(" ;").upper() not in POOL_PING]
        assert [s.split("(")[0] for s in quota_work] == [
            "SELECT quota_admit",
            "SELECT quota_release",
        ]
    else:
        # One transaction of point statements on indexed rows each.
        assert len(big) == 9


async def test_a_caller_cancelled_during_its_admission_takes_nothing(app, monkeypatch):
    """The server cancels a request's task (the client went away) while its admission is
    at the database: the admission still ends there, and everything it took goes back."""
    store = store_of(app)
    real_admit = store.admit
    at_database, answer = asyncio.Event(), asyncio.Event()

    async def slow_admit(request: AdmissionRequest) -> Outcome:
        outcome = await real_admit(request)  # committed, as a sent statement would be
        at_database.set()
        await answer.wait()  # ... while its answer is still on the way
        return outcome

    monkeypatch.setattr(store, "admit", slow_admit)
    visitor = Identity(IdentityKind.ANONYMOUS, "anon:leaving-visitor", "203.0.113.9")
    request = asyncio.create_task(app.state.quotas.admit(visitor, None, "req-1"))
    await asyncio.wait_for(at_database.wait(), timeout=30)
    assert await lease_rows(app)  # the slots are taken at this point
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    answer.set()
    deadline = asyncio.get_running_loop().time() + 30
    while await lease_rows(app) or await counters(app):
        assert asyncio.get_running_loop().time() < deadline, "the admission was not given back"
        await asyncio.sleep(0.01)
    assert await in_use(app, SYSTEM_SCOPE) == 0
