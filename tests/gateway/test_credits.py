"""Credits: monthly grants, reserve → settle, the ledger, concurrency, admin grants."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from app.errors import PaymentRequired
from app.models import BillingTier, CreditAccount, CreditReason, User
from app.work import LLMGrant, UnitOfWork
from tests.gateway.conftest import PROBE_PATH
from tests.support.builders import register, set_tier, tenant_id_of

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def settings_overrides() -> dict:
    return {"CREDIT_MONTHLY_GRANT_PRO": 100, "CREDITS_PER_USD": 1000, "CREDIT_RESERVE_ESTIMATE": 10}


async def _pro_tenant(app, client) -> uuid.UUID:
    account = await register(client)
    tenant_id = await tenant_id_of(client, account)
    await set_tier(app, tenant_id, BillingTier.PRO)
    await app.state.gateway.credits.ensure_monthly_grant(tenant_id, BillingTier.PRO)
    return tenant_id


def _unit(app, tenant_id: uuid.UUID) -> UnitOfWork:
    return UnitOfWork(
        subject="user:test",
        tier=BillingTier.PRO,
        llm=LLMGrant(use_llm=True, metered=True),
        tenant_id=tenant_id,
        accountant=app.state.gateway.credits,
        default_estimate=10,
    )


async def _balance_and_ledger(app, tenant_id) -> tuple[int, int, list]:
    from app.credits.repository import CreditRepository

    async with app.state.db.sessionmaker() as session:
        repo = CreditRepository(session)
        entries, _ = await repo.entries(tenant_id, page=1, limit=1000)
        return await repo.balance(tenant_id), await repo.ledger_sum(tenant_id), entries


async def test_monthly_grant_is_applied_once(app, client):
    tenant_id = await _pro_tenant(app, client)
    await app.state.gateway.credits.ensure_monthly_grant(tenant_id, BillingTier.PRO)
    balance, ledger, entries = await _balance_and_ledger(app, tenant_id)
    assert balance == ledger == 100
    assert [e.reason for e in entries] == [CreditReason.MONTHLY_GRANT]


async def test_reserve_then_settle_to_the_real_cost(app, client):
    tenant_id = await _pro_tenant(app, client)
    unit = _unit(app, tenant_id)
    async with unit.metered_call() as meter:
        mid, _, _ = await _balance_and_ledger(app, tenant_id)
        assert mid == 90  # the estimate is held while the call runs
        meter.record(0.0042, prompt_tokens=100, completion_tokens=20)  # 4.2 → 5 credits
    balance, ledger, entries = await _balance_and_ledger(app, tenant_id)
    assert balance == ledger == 95
    assert [(e.reason, e.delta) for e in entries[:2]] == [
        (CreditReason.SETTLE, 5),
        (CreditReason.RESERVE, -10),
    ]


async def test_a_failed_call_releases_the_reservation(app, client):
    tenant_id = await _pro_tenant(app, client)
    unit = _unit(app, tenant_id)
    with pytest.raises(RuntimeError):
        async with unit.metered_call():
            raise RuntimeError("upstream died")
    balance, ledger, entries = await _balance_and_ledger(app, tenant_id)
    assert balance == ledger == 100
    assert entries[0].reason == CreditReason.RELEASE


async def test_an_overrun_is_charged_but_never_below_zero(app, client):
    tenant_id = await _pro_tenant(app, client)
    unit = _unit(app, tenant_id)
    async with unit.metered_call(estimate_credits=60) as meter:
        meter.record(0.5)  # 500 credits, far more than the balance
    balance, ledger, _ = await _balance_and_ledger(app, tenant_id)
    assert balance == ledger == 0


async def test_insufficient_credits_is_402(app, client):
    tenant_id = await _pro_tenant(app, client)
    with pytest.raises(PaymentRequired) as info:
        async with _unit(app, tenant_id).metered_call(estimate_credits=101):
            pass
    assert info.value.error == "insufficient_credits"
    balance, ledger, _ = await _balance_and_ledger(app, tenant_id)
    assert balance == ledger == 100


async def test_concurrent_reservations_never_overdraw(app, client):
    tenant_id = await _pro_tenant(app, client)

    async def one_call() -> bool:
        try:
            async with _unit(app, tenant_id).metered_call(estimate_credits=10) as meter:
                await asyncio.sleep(0.01)
                meter.record(0.010)  # exactly the estimate
            return True
        except PaymentRequired:
            return False

    results = await asyncio.gather(*(one_call() for _ in range(30)))
    balance, ledger, _ = await _balance_and_ledger(app, tenant_id)
    assert balance >= 0
    assert balance == ledger
    assert balance == 100 - 10 * sum(results)
    assert sum(results) == 10  # each success spends 10 for good; the rest get 402


async def test_byok_units_cost_no_credits(app, client, probe):
    account = await register(client)
    tenant_id = await tenant_id_of(client, account)
    await set_tier(app, tenant_id, BillingTier.PRO)
    response = await client.post(
        PROBE_PATH, headers={**account.headers, "X-LLM-API-KEY": "openai:sk-abcdefghijk"}
    )
    assert response.json()["metered"] is False
    assert probe.units[0].accountant is None


async def test_credits_endpoint_shows_balance_and_ledger(app, client):
    account = await register(client)
    tenant_id = await tenant_id_of(client, account)
    free = (await client.get("/api/v1/credits", headers=account.headers)).json()
    assert free["balance"] == 0 and free["monthly_grant"] == 0 and free["entries"] == []
    await set_tier(app, tenant_id, BillingTier.PRO)
    pro = (await client.get("/api/v1/credits", headers=account.headers)).json()
    assert pro["balance"] == 100 and pro["monthly_grant"] == 100
    assert pro["entries"][0]["reason"] == "monthly_grant"
    assert pro["entries"][0]["balance_after"] == 100
    assert (await client.get("/api/v1/credits")).status_code == 401


async def test_admin_grants_credits(app, client):
    admin = await register(client)
    async with app.state.db.sessionmaker() as session, session.begin():
        user = await session.scalar(select(User).where(User.email == admin.email))
        user.is_admin = True
    customer = await register(client)
    tenant_id = await tenant_id_of(client, customer)

    url = f"/api/v1/admin/tenants/{tenant_id}/credits"
    denied = await client.post(url, json={"amount": 50}, headers=customer.headers)
    assert denied.status_code == 403
    granted = await client.post(url, json={"amount": 50}, headers=admin.headers)
    assert granted.status_code == 200 and granted.json()["balance"] == 50
    missing = await client.post(
        f"/api/v1/admin/tenants/{uuid.uuid4()}/credits", json={"amount": 5}, headers=admin.headers
    )
    assert missing.status_code == 404
    invalid = await client.post(url, json={"amount": -5}, headers=admin.headers)
    assert invalid.status_code == 422
    async with app.state.db.sessionmaker() as session:
        account = await session.get(CreditAccount, tenant_id)
    assert account.balance == 50
