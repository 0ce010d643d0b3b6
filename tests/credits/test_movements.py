"""Credit movements under concurrency, their cost, cancellation and a failing store.

On both databases: PostgreSQL runs `credit_move()` (migration 006), SQLite the same
steps in one transaction. The ledger is read back through `GET /api/v1/credits`.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI

from app.billing.tiers import TierTable
from app.credits.service import CreditService
from app.db import Database
from app.errors import PaymentRequired, ServiceUnavailable
from app.models import BillingTier
from app.work import CreditMeter, LLMGrant, UnitOfWork
from tests.gateway.test_leases import statements_sent
from tests.support.builders import Account, register, register_admin, tenant_id_of
from tests.support.settings import make_settings

pytestmark = pytest.mark.usefixtures("backend")

RESERVE = 7
UNDER = 0.003  # 3 credits of the 7 reserved: a refund of 4
OVER = 0.012  # 12 credits: an overrun of 5, charged as far as the balance covers


@pytest.fixture
def settings_overrides() -> dict:
    return {"CREDITS_PER_USD": 1000}


async def _funded_tenant(app: FastAPI, client: httpx.AsyncClient, amount: int) -> tuple:
    """A fresh tenant (free tier: no monthly grant) given `amount` credits by an admin."""
    admin = await register_admin(client, app)
    customer = await register(client)
    tenant_id = await tenant_id_of(client, customer)
    granted = await client.post(
        f"/api/v1/admin/tenants/{tenant_id}/credits", json={"amount": amount}, headers=admin.headers
    )
    assert granted.status_code == 200, granted.text
    return customer, tenant_id


def _unit(app: FastAPI, tenant_id: uuid.UUID) -> UnitOfWork:
    return UnitOfWork(
        subject=f"user:{tenant_id}",
        tier=BillingTier.FREE,
        llm=LLMGrant(use_llm=True, metered=True),
        tenant_id=tenant_id,
        accountant=app.state.gateway.credits,
        default_estimate=RESERVE,
    )


def _meter(cost_usd: float) -> CreditMeter:
    meter = CreditMeter()
    meter.record(cost_usd)
    return meter


async def _ledger(client: httpx.AsyncClient, account: Account) -> tuple[int, list[dict]]:
    """The balance and the ledger, oldest first."""
    response = await client.get("/api/v1/credits?limit=100", headers=account.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] <= 100
    return body["balance"], sorted(body["entries"], key=lambda entry: entry["id"])


def _assert_chained(balance: int, entries: list[dict]) -> None:
    """Each row's balance_after is the one before plus its delta, from zero to the balance."""
    running = 0
    for entry in entries:
        running += entry["delta"]
        assert entry["balance_after"] == running, entries
    assert running == balance


