"""Paid plugins are bought: a Checkout in payment mode first; the install, the sale and the
developer's share only when the payment completes (once); refunds and disputes reverse
them. Stub mode (the stub Checkout emits the signed webhook) and live mode (the `stripe`
client against the stand-in, real signatures)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.models import BillingTier, PluginPurchase
from tests.marketplace.helpers import (
    account_on,
    buy,
    charge_event,
    installation_count,
    manifest,
    onboard,
    payment_completed,
    plugin_row,
    revenue_events,
    user_id_of,
)
from tests.support.billing import WEBHOOK_SECRET, StripeStandIn, post_webhook
from tests.support.builders import Account, register, register_admin, set_tier, tenant_id_of

pytestmark = pytest.mark.usefixtures("backend")

ADMIN_EMAIL = "purchases-admin@example.com"


async def publish(
    client: httpx.AsyncClient, admin: Account, plugin_id: str, price: int, developer=None
) -> Account:
    developer = developer or await register(client)
    response = await client.post(
        "/api/v1/plugins", json=manifest(plugin_id, price_cents=price), headers=developer.headers
    )
    assert response.status_code == 201, response.text
    response = await client.post(
        f"/api/v1/admin/plugins/{plugin_id}/review",
        json={"decision": "approved"},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    return developer


async def purchases(app: FastAPI, plugin_id: str) -> list[PluginPurchase]:
    async with app.state.db.sessionmaker() as session:
        rows = await session.scalars(
            select(PluginPurchase).where(PluginPurchase.plugin_id == plugin_id)
        )
        return list(rows)


async def earnings(client: httpx.AsyncClient, developer: Account) -> dict:
    response = await client.get("/api/v1/plugins/earnings", headers=developer.headers)
    assert response.status_code == 200, response.text
    return response.json()


class TestStubMode:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        return {
            "ADMIN_EMAILS": ADMIN_EMAIL,
            "STRIPE_SECRET_KEY": "",
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }

    @pytest.fixture
    async def admin(self, client: httpx.AsyncClient, app: FastAPI) -> Account:
        return await register_admin(client, app, ADMIN_EMAIL)

    async def test_prices_are_bounded_at_submission(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        developer = await register(client)
        for price in (1, 98, 100_000, 100_000_00, -1, 4.99, "499", True):
            response = await client.post(
                "/api/v1/plugins",
                json=manifest(f"bounded-{uuid.uuid4().hex[:6]}", price_cents=price),
                headers=developer.headers,
            )
            assert response.status_code == 422, (price, response.text)
            assert "price_format" in response.text
        for price in (0, 99, 99_999):
            await publish(client, admin, f"bounded-ok-{price}", price, developer)

    async def test_nothing_is_recorded_before_the_payment(
        self, client: httpx.AsyncClient, app: FastAPI, admin: Account
    ) -> None:
        developer = await publish(client, admin, "pay-first", 499)
        buyer = await account_on(client, app, BillingTier.POWER)
        first = await client.post("/api/v1/plugins/pay-first/install", headers=buyer.headers)
        assert first.status_code == 202, first.text
        body = first.json()
        assert body["installed"] is False and body["revenue"] is None
        assert body["checkout_url"].startswith("/api/v1/billing/stub-checkout/cs_stub_")
        # Asking again returns the same open Checkout: one purchase at a time.
        again = await client.post("/api/v1/plugins/pay-first/install", headers=buyer.headers)
        assert again.status_code == 202 and again.json()["checkout_url"] == body["checkout_url"]
        assert await installation_count(app, "pay-first") == 0
        assert (await plugin_row(app, "pay-first")).install_count == 0
        assert await revenue_events(app, "pay-first") == []
        assert (await earnings(client, developer))["totals"] == []
        # Nobody but the buyer completes it.
        other = await account_on(client, app, BillingTier.POWER)
        response = await client.post(body["checkout_url"], headers=other.headers)
        assert response.status_code == 404

        paid = await client.post(body["checkout_url"], headers=buyer.headers)
        assert paid.status_code == 200, paid.text
        # Completing again is not a second sale.
        again = await client.post(body["checkout_url"], headers=buyer.headers)
        assert again.status_code == 200
        (sale,) = await revenue_events(app, "pay-first")
        assert (sale.amount_cents, sale.developer_share_cents, sale.platform_share_cents) == (
            499,
            349,
            150,
        )
        assert sale.user_id == await user_id_of(client, buyer)
        assert (await plugin_row(app, "pay-first")).install_count == 1
        installed = await client.post("/api/v1/plugins/pay-first/install", headers=buyer.headers)
        assert installed.status_code == 200 and installed.json()["installed"] is True
        (purchase,) = await purchases(app, "pay-first")
        assert purchase.status == "paid"
        assert (await earnings(client, developer))["totals"][0]["sales"] == 1

    async def test_authors_cannot_buy_their_own_plugin(
        self, client: httpx.AsyncClient, app: FastAPI, admin: Account
    ) -> None:
        developer = await register(client)
        await publish(client, admin, "self-sale", 999, developer)
        await set_tier(app, await tenant_id_of(client, developer), BillingTier.POWER)
        response = await client.post("/api/v1/plugins/self-sale/install", headers=developer.headers)
        assert response.status_code == 409
        assert response.json()["error"] == "own_plugin_purchase"
        assert await purchases(app, "self-sale") == []
        assert await revenue_events(app, "self-sale") == []

    @pytest.mark.parametrize(
        ("event_type", "status"),
        [("charge.refunded", "refunded"), ("charge.dispute.created", "disputed")],
    )
    async def test_refund_and_dispute_reverse_the_sale(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        admin: Account,
        event_type: str,
        status: str,
    ) -> None:
        plugin_id = f"reversible-{status}"
        developer = await publish(client, admin, plugin_id, 1001)
        buyer = await account_on(client, app, BillingTier.POWER)
        await buy(client, buyer, plugin_id)
        (purchase,) = await purchases(app, plugin_id)
        payment = purchase.stripe_payment_intent_id
        assert payment

        if event_type == "charge.refunded":
            # A partial refund leaves the sale standing.
            partial = charge_event(event_type, payment, refunded=False, amount_refunded=100)
            assert (await post_webhook(client, partial)).status_code == 200
            assert len(await revenue_events(app, plugin_id)) == 1

        event = charge_event(event_type, payment)
        assert (await post_webhook(client, event)).status_code == 200
        # A second copy (another event about the same charge) changes nothing more.
        assert (await post_webhook(client, charge_event(event_type, payment))).status_code == 200

        rows = await revenue_events(app, plugin_id)
        assert sorted(r.amount_cents for r in rows) == [-1001, 1001]
        assert sum(r.developer_share_cents for r in rows) == 0
        assert sum(r.platform_share_cents for r in rows) == 0
        reversal = next(r for r in rows if r.amount_cents < 0)
        assert reversal.reverses_id == next(r.id for r in rows if r.amount_cents > 0)
        assert (await purchases(app, plugin_id))[0].status == status
        assert await installation_count(app, plugin_id) == 0
        assert (await plugin_row(app, plugin_id)).install_count == 0
        report = await earnings(client, developer)
        assert report["totals"][0]["sales"] == 0
        assert report["totals"][0]["developer_share_cents"] == 0

        # The plugin can be bought again: a new Checkout, not a free reinstall.
        again = await client.post(f"/api/v1/plugins/{plugin_id}/install", headers=buyer.headers)
        assert again.status_code == 202


class TestLiveMode:
    @pytest.fixture
    def settings_overrides(self, stand_in: StripeStandIn) -> dict[str, object]:
        return {
            "ADMIN_EMAILS": ADMIN_EMAIL,
            "STRIPE_SECRET_KEY": "sk_test_purchases",
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": stand_in.url,
        }

    @pytest.fixture
    async def admin(self, client: httpx.AsyncClient, app: FastAPI) -> Account:
        return await register_admin(client, app, ADMIN_EMAIL)

    async def test_one_checkout_one_sale_under_concurrency(
        self, client: httpx.AsyncClient, app: FastAPI, admin: Account, stand_in: StripeStandIn
    ) -> None:
        developer = await publish(client, admin, "rush-buy", 999)
        await onboard(client, developer)
        buyer = await account_on(client, app, BillingTier.POWER)
        responses = await asyncio.gather(
            *(
                client.post("/api/v1/plugins/rush-buy/install", headers=buyer.headers)
                for _ in range(5)
            )
        )
        assert {r.status_code for r in responses} <= {202, 409}, [r.text for r in responses]
        urls = {r.json()["checkout_url"] for r in responses if r.status_code == 202}
        assert len(urls) == 1
        (call,) = stand_in.calls("POST", "/v1/checkout/sessions")
        assert call.form["mode"] == "payment"
        assert call.form["line_items[0][price_data][unit_amount]"] == "999"
        assert call.form["payment_intent_data[metadata][plugin_id]"] == "rush-buy"
        (url,) = urls

        # A payment not yet settled, or for another amount, records nothing.
        for overrides in ({"payment_status": "unpaid"}, {"amount_total": 1}):
            event = payment_completed(stand_in, url, **overrides)
            assert (await post_webhook(client, event)).status_code == 200
        assert await revenue_events(app, "rush-buy") == []
        # No payout without a completed payment.
        assert stand_in.calls("POST", "/v1/transfers") == []
        assert (await plugin_row(app, "rush-buy")).install_count == 0

        # Distinct deliveries about the same session, at once: one sale, one transfer.
        events = [payment_completed(stand_in, url) for _ in range(4)]
        results = await asyncio.gather(*(post_webhook(client, e) for e in events))
        assert {r.status_code for r in results} == {200}, [r.text for r in results]
        (sale,) = await revenue_events(app, "rush-buy")
        assert sale.developer_share_cents + sale.platform_share_cents == sale.amount_cents == 999
        (transfer,) = stand_in.calls("POST", "/v1/transfers")
        assert transfer.headers["Idempotency-Key"] == f"revenue-{sale.id}"
        assert (await plugin_row(app, "rush-buy")).install_count == 1

        # A refund takes the paid share back from the developer's account, once.
        (purchase,) = await purchases(app, "rush-buy")
        refund = charge_event("charge.refunded", purchase.stripe_payment_intent_id)
        assert (await post_webhook(client, refund)).status_code == 200
        (reversal_call,) = stand_in.calls("POST", "/v1/transfers/")
        assert reversal_call.path == f"/v1/transfers/{sale.stripe_transfer_id}/reversals"
        assert reversal_call.headers["Idempotency-Key"] == f"reversal-{sale.id}"
        assert (await plugin_row(app, "rush-buy")).install_count == 0

    async def test_a_refund_before_payout_cancels_the_share(
        self, client: httpx.AsyncClient, app: FastAPI, admin: Account, stand_in: StripeStandIn
    ) -> None:
        await publish(client, admin, "unpaid-share", 1500)  # no Connect account
        buyer = await account_on(client, app, BillingTier.POWER)
        response = await client.post("/api/v1/plugins/unpaid-share/install", headers=buyer.headers)
        assert response.status_code == 202
        paid = payment_completed(stand_in, response.json()["checkout_url"])
        assert (await post_webhook(client, paid)).status_code == 200
        (sale,) = await revenue_events(app, "unpaid-share")
        assert sale.transfer_status == "pending"
        (purchase,) = await purchases(app, "unpaid-share")
        dispute = charge_event("charge.dispute.created", purchase.stripe_payment_intent_id)
        assert (await post_webhook(client, dispute)).status_code == 200
        sale = next(r for r in await revenue_events(app, "unpaid-share") if r.amount_cents > 0)
        assert sale.transfer_status == "reversed"
        assert stand_in.calls("POST", "/v1/transfers") == []
