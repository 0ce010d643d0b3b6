"""Installs (idempotent, exact counts under concurrency) and ratings."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from app.models import BillingTier
from tests.marketplace.helpers import account_on, installation_count, plugin_row

pytestmark = pytest.mark.usefixtures("backend")

PLUGIN = "github-sync"
INSTALL = f"/api/v1/plugins/{PLUGIN}/install"
RATING = f"/api/v1/plugins/{PLUGIN}/rating"


async def test_install_is_idempotent(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await account_on(client, app, BillingTier.POWER)
    first = await client.post(INSTALL, headers=account.headers)
    assert first.status_code == 200, first.text
    assert first.json()["newly_installed"] is True
    assert first.json()["install_count"] == 1
    again = await client.post(INSTALL, headers=account.headers)
    assert again.json()["newly_installed"] is False
    assert again.json()["install_count"] == 1
    assert await installation_count(app, PLUGIN) == 1
    detail = (await client.get(f"/api/v1/plugins/{PLUGIN}", headers=account.headers)).json()
    assert detail["installed"] is True and detail["install_count"] == 1

    assert (await client.delete(INSTALL, headers=account.headers)).status_code == 204
    assert (await client.delete(INSTALL, headers=account.headers)).status_code == 204
    assert (await plugin_row(app, PLUGIN)).install_count == 0
    assert await installation_count(app, PLUGIN) == 0
    missing = await client.post("/api/v1/plugins/not-there/install", headers=account.headers)
    assert missing.status_code == 404


async def test_twenty_users_install_at_once(client: httpx.AsyncClient, app: FastAPI) -> None:
    accounts = [await account_on(client, app, BillingTier.POWER) for _ in range(20)]
    responses = await asyncio.gather(
        *(client.post(INSTALL, headers=account.headers) for account in accounts)
    )
    assert [r.status_code for r in responses] == [200] * 20
    assert sorted(r.json()["install_count"] for r in responses) == list(range(1, 21))
    assert (await plugin_row(app, PLUGIN)).install_count == 20
    assert await installation_count(app, PLUGIN) == 20


async def test_one_user_installing_many_times_at_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await account_on(client, app, BillingTier.POWER)
    responses = await asyncio.gather(
        *(client.post(INSTALL, headers=account.headers) for _ in range(8))
    )
    assert sorted(r.json()["newly_installed"] for r in responses) == [False] * 7 + [True]
    assert (await plugin_row(app, PLUGIN)).install_count == 1
    assert await installation_count(app, PLUGIN) == 1


async def test_concurrent_installs_and_uninstalls_stay_exact(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    leaving = [await account_on(client, app, BillingTier.POWER) for _ in range(10)]
    joining = [await account_on(client, app, BillingTier.POWER) for _ in range(10)]
    for account in leaving:
        assert (await client.post(INSTALL, headers=account.headers)).status_code == 200
    calls = []
    for leaver, joiner in zip(leaving, joining, strict=True):
        # Each uninstall and install twice: the duplicates must change nothing.
        calls += [
            client.delete(INSTALL, headers=leaver.headers),
            client.delete(INSTALL, headers=leaver.headers),
            client.post(INSTALL, headers=joiner.headers),
            client.post(INSTALL, headers=joiner.headers),
        ]
    responses = await asyncio.gather(*calls)
    assert all(r.status_code in (200, 204) for r in responses)
    assert (await plugin_row(app, PLUGIN)).install_count == 10
    assert await installation_count(app, PLUGIN) == 10


async def test_ratings(client: httpx.AsyncClient, app: FastAPI) -> None:
    rater = await account_on(client, app, BillingTier.POWER)
    other = await account_on(client, app, BillingTier.POWER)

    not_installed = await client.post(RATING, json={"rating": 5}, headers=rater.headers)
    assert not_installed.status_code == 403
    assert not_installed.json()["error"] == "not_installed"

    await client.post(INSTALL, headers=rater.headers)
    await client.post(INSTALL, headers=other.headers)
    for bad in (0, 6, "five", 4.5):
        response = await client.post(RATING, json={"rating": bad}, headers=rater.headers)
        assert response.status_code == 422, bad

    first = await client.post(RATING, json={"rating": 5}, headers=rater.headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"plugin_id": PLUGIN, "rating": 5, "rating_count": 1, "avg_rating": 5.0}
    changed = await client.post(RATING, json={"rating": 2}, headers=rater.headers)
    assert changed.json()["rating_count"] == 1 and changed.json()["avg_rating"] == 2.0
    both = await client.post(RATING, json={"rating": 3}, headers=other.headers)
    assert both.json()["rating_count"] == 2 and both.json()["avg_rating"] == 2.5

    detail = (await client.get(f"/api/v1/plugins/{PLUGIN}", headers=rater.headers)).json()
    assert detail["my_rating"] == 2 and detail["avg_rating"] == 2.5
    row = await plugin_row(app, PLUGIN)
    assert (row.rating_sum, row.rating_count) == (5, 2)


async def test_concurrent_ratings_keep_the_sum_exact(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    accounts = [await account_on(client, app, BillingTier.POWER) for _ in range(10)]
    for account in accounts:
        await client.post(INSTALL, headers=account.headers)
    first = [(account, i % 5 + 1) for i, account in enumerate(accounts)]
    # Every user rates twice at once (the second value wins or loses, but each
    # user counts once and the sum matches the stored ratings).
    responses = await asyncio.gather(
        *(
            client.post(RATING, json={"rating": value}, headers=account.headers)
            for account, value in first
        ),
        *(
            client.post(RATING, json={"rating": 6 - value}, headers=account.headers)
            for account, value in first
        ),
    )
    assert all(r.status_code == 200 for r in responses)
    row = await plugin_row(app, PLUGIN)
    assert row.rating_count == 10
    stored = []
    for account in accounts:
        detail = (await client.get(f"/api/v1/plugins/{PLUGIN}", headers=account.headers)).json()
        stored.append(detail["my_rating"])
    assert row.rating_sum == sum(stored)
