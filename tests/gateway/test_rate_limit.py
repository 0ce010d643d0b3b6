"""Tier rate limit: moving one-minute windows per identity, sized by the live tier."""

from __future__ import annotations

import pytest

from app.main import create_app
from app.models import BillingTier, Membership, MembershipRole, User
from tests.support.builders import client_for, register, set_tier, tenant_id_of
from tests.support.settings import make_settings

pytestmark = pytest.mark.usefixtures("backend")


async def _burn(client, headers, count: int, path: str = "/api/v1/auth/me") -> list:
    return [await client.get(path, headers=headers) for _ in range(count)]


async def test_free_tier_gets_20_per_minute_with_headers(client):
    account = await register(client)
    responses = await _burn(client, account.headers, 21)
    assert [r.status_code for r in responses] == [200] * 20 + [429]
    first, last_ok, refused = responses[0], responses[19], responses[20]
    assert first.headers["ratelimit-limit"] == "20"
    assert first.headers["ratelimit-remaining"] == "19"
    assert last_ok.headers["ratelimit-remaining"] == "0"
    assert 0 < int(first.headers["ratelimit-reset"]) <= 60
    body = refused.json()
    assert body["error"] == "rate_limited"
    assert body["request_id"] == refused.headers["x-request-id"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-remaining"] == "0"


async def test_tier_change_in_the_database_applies_to_the_next_request(app, client):
    account = await register(client)
    tenant_id = await tenant_id_of(client, account)
    assert (await client.get("/api/v1/auth/me", headers=account.headers)).headers[
        "ratelimit-limit"
    ] == "20"
    expected = {BillingTier.PRO: "60", BillingTier.POWER: "120", BillingTier.TEAM: "200"}
    for tier, limit in expected.items():
        await set_tier(app, tenant_id, tier)
        response = await client.get("/api/v1/auth/me", headers=account.headers)
        assert response.headers["ratelimit-limit"] == limit
        assert response.json()["tier"] == tier


async def test_team_limit_scales_with_seats(app, client):
    owner = await register(client)
    tenant_id = await tenant_id_of(client, owner)
    await set_tier(app, tenant_id, BillingTier.TEAM)
    async with app.state.db.sessionmaker() as session, session.begin():
        for n in range(2):
            user = User(email=f"seat{n}-{tenant_id.hex[:6]}@example.com", password_hash="x")
            session.add(user)
            await session.flush()
            session.add(
                Membership(tenant_id=tenant_id, user_id=user.id, role=MembershipRole.MEMBER)
            )
    response = await client.get("/api/v1/auth/me", headers=owner.headers)
    assert response.headers["ratelimit-limit"] == "600"


async def test_users_have_separate_windows(client):
    first, second = await register(client), await register(client)
    assert (await _burn(client, first.headers, 21))[-1].status_code == 429
    assert (await client.get("/api/v1/auth/me", headers=second.headers)).status_code == 200


async def test_anonymous_callers_share_a_window_per_ip(app):
    statuses = []
    for n in range(21):
        async with client_for(app, "198.51.100.5", headers={"User-Agent": f"ua-{n}"}) as c:
            statuses.append((await c.get("/api/v1/quota/status")).status_code)
    assert statuses == [200] * 20 + [429]
    async with client_for(app, "198.51.100.6") as c:
        assert (await c.get("/api/v1/quota/status")).status_code == 200


async def test_exempt_paths_are_not_limited_and_carry_no_headers(client):
    account = await register(client)
    for _ in range(25):
        health = await client.get("/api/v1/health")
        assert health.status_code == 200
        assert "ratelimit-limit" not in health.headers
    for _ in range(22):
        login = await client.post(
            "/api/v1/auth/login", json={"email": account.email, "password": account.password}
        )
        assert login.status_code == 200
    webhook = await client.post("/api/v1/billing/webhook", content=b"{}")
    assert "ratelimit-limit" not in webhook.headers


@pytest.mark.parametrize(
    "settings_overrides",
    [{"RATE_LIMIT_STORAGE_URI": "redis://127.0.0.1:9/0", "RATE_LIMIT_FAIL_OPEN": True}],
)
async def test_limiter_store_down_fails_open_when_configured(client, caplog):
    response = await client.get("/api/v1/quota/status")
    assert response.status_code == 200
    assert "ratelimit-limit" not in response.headers
    assert "rate limit store unavailable" in caplog.text


@pytest.mark.parametrize(
    "settings_overrides",
    [{"RATE_LIMIT_STORAGE_URI": "redis://127.0.0.1:9/0", "RATE_LIMIT_FAIL_OPEN": False}],
)
async def test_limiter_store_down_fails_closed_when_configured(client):
    response = await client.get("/api/v1/quota/status")
    assert response.status_code == 503
    assert response.json()["error"] == "rate_limit_unavailable"


async def test_two_app_instances_share_one_limit_through_redis(database_url, tmp_path, redis_url):
    """Two instances (think: two workers) with one Redis: 20 a minute in total, not 40."""
    import redis.asyncio as aioredis

    await aioredis.from_url(redis_url).flushdb()
    apps = [
        create_app(
            make_settings(database_url, tmp_path / f"i{n}", RATE_LIMIT_STORAGE_URI=redis_url)
        )
        for n in range(2)
    ]
    contexts = [a.router.lifespan_context(a) for a in apps]
    for context in contexts:
        await context.__aenter__()
    try:
        async with client_for(apps[0]) as c0, client_for(apps[1]) as c1:
            account = await register(c0)
            statuses = []
            for n in range(24):
                c = (c0, c1)[n % 2]
                statuses.append(
                    (await c.get("/api/v1/auth/me", headers=account.headers)).status_code
                )
    finally:
        for context in contexts:
            await context.__aexit__(None, None, None)
    assert statuses.count(200) == 20
    assert statuses[20:] == [429] * 4
