"""Paid plugins: the 70/30 split in integer cents, transfers (stubbed), earnings per period."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError

from app.errors import Unprocessable
from app.marketplace.service import parse_period, split_revenue
from app.models import BillingTier, RevenueEvent, TransferStatus
from app.models.base import utcnow
from tests.marketplace.helpers import (
    account_on,
    buy,
    manifest,
    move_revenue,
    revenue_events,
    user_id_of,
)
from tests.support.billing import WEBHOOK_SECRET
from tests.support.builders import Account, register, register_admin

pytestmark = pytest.mark.usefixtures("backend")

ADMIN_EMAIL = "payouts-admin@example.com"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {
        "ADMIN_EMAILS": ADMIN_EMAIL,
        "STRIPE_SECRET_KEY": "",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


@pytest.mark.parametrize("amount", [1, 2, 3, 7, 99, 101, 333, 499, 999, 1001, 12_345, 99_999])
def test_split_is_70_30_and_loses_no_cent(amount: int) -> None:
    developer, platform = split_revenue(amount)
    assert developer == amount * 70 // 100
    assert developer + platform == amount
    assert developer >= 0 and platform >= 0


@pytest.fixture
async def admin(client: httpx.AsyncClient, app: FastAPI) -> Account:
    return await register_admin(client, app, ADMIN_EMAIL)


async def publish(
    client: httpx.AsyncClient, admin: Account, developer: Account, plugin_id: str, price: int
) -> None:
    response = await client.post(
        "/api/v1/plugins",
        json=manifest(plugin_id, price_cents=price),
        headers=developer.headers,
    )
    assert response.status_code == 201, response.text
    response = await client.post(
        f"/api/v1/admin/plugins/{plugin_id}/review",
        json={"decision": "approved", "notes": ""},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text


async def test_paid_install_records_the_split(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    developer = await register(client)
    await publish(client, admin, developer, "odd-price", 1001)
    buyer = await account_on(client, app, BillingTier.POWER)
    await buy(client, buyer, "odd-price")
    (revenue,) = await revenue_events(app, "odd-price")
    assert revenue.amount_cents == 1001
    assert revenue.developer_share_cents == 700
    assert revenue.platform_share_cents == 301
    assert revenue.currency == "EUR"
    assert revenue.transfer_status == TransferStatus.STUBBED
    assert revenue.stripe_transfer_id is None
    installed = await client.post("/api/v1/plugins/odd-price/install", headers=buyer.headers)
    assert installed.status_code == 200
    assert installed.json()["newly_installed"] is False

    # Reinstalling, or installing again, is not another sale.
    await client.delete("/api/v1/plugins/odd-price/install", headers=buyer.headers)
    again = await client.post("/api/v1/plugins/odd-price/install", headers=buyer.headers)
    assert again.status_code == 200, again.text
    assert again.json()["newly_installed"] is True and again.json()["revenue"] is None
    (event,) = await revenue_events(app, "odd-price")
    assert event.developer_id == await user_id_of(client, developer)
    assert event.user_id == await user_id_of(client, buyer)


async def test_free_plugins_and_seed_plugins(client: httpx.AsyncClient, app: FastAPI) -> None:
    buyer = await account_on(client, app, BillingTier.TEAM)
    free = await client.post("/api/v1/plugins/github-sync/install", headers=buyer.headers)
    assert free.json()["revenue"] is None
    await buy(client, buyer, "slack-notifier")
    (revenue,) = await revenue_events(app, "slack-notifier")
    assert (revenue.developer_share_cents, revenue.platform_share_cents) == (349, 150)
    # A platform-owned plugin has no developer to pay out.
    assert revenue.transfer_status == TransferStatus.NOT_REQUIRED


async def test_the_database_refuses_a_split_that_does_not_sum(app: FastAPI) -> None:
    async with app.state.db.sessionmaker() as session:
        session.add(
            RevenueEvent(
                plugin_id="time-tracker",
                amount_cents=999,
                currency="EUR",
                developer_share_cents=699,
                platform_share_cents=299,
                transfer_status=TransferStatus.STUBBED,
            )
        )
        with pytest.raises(IntegrityError):
            await session.flush()


async def test_earnings_per_period(client: httpx.AsyncClient, app: FastAPI, admin: Account) -> None:
    developer = await register(client)
    await publish(client, admin, developer, "paid-one", 999)
    await publish(client, admin, developer, "paid-two", 99)
    buyers = [await account_on(client, app, BillingTier.POWER) for _ in range(3)]
    for buyer in buyers:
        for plugin_id in ("paid-one", "paid-two"):
            await buy(client, buyer, plugin_id)
    # One sale of each plugin happened in October 2026.
    for plugin_id in ("paid-one", "paid-two"):
        await move_revenue(
            app,
            (await revenue_events(app, plugin_id))[0].id,
            datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC),
        )

    now = utcnow()
    current = f"{now.year:04d}-{now.month:02d}"
    report = (
        await client.get(f"/api/v1/plugins/earnings?period={current}", headers=developer.headers)
    ).json()
    assert report["period"] == current
    lines = {line["plugin_id"]: line for line in report["plugins"]}
    assert lines["paid-one"]["sales"] == 2
    assert lines["paid-one"]["amount_cents"] == 1998
    assert lines["paid-one"]["developer_share_cents"] == 2 * 699
    assert lines["paid-two"] == {
        "plugin_id": "paid-two",
        "currency": "EUR",
        "sales": 2,
        "amount_cents": 198,
        "developer_share_cents": 2 * 69,
        "platform_share_cents": 2 * 30,
    }
    (total,) = report["totals"]
    assert total["amount_cents"] == 2196
    assert total["developer_share_cents"] + total["platform_share_cents"] == 2196

    october = (
        await client.get("/api/v1/plugins/earnings?period=2026-10", headers=developer.headers)
    ).json()
    assert october["start"].startswith("2026-10-01") and october["end"].startswith("2026-11-01")
    assert {line["plugin_id"]: line["sales"] for line in october["plugins"]} == {
        "paid-one": 1,
        "paid-two": 1,
    }
    year = (
        await client.get("/api/v1/plugins/earnings?period=2026", headers=developer.headers)
    ).json()
    assert year["totals"][0]["sales"] == 6
    default = (await client.get("/api/v1/plugins/earnings", headers=developer.headers)).json()
    assert default["period"] == current

    # Only the developer's own sales.
    stranger = (
        await client.get("/api/v1/plugins/earnings?period=2026", headers=buyers[0].headers)
    ).json()
    assert stranger["totals"] == [] and stranger["plugins"] == []
    for bad in ("2026-13", "26-10", "october", "2026-1", "0000", "9999", "9999-12", "2026%0A"):
        response = await client.get(
            f"/api/v1/plugins/earnings?period={bad}", headers=developer.headers
        )
        assert response.status_code == 422, bad
        assert response.json()["error"] == "invalid_period"


def test_parse_period_bounds() -> None:
    assert parse_period("2026-12")[1:] == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(Unprocessable):
        parse_period("2026-00")
    assert parse_period("2999-12")[2] == datetime(3000, 1, 1, tzinfo=UTC)
    for bad in ("0000", "1969-12", "3000", "9999", "9999-12", "2026\n", "٢٠٢٦"):
        with pytest.raises(Unprocessable):
            parse_period(bad)