async def test_concurrent_reservations_and_settlements_never_overdraw(app, client):
    account, tenant_id = await _funded_tenant(app, client, 100)
    credits = app.state.gateway.credits
    refusals: list[str] = []

    async def reserve() -> str | None:
        try:
            return await credits.reserve(_unit(app, tenant_id), RESERVE)
        except PaymentRequired as refused:
            assert refused.error == "insufficient_credits"
            refusals.append(str(refused))
            return None

    outcomes = await asyncio.gather(*(reserve() for _ in range(40)))
    reservations = [r for r in outcomes if r is not None]
    assert len(reservations) == 100 // RESERVE
    balance, entries = await _ledger(client, account)
    assert balance == 100 % RESERVE
    _assert_chained(balance, entries)
    assert len(refusals) == 40 - len(reservations)
    for message in refusals:
        # The balance the refused reservation found: never enough, never negative.
        available = int(re.search(r"(\d+) available", message).group(1))
        assert 0 <= available < RESERVE

    costs = [UNDER if n % 2 else OVER for n in range(len(reservations))]
    await asyncio.gather(
        *(
            credits.settle(_unit(app, tenant_id), reservation, _meter(cost))
            for reservation, cost in zip(reservations, costs, strict=True)
        )
    )
    balance, entries = await _ledger(client, account)
    _assert_chained(balance, entries)
    settlements = [e for e in entries if e["reason"] == "settle"]
    refunds = [e for e in settlements if e["delta"] > 0]
    overruns = [e for e in settlements if e["delta"] <= 0]
    assert [e["delta"] for e in refunds] == [RESERVE - 3] * costs.count(UNDER)
    assert len(overruns) == costs.count(OVER)
    for overrun in overruns:
        # The whole overrun, or all there was.
        assert overrun["delta"] == -5 or (overrun["delta"] > -5 and overrun["balance_after"] == 0)
    assert all(e["balance_after"] >= 0 for e in entries)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_reservation_and_a_settlement_are_one_statement_each_on_postgresql(app, client):
    account, tenant_id = await _funded_tenant(app, client, 10)
    credits = app.state.gateway.credits
    unit = _unit(app, tenant_id)

    async def sent_by(step) -> list[str]:
        with statements_sent(app) as sent:
            await step()
            # asyncpg hands each logged query to the event loop (call_soon): one turn of
            # the loop delivers them.
            await asyncio.sleep(0)
        return sent

    taken: list[str] = []

    async def reserve() -> None:
        taken.append(await credits.reserve(unit, RESERVE))

    async def refused() -> None:
        with pytest.raises(PaymentRequired):
            await credits.reserve(unit, 100)

    assert len(await sent_by(reserve)) == 1
    assert len(await sent_by(refused)) == 1
    assert len(await sent_by(lambda: credits.settle(unit, taken[0], _meter(UNDER)))) == 1
    assert len(await sent_by(reserve)) == 1
    assert len(await sent_by(lambda: credits.settle(unit, taken[1], _meter(OVER)))) == 1
    balance, entries = await _ledger(client, account)
    assert balance == 0  # 10 - 3, then 7 of the 12 the second call cost
    _assert_chained(balance, entries)


async def test_a_call_cancelled_while_it_runs_is_settled_to_what_it_used(app, client):
    account, tenant_id = await _funded_tenant(app, client, 100)
    with anyio.CancelScope() as scope:
        async with _unit(app, tenant_id).metered_call() as meter:
            meter.record(UNDER)
            scope.cancel()  # a client gone mid-call: the server cancels the request's work
            await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    balance, entries = await _ledger(client, account)
    assert balance == 97
    assert [(e["reason"], e["delta"]) for e in entries[1:]] == [("reserve", -7), ("settle", 4)]


async def test_the_monthly_grant_is_applied_once_whichever_worker_asks(app, client, settings):
    account = await register(client)
    tenant_id = await tenant_id_of(client, account)
    tiers = TierTable(settings)
    workers = [CreditService(app.state.db, settings, tiers) for _ in range(3)]
    await asyncio.gather(
        *(w.ensure_monthly_grant(tenant_id, BillingTier.PRO) for w in workers for _ in range(4))
    )
    balance, entries = await _ledger(client, account)
    assert balance == settings.CREDIT_MONTHLY_GRANT_PRO
    assert [e["reason"] for e in entries] == ["monthly_grant"]


async def test_a_failing_credit_store_fails_closed(app, client, backend, tmp_path: Path, caplog):
    _, tenant_id = await _funded_tenant(app, client, 100)
    unreachable = (
        f"sqlite+aiosqlite:///{tmp_path}/missing/adiuva.db"
        if backend == "sqlite"
        else "postgresql+asyncpg://nobody@127.0.0.1:9/nowhere"
    )
    settings = make_settings(unreachable, tmp_path / "data")
    db = Database(unreachable, settings)
    credits = CreditService(db, settings, TierTable(settings))
    unit = _unit(app, tenant_id)
    try:
        with pytest.raises(ServiceUnavailable) as refused:
            await credits.reserve(unit, RESERVE)
        assert refused.value.error == "credits_unavailable"
        with pytest.raises(ServiceUnavailable):
            await credits.ensure_monthly_grant(tenant_id, BillingTier.PRO)
        # A settlement that cannot be written leaves the reservation charged, and says so.
        await credits.settle(unit, f"1:{RESERVE}", _meter(UNDER))
        assert "credit settlement failed" in caplog.text
    finally:
        await db.dispose()
