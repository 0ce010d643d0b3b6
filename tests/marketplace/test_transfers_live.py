"""Live mode: the developer's share goes out as a Stripe Connect transfer (to a stand-in)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from app.models import BillingTier
from tests.marketplace.helpers import (
    account_on,
    manifest,
    onboard,
    payment_completed,
    revenue_events,
    user_id_of,
)
from tests.support.billing import WEBHOOK_SECRET, StripeStandIn, post_webhook
from tests.support.builders import Account, register, register_admin

pytestmark = pytest.mark.usefixtures("backend")

ADMIN_EMAIL = "connect-admin@example.com"


@pytest.fixture
def settings_overrides(stand_in: StripeStandIn) -> dict[str, object]:
    return {
        "ADMIN_EMAILS": ADMIN_EMAIL,
        "STRIPE_SECRET_KEY": "sk_test_connect",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": stand_in.url,
    }


async def publish(client: httpx.AsyncClient, admin: Account, plugin_id: str, price: int) -> Account:
    developer = await register(client)
    response = await client.post(
        "/api/v1/plugins", json=manifest(plugin_id, price_cents=price), headers=developer.headers
    )
    assert response.status_code == 201
    response = await client.post(
        f"/api/v1/admin/plugins/{plugin_id}/review",
        json={"decision": "approved"},
        headers=admin.headers,
    )
    assert response.status_code == 200
    return developer


@pytest.fixture
async def admin(client: httpx.AsyncClient, app: FastAPI) -> Account:
    return await register_admin(client, app, ADMIN_EMAIL)


async def buy_live(
    client: httpx.AsyncClient, stand_in: StripeStandIn, buyer: Account, plugin_id: str
) -> None:
    response = await client.post(f"/api/v1/plugins/{plugin_id}/install", headers=buyer.headers)
    assert response.status_code == 202, response.text
    paid = payment_completed(stand_in, response.json()["checkout_url"])
    response = await post_webhook(client, paid)
    assert response.status_code == 200, response.text


async def test_transfer_of_the_developer_share(
    client: httpx.AsyncClient, app: FastAPI, stand_in: StripeStandIn, admin: Account
) -> None:
    developer = await publish(client, admin, "connect-paid", 1999)
    account_id = await onboard(client, developer)
    buyer = await account_on(client, app, BillingTier.POWER)
    await buy_live(client, stand_in, buyer, "connect-paid")
    (revenue,) = await revenue_events(app, "connect-paid")
    assert revenue.transfer_status == "created"
    assert revenue.stripe_transfer_id.startswith("tr_")

    (call,) = stand_in.calls("POST", "/v1/transfers")
    assert call.form["amount"] == str(1999 * 70 // 100) == "1399"
    assert call.form["currency"] == "eur"
    assert call.form["destination"] == account_id
    assert call.form["metadata[revenue_event_id]"] == str(revenue.id)
    assert call.headers["Idempotency-Key"] == f"revenue-{revenue.id}"


async def test_a_failed_transfer_is_recorded_and_the_install_stands(
    client: httpx.AsyncClient, app: FastAPI, stand_in: StripeStandIn, admin: Account
) -> None:
    developer = await publish(client, admin, "flaky-payout", 500)
    without_account = await publish(client, admin, "no-connect", 700)
    account_id = await onboard(client, developer)
    buyer = await account_on(client, app, BillingTier.POWER)

    response = await client.post("/api/v1/plugins/flaky-payout/install", headers=buyer.headers)
    assert response.status_code == 202, response.text
    stand_in.fail_with = 500
    paid = payment_completed(stand_in, response.json()["checkout_url"])
    assert (await post_webhook(client, paid)).status_code == 200
    (sale,) = await revenue_events(app, "flaky-payout")
    assert sale.transfer_status == "failed"
    installed = await client.post("/api/v1/plugins/flaky-payout/install", headers=buyer.headers)
    assert installed.status_code == 200 and installed.json()["install_count"] == 1
    attempts = stand_in.calls("POST", "/v1/transfers")
    assert attempts and {a.form["destination"] for a in attempts} == {account_id}

    # A developer without a Connect account: nothing is sent, the sale is still recorded.
    stand_in.fail_with = None
    await buy_live(client, stand_in, buyer, "no-connect")
    assert len(stand_in.calls("POST", "/v1/transfers")) == len(attempts)
    (event,) = await revenue_events(app, "no-connect")
    assert event.transfer_status == "pending"
    assert (event.developer_share_cents, event.platform_share_cents) == (490, 210)
    assert event.developer_id == await user_id_of(client, without_account)
