"""The demo/quota gate through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select, update

from app.main import create_app
from app.maintenance import run_maintenance
from app.models import BillingTier, ConcurrencyLease, CreditLedgerEntry, CreditReason
from app.work import Identity, IdentityKind
from tests.gateway.conftest import PROBE_PATH, install_probe
from tests.support.builders import client_for, register, set_tier, tenant_id_of
from tests.support.settings import make_settings

pytestmark = pytest.mark.usefixtures("backend")

FAST = {
    "RATE_LIMIT_FREE_PER_MINUTE": 10_000,
    "RATE_LIMIT_PRO_PER_MINUTE": 10_000,
    "RATE_LIMIT_DAILY_PER_USER": 10,
    "RATE_LIMIT_DAILY_LLM_PER_USER": 1,
    "RATE_LIMIT_DAILY_PER_IP": 50,
}


@pytest.fixture
def settings_overrides() -> dict:
    return dict(FAST)


def _assert_error(response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_anonymous_gets_one_llm_unit_then_fallback_then_429(client, probe):
    results = []
    for _ in range(10):
        response = await client.post(PROBE_PATH)
        assert response.status_code == 200, response.text
        results.append(response.json()["use_llm"])
    assert results == [True] + [False] * 9
    assert probe.units[1].llm.fallback_reason == "llm_quota_exhausted"

    refused = await client.post(PROBE_PATH)
    body = _assert_error(refused, 429, "daily_quota")
    assert int(refused.headers["retry-after"]) >= 1
    assert "resets at" in body["message"]
    assert refused.headers["x-quota-reset"].endswith("T00:00:00Z")


async def test_byok_anonymous_uses_its_key_for_every_unit(client, probe):
    headers = {"X-LLM-API-KEY": "anthropic:sk-ant-abcdefgh12345678"}
    for _ in range(10):
        response = await client.post(PROBE_PATH, headers=headers)
        assert response.json() == {
            "use_llm": True,
            "byok": True,
            "provider": "anthropic",
            "metered": False,
            "subject": probe.units[0].subject,
        }
    assert probe.units[0].llm.api_key == "sk-ant-abcdefgh12345678"
    assert "sk-ant-abcdefgh12345678" not in repr(probe.units[0])
    _assert_error(await client.post(PROBE_PATH, headers=headers), 429, "daily_quota")


async def test_malformed_key_is_400_masked_and_counts_nothing(client, probe, caplog):
    secret = "garbage key with spaces 12345"
    response = await client.post(PROBE_PATH, headers={"X-LLM-API-KEY": secret})
    body = _assert_error(response, 400, "invalid_llm_key")
    assert secret not in body["message"]
    assert secret not in caplog.text
    assert probe.units == []
    status = (await client.get("/api/v1/quota/status")).json()
    assert status["daily"]["used"] == 0


async def test_signed_in_free_user_llm_quota_then_fallback(app, client, probe):
    account = await register(client)
    uses = []
    for _ in range(21):
        response = await client.post(PROBE_PATH, headers=account.headers)
        assert response.status_code == 200
        uses.append(response.json()["use_llm"])
    assert uses == [True] * 20 + [False]
    assert probe.units[0].user_id is not None and probe.units[0].llm.metered is False


async def test_paid_tiers_are_metered_by_credits_not_counted(app, client, probe):
    account = await register(client)
    await set_tier(app, await tenant_id_of(client, account), BillingTier.PRO)
    response = await client.post(PROBE_PATH, headers=account.headers)
    assert response.json()["metered"] is True and response.json()["use_llm"] is True
    byok = await client.post(
        PROBE_PATH, headers={**account.headers, "X-LLM-API-KEY": "sk-abcdefghijkl"}
    )
    assert byok.json()["metered"] is False and byok.json()["provider"] == "openai"


@pytest.mark.parametrize("settings_overrides", [{**FAST, "RATE_LIMIT_DAILY_PER_IP": 6}])
async def test_per_ip_cap_stops_minted_fingerprints(app, probe):
    statuses = []
    for n in range(8):
        async with client_for(app, "198.51.100.77", headers={"User-Agent": f"agent-{n}"}) as c:
            statuses.append((await c.post(PROBE_PATH)).status_code)
    assert statuses == [200] * 6 + [429, 429]
    async with client_for(app, "198.51.100.78") as other:
        assert (await other.post(PROBE_PATH)).status_code == 200


async def test_cookie_is_issued_once_and_honoured(app, probe):
    async with client_for(app, headers={"User-Agent": "first"}) as c:
        first = await c.post(PROBE_PATH)
        cookie = first.headers["set-cookie"]
        assert cookie.startswith("demo_session_id=")
        for flag in ("HttpOnly", "SameSite=Lax", "Max-Age=2592000", "Path=/"):
            assert flag in cookie
        assert "Secure" not in cookie  # only outside dev/test
        second = await c.post(PROBE_PATH)  # httpx sends the cookie back
        assert "set-cookie" not in second.headers
    # Same cookie, different browser details: still the same visitor.
    value = cookie.split(";")[0].split("=", 1)[1]
    async with client_for(app, "192.0.2.44", headers={"User-Agent": "other"}) as c:
        c.cookies.set("demo_session_id", value)
        await c.post(PROBE_PATH)
    assert len({unit.subject for unit in probe.units}) == 1


async def test_fingerprint_is_stable_without_cookies(app, probe):
    for _ in range(3):
        async with client_for(app, headers={"User-Agent": "ua", "Accept-Language": "de"}) as c:
            await c.post(PROBE_PATH)
    async with client_for(app, headers={"User-Agent": "ua", "Accept-Language": "fr"}) as c:
        await c.post(PROBE_PATH)
    subjects = [unit.subject for unit in probe.units]
    assert subjects[0] == subjects[1] == subjects[2] != subjects[3]


async def test_a_bad_token_spends_no_quota(client, probe):
    # The gate leaves a request with a forged credential to the route, which refuses it;
    # it must not count a unit for whoever the forger claims or pretends to be.
    await client.post(PROBE_PATH, headers={"Authorization": "Bearer nonsense"})
    assert probe.units == []
    status = (await client.get("/api/v1/quota/status")).json()
    assert status["daily"]["used"] == 0


async def _leases(app: FastAPI) -> int:
    async with app.state.db.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(ConcurrencyLease)) or 0)


@pytest.mark.parametrize(
    "settings_overrides",
    [FAST, {**FAST, "QUOTA_SYNCHRONOUS_COMMIT": True}],
    ids=["relaxed-commit", "durable"],
)
async def test_concurrency_slot_is_held_then_returned(app, client, probe):
    hold = probe.holding()
    first = asyncio.create_task(client.post(PROBE_PATH))
    await probe.wait_entered()
    refused = await client.post(PROBE_PATH)
    _assert_error(refused, 429, "concurrency_limit")
    assert await _leases(app) == 2  # the caller's slot and one system slot
    hold.set()
    assert (await first).status_code == 200
    assert await _leases(app) == 0
    probe.hold = None
    assert (await client.post(PROBE_PATH)).status_code == 200


async def test_slot_returns_after_an_error(app, client, probe):
    probe.fail = True
    response = await client.post(PROBE_PATH)
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert await _leases(app) == 0


@pytest.mark.parametrize("settings_overrides", [{**FAST, "MAX_CONCURRENT_TASK_TREES": 2}])
async def test_system_wide_limit_is_503(app, probe):
    hold = probe.holding()
    clients = [client_for(app, f"192.0.2.{n}") for n in range(3)]
    try:
        running = [asyncio.create_task(c.post(PROBE_PATH)) for c in clients[:2]]
        await probe.wait_entered(2)
        refused = await clients[2].post(PROBE_PATH)
        _assert_error(refused, 503, "at_capacity")
        assert refused.headers["retry-after"] == "5"
        hold.set()
        assert [r.status_code for r in await asyncio.gather(*running)] == [200, 200]
    finally:
        for c in clients:
            await c.aclose()
    assert await _leases(app) == 0


async def test_client_disconnect_returns_the_slot(app, probe):
    hold = probe.holding()
    disconnected = asyncio.Event()

    async def receive():
        await asyncio.sleep(0)
        if not disconnected.is_set():
            disconnected.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await hold.wait()
        return {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PROBE_PATH,
        "raw_path": PROBE_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("203.0.113.99", 1),
        "server": ("testserver", 80),
    }
    task = asyncio.create_task(app(scope, receive, send))
    await probe.wait_entered()
    assert await _leases(app) == 2
    task.cancel()  # the server cancels the request when the client goes away
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _leases(app) == 0


@pytest.mark.parametrize("settings_overrides", [{**FAST, "LEASE_TTL_SECONDS": 60}])
async def test_an_abandoned_lease_lapses_and_its_slot_is_taken_over(app, client, probe):
    # A worker admitted this visitor's unit, then crashed: nobody will release its lease.
    subject = f"anon:{_anon_fingerprint(app, client)}"
    crashed = await app.state.quotas.admit(
        Identity(IdentityKind.ANONYMOUS, subject, "203.0.113.10"), None, None
    )
    _assert_error(await client.post(PROBE_PATH), 429, "concurrency_limit")
    status = (await client.get("/api/v1/quota/status")).json()
    assert status["concurrency"]["in_use"] == 1 and status["daily"]["used"] == 1

    # LEASE_TTL_SECONDS later (the clock is moved by moving the expiry back).
    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(
            update(ConcurrencyLease)
            .where(ConcurrencyLease.lease_id == crashed.lease_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    status = (await client.get("/api/v1/quota/status")).json()
    assert status["concurrency"] == {**status["concurrency"], "in_use": 0, "system_in_use": 0}
    assert (await client.post(PROBE_PATH)).status_code == 200
    # The admission that found the caller's scope full deleted the lapsed lease there;
    # its system slot (the system was not full) waits for maintenance. The crashed
    # unit's count stays: it did start.
    async with app.state.db.sessionmaker() as session:
        rows = (
            await session.execute(select(ConcurrencyLease.scope, ConcurrencyLease.lease_id))
        ).all()
    assert [tuple(row) for row in rows] == [("system", crashed.lease_id)]
    assert (await run_maintenance(app.state.db, None, staging_max_age=0)).leases_deleted == 1
    assert await _leases(app) == 0
    assert (await client.get("/api/v1/quota/status")).json()["daily"]["used"] == 2
    # A renewal from the crashed worker, had it come back, finds nothing to renew.
    assert await app.state.quotas.renew(crashed.lease_id) is False


def _anon_fingerprint(app: FastAPI, client) -> str:
    from app.gateway.identity import fingerprint

    headers = {k.encode(): v.encode() for k, v in client.headers.items()}
    return fingerprint(headers, "203.0.113.10", app.state.settings.FINGERPRINT_SALT)


async def test_quota_status_for_anonymous_and_users(app, client, probe):
    await client.post(PROBE_PATH)
    anonymous = (await client.get("/api/v1/quota/status")).json()
    assert anonymous["identity"] == "anonymous"
    assert anonymous["demo"] is True and anonymous["premium"] is False
    assert anonymous["daily"] == {"limit": 10, "used": 1, "remaining": 9}
    assert anonymous["llm"]["remaining"] == 0 and anonymous["fallback_active"] is True
    assert anonymous["per_ip"]["used"] == 1
    assert anonymous["concurrency"]["limit"] == 1
    assert anonymous["reset_at"].endswith("T00:00:00Z")

    premium = await client.get("/api/v1/quota/status", headers={"X-LLM-API-KEY": "sk-abcdefghij"})
    assert premium.json()["premium"] is True and premium.json()["llm"]["limit"] == 10

    account = await register(client)
    user = (await client.get("/api/v1/quota/status", headers=account.headers)).json()
    assert user["identity"] == "user" and user["tier"] == "free"
    assert user["daily"]["limit"] == 50 and user["llm"]["limit"] == 20
    assert user["per_ip"] is None and user["demo"] is False
    await set_tier(app, await tenant_id_of(client, account), BillingTier.POWER)
    power = (await client.get("/api/v1/quota/status", headers=account.headers)).json()
    assert power["llm"]["metered_by_credits"] is True and power["concurrency"]["limit"] == 8


@asynccontextmanager
async def app_instances(
    database_url: str, tmp_path: Path, overrides: dict, user_agent: str | None = None
) -> AsyncIterator[tuple[list[FastAPI], list[httpx.AsyncClient]]]:
    """Three app instances on one database (three engines, pools and caches), running,
    each with the probe route and a client."""
    apps = [
        create_app(make_settings(database_url, tmp_path / f"d{n}", **overrides)) for n in range(3)
    ]
    headers = {"User-Agent": user_agent} if user_agent else None
    async with AsyncExitStack() as stack:
        for application in apps:
            install_probe(application)
            await stack.enter_async_context(application.router.lifespan_context(application))
        clients = [
            await stack.enter_async_context(client_for(application, headers=headers))
            for application in apps
        ]
        yield apps, clients


async def test_concurrent_units_across_app_instances_admit_exactly_the_limit(
    database_url, tmp_path
):
    """50 simultaneous units at a limit of 10, spread over three app instances
    (three engines and connection pools on one database): exactly 10 admitted."""
    overrides = {
        **FAST,
        "RATE_LIMIT_DAILY_PER_USER": 10,
        "RATE_LIMIT_DAILY_PER_IP": 1000,
        "MAX_CONCURRENT_TASK_TREES_PER_USER": 100,
        "MAX_CONCURRENT_TASK_TREES": 100,
    }
    async with app_instances(database_url, tmp_path, overrides, "same-visitor") as (_, clients):
        responses = await asyncio.gather(*(clients[n % 3].post(PROBE_PATH) for n in range(50)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10
    assert statuses.count(429) == 40


@pytest.mark.parametrize(
    "settings_overrides",
    [{**FAST, "DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:9/nowhere"}],
)
async def test_quota_store_down_fails_closed(settings, probe_unavailable_app):
    async with client_for(probe_unavailable_app) as c:
        response = await c.post(PROBE_PATH)
    _assert_error(response, 503, "quota_unavailable")
    assert response.headers["retry-after"] == "5"


@pytest.fixture
async def probe_unavailable_app(settings):
    application = create_app(settings)
    install_probe(application)
    async with application.router.lifespan_context(application):
        yield application


async def _grants(app: FastAPI, tenant_id) -> list[int]:
    async with app.state.db.sessionmaker() as session:
        return list(
            await session.scalars(
                select(CreditLedgerEntry.delta).where(
                    CreditLedgerEntry.tenant_id == tenant_id,
                    CreditLedgerEntry.reason == CreditReason.MONTHLY_GRANT,
                )
            )
        )


@pytest.mark.parametrize("settings_overrides", [{**FAST, "CREDIT_MONTHLY_GRANT_PRO": 300}])
async def test_the_monthly_grant_costs_a_metered_admission_one_check_a_month(
    app, client, probe, monkeypatch
):
    account = await register(client)
    tenant_id = await tenant_id_of(client, account)
    await set_tier(app, tenant_id, BillingTier.PRO)
    touched: list[str] = []

    def on_cursor(conn, cursor, statement, parameters, context, executemany) -> None:
        if "credit_" in statement:
            touched.append(statement)

    engine = app.state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_cursor)
    try:
        first = await client.post(PROBE_PATH, headers=account.headers)
        assert first.json()["metered"] is True
        checked = len(touched)
        assert checked > 0
        for _ in range(4):
            assert (await client.post(PROBE_PATH, headers=account.headers)).status_code == 200
        assert len(touched) == checked  # known granted this month: no round trip
        assert await _grants(app, tenant_id) == [300]

        # A new month: the first metered unit grants it, once.
        monkeypatch.setattr("app.credits.service.current_period", lambda: "2999-01")
        assert (await client.post(PROBE_PATH, headers=account.headers)).status_code == 200
        checked = len(touched)
        for _ in range(3):
            assert (await client.post(PROBE_PATH, headers=account.headers)).status_code == 200
        assert len(touched) == checked
    finally:
        event.remove(engine, "before_cursor_execute", on_cursor)
    assert await _grants(app, tenant_id) == [300, 300]


async def test_a_free_tenant_upgraded_mid_month_still_gets_its_grant(app, client, probe):
    account = await register(client)
    tenant_id = await tenant_id_of(client, account)
    # The credits page asks for the grant of a tier that has none.
    assert (await client.get("/api/v1/credits", headers=account.headers)).status_code == 200
    assert await _grants(app, tenant_id) == []
    await set_tier(app, tenant_id, BillingTier.PRO)
    assert (await client.post(PROBE_PATH, headers=account.headers)).json()["metered"] is True
    assert await _grants(app, tenant_id) == [app.state.settings.CREDIT_MONTHLY_GRANT_PRO]


async def test_workers_each_check_the_grant_and_it_is_granted_once(database_url, tmp_path):
    """Metered units on three app instances (three processes' worth of caches) at once."""
    overrides = {
        **FAST,
        "MAX_CONCURRENT_PRO": 100,
        "MAX_CONCURRENT_TASK_TREES": 100,
        "CREDIT_MONTHLY_GRANT_PRO": 300,
    }
    async with app_instances(database_url, tmp_path, overrides) as (apps, clients):
        account = await register(clients[0])
        tenant_id = await tenant_id_of(clients[0], account)
        await set_tier(apps[0], tenant_id, BillingTier.PRO)
        responses = await asyncio.gather(
            *(clients[n % 3].post(PROBE_PATH, headers=account.headers) for n in range(24))
        )
        assert [r.status_code for r in responses] == [200] * 24
        assert await _grants(apps[0], tenant_id) == [300]
