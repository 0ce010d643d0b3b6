"""Tier gate, catalog filters/search/sort/pagination, detail."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from app.models import BillingTier, PluginStatus
from app.models.base import utcnow
from tests.marketplace.helpers import account_on, add_plugins
from tests.support.builders import register, set_tier, tenant_id_of

pytestmark = pytest.mark.usefixtures("backend")


@pytest.mark.parametrize("tier", [BillingTier.FREE, BillingTier.PRO])
async def test_free_and_pro_are_refused(
    client: httpx.AsyncClient, app: FastAPI, tier: BillingTier
) -> None:
    account = await account_on(client, app, tier)
    for method, path in [
        ("GET", "/api/v1/plugins"),
        ("GET", "/api/v1/plugins/github-sync"),
        ("POST", "/api/v1/plugins/github-sync/install"),
    ]:
        response = await client.request(method, path, headers=account.headers)
        assert response.status_code == 403, (method, path, response.text)
        body = response.json()
        assert body["error"] == "feature_not_available"
        assert "marketplace" in body["message"] and "power" in body["message"]


async def test_a_downgraded_workspace_can_still_uninstall(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await account_on(client, app, BillingTier.POWER)
    install = await client.post("/api/v1/plugins/github-sync/install", headers=account.headers)
    assert install.status_code == 200
    await set_tier(app, await tenant_id_of(client, account), BillingTier.FREE)
    response = await client.delete("/api/v1/plugins/github-sync/install", headers=account.headers)
    assert response.status_code == 204
    await set_tier(app, await tenant_id_of(client, account), BillingTier.POWER)
    detail = await client.get("/api/v1/plugins/github-sync", headers=account.headers)
    assert detail.json()["install_count"] == 0


@pytest.mark.parametrize("tier", [BillingTier.POWER, BillingTier.TEAM])
async def test_power_and_team_may_browse_and_install(
    client: httpx.AsyncClient, app: FastAPI, tier: BillingTier
) -> None:
    account = await account_on(client, app, tier)
    response = await client.get("/api/v1/plugins", headers=account.headers)
    assert response.status_code == 200
    response = await client.post("/api/v1/plugins/github-sync/install", headers=account.headers)
    assert response.status_code == 200


async def test_anonymous_is_401(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/plugins")).status_code == 401


async def test_seed_plugins(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await account_on(client, app, BillingTier.POWER)
    body = (await client.get("/api/v1/plugins", headers=account.headers)).json()
    seeds = {p["id"]: p for p in body["items"]}
    assert {
        (p["name"], p["category"], p["price_cents"], p["currency"]) for p in seeds.values()
    } == {
        ("GitHub Sync", "productivity", 0, "EUR"),
        ("Slack Notifier", "communication", 499, "EUR"),
        ("Time Tracker", "productivity", 999, "EUR"),
    }
    assert all(p["status"] == "approved" and p["avg_rating"] is None for p in seeds.values())


@pytest.fixture
async def many_plugins(app: FastAPI) -> None:
    now = utcnow()
    rows = []
    for i in range(25):
        rows.append(
            {
                "id": f"extra-{i:02d}",
                "name": f"Extra {i:02d}" + (" Calendar Bridge" if i % 5 == 0 else ""),
                "description": "Exports 100% of reports" if i == 7 else "A helper.",
                "category": "calendar" if i % 5 == 0 else "utilities",
                "install_count": i * 3,
                "rating_sum": (i % 5) + 1,
                "rating_count": 1,
                "created_at": now - timedelta(days=100 - i),
            }
        )
    rows.append({"id": "hidden-pending", "name": "Hidden", "status": PluginStatus.PENDING_REVIEW})
    rows.append({"id": "hidden-rejected", "name": "Hidden", "status": PluginStatus.REJECTED})
    await add_plugins(app, rows)


@pytest.mark.usefixtures("many_plugins")
async def test_pagination_is_20_a_page(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await account_on(client, app, BillingTier.POWER)
    first = (await client.get("/api/v1/plugins", headers=account.headers)).json()
    second = (await client.get("/api/v1/plugins?page=2", headers=account.headers)).json()
    assert first["total"] == second["total"] == 28  # 25 + 3 seeds; pending/rejected hidden
    assert first["page_size"] == 20 and first["pages"] == 2
    assert len(first["items"]) == 20 and len(second["items"]) == 8
    ids = [p["id"] for p in first["items"] + second["items"]]
    assert len(set(ids)) == 28
    assert not any(i.startswith("hidden") for i in ids)
    empty = (await client.get("/api/v1/plugins?page=3", headers=account.headers)).json()
    assert empty["items"] == []
    bad = await client.get("/api/v1/plugins?page=0", headers=account.headers)
    assert bad.status_code == 422


@pytest.mark.usefixtures("many_plugins")
async def test_filters_search_and_sorting(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await account_on(client, app, BillingTier.POWER)

    async def ids(query: str) -> list[str]:
        response = await client.get(f"/api/v1/plugins?{query}", headers=account.headers)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["items"]]

    assert await ids("category=calendar&sort=newest") == [
        "extra-20",
        "extra-15",
        "extra-10",
        "extra-05",
        "extra-00",
    ]
    assert await ids("category=communication") == ["slack-notifier"]
    # Case-insensitive, over name and description; LIKE wildcards are literal.
    assert sorted(await ids("q=calendar%20BRIDGE")) == [
        f"extra-{i:02d}" for i in (0, 5, 10, 15, 20)
    ]
    assert await ids("q=github") == ["github-sync"]
    assert await ids("q=100%25") == ["extra-07"]
    assert await ids("q=%25%25%25") == []
    assert await ids("q=slack&category=productivity") == []

    by_installs = await ids("sort=installs")
    assert by_installs[:3] == ["extra-24", "extra-23", "extra-22"]
    by_rating = await ids("sort=rating&category=utilities")
    # Ratings cycle 1..5; among equals the one with more ratings, then the id, comes first.
    assert by_rating[:4] == ["extra-04", "extra-09", "extra-14", "extra-19"]
    newest = await ids("sort=newest&category=utilities")
    assert newest[0] == "extra-24"
    assert (
        await client.get("/api/v1/plugins?sort=random", headers=account.headers)
    ).status_code == 422


async def test_detail_and_visibility(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await account_on(client, app, BillingTier.POWER)
    response = await client.get("/api/v1/plugins/time-tracker", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Time Tracker"
    assert body["price_cents"] == 999
    assert body["installed"] is False and body["my_rating"] is None
    assert "read:calendar" in body["permissions"]
    assert "rating_sum" not in body

    missing = await client.get("/api/v1/plugins/no-such-plugin", headers=account.headers)
    assert missing.status_code == 404
    assert missing.json()["error"] == "plugin_not_found"
    await add_plugins(app, [{"id": "secret-draft", "status": PluginStatus.PENDING_REVIEW}])
    hidden = await client.get("/api/v1/plugins/secret-draft", headers=account.headers)
    assert hidden.status_code == 404


async def test_earnings_route_is_not_a_plugin_id(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.get("/api/v1/plugins/earnings", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json()["totals"] == []
