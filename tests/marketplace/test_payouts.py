"""Developer payouts: Stripe Connect onboarding, transfers only to payable accounts, the
supervised retry job with its states in the earnings, one transfer per sale whatever the
retries (the `stripe` client against the stand-in, real signatures)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from app.marketplace.payouts import run_payouts
from app.models import BillingTier
from app.models.base import utcnow
from tests.marketplace.helpers import (
    account_on,
    account_updated,
    manifest,
    onboard,
    payment_completed,
    revenue_events,
)
from tests.support.billing import WEBHOOK_SECRET, StripeStandIn, post_webhook
from tests.support.builders import Account, register, register_admin

pytestmark = pytest.mark.usefixtures("backend")

ADMIN_EMAIL = "payouts-admin@example.com"


async def publish(client: httpx.AsyncClient, admin: Account, plugin_id: str, price: int) -> Account:
    developer = await register(client)
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


async def earnings(client: httpx.AsyncClient, developer: Account) -> dict:
    response = await client.get("/api/v1/plugins/earnings", headers=developer.headers)
    assert response.status_code == 200, response.text
    return response.json()


def payout_states(report: dict) -> dict[str, int]:
    return {line["status"]: line["sales"] for line in report["payouts"]}


class TestLive:
    @pytest.fixture
    def settings_overrides(self, stand_in: StripeStandIn) -> dict[str, object]:
        return {
            "ADMIN_EMAILS": ADMIN_EMAIL,
            "STRIPE_SECRET_KEY": "sk_test_payouts",
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": stand_in.url,
            "PAYOUT_RETRY_INTERVAL_SECONDS": 0,
        }

    @pytest.fixture
    async def admin(self, client: httpx.AsyncClient, app: FastAPI) -> Account:
        return await register_admin(client, app, ADMIN_EMAIL)

    async def sell(
        self, client: httpx.AsyncClient, app: FastAPI, stand_in: StripeStandIn, plugin_id: str
    ) -> None:
        buyer = await account_on(client, app, BillingTier.POWER)
        response = await client.post(f"/api/v1/plugins/{plugin_id}/install", headers=buyer.headers)
        assert response.status_code == 202, response.text
        paid = payment_completed(stand_in, response.json()["checkout_url"])
        assert (await post_webhook(client, paid)).status_code == 200

    async def test_onboarding_and_account_updates(
        self, client: httpx.AsyncClient, stand_in: StripeStandIn, settings
    ) -> None:
        developer = await register(client)
        first = await client.post("/api/v1/developers/connect", headers=developer.headers)
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["payable"] is False and body["mode"] == "live"
        assert body["onboarding_url"].startswith(
            f"https://connect.stripe.test/setup/e/{body['account_id']}/"
        )
        (created,) = stand_in.calls("POST", "/v1/accounts")
        assert created.form["type"] == "express"
        assert created.form["capabilities[transfers][requested]"] == "true"
        assert created.headers["Idempotency-Key"].startswith("connect-account-")
        (link,) = stand_in.calls("POST", "/v1/account_links")
        assert link.form == {
            "account": body["account_id"],
            "refresh_url": settings.STRIPE_CONNECT_REFRESH_URL,
            "return_url": settings.STRIPE_CONNECT_RETURN_URL,
            "type": "account_onboarding",
        }
        # Again: a fresh link for the same account.
        again = (await client.post("/api/v1/developers/connect", headers=developer.headers)).json()
        assert again["account_id"] == body["account_id"]
        assert len(stand_in.calls("POST", "/v1/accounts")) == 1

        now = int(time.time())
        not_yet = account_updated(body["account_id"], payable=False, created=now - 30)
        assert (await post_webhook(client, not_yet)).status_code == 200
        assert (await earnings(client, developer))["payable"] is False
        ready = account_updated(body["account_id"], created=now - 10)
        assert (await post_webhook(client, ready)).status_code == 200
        assert (await earnings(client, developer))["payable"] is True
        # A late, older event does not take it back.
        late = account_updated(body["account_id"], payable=False, created=now - 20)
        assert (await post_webhook(client, late)).status_code == 200
        assert (await earnings(client, developer))["payable"] is True

    async def test_shares_wait_for_a_payable_account_then_the_job_pays_them_once(
        self, client: httpx.AsyncClient, app: FastAPI, admin: Account, stand_in: StripeStandIn
    ) -> None:
        developer = await publish(client, admin, "later-payout", 2000)
        await self.sell(client, app, stand_in, "later-payout")
        await self.sell(client, app, stand_in, "later-payout")
        assert payout_states(await earnings(client, developer)) == {"pending": 2}
        # Not payable: the job sends nothing.
        account_id = await onboard(client, developer, payable=False)
        assert (await run_payouts(app.state.db, app.state.stripe)).attempted == 0
        assert stand_in.calls("POST", "/v1/transfers") == []

        assert (await post_webhook(client, account_updated(account_id))).status_code == 200
        # Two workers' passes at once: each sale is attempted once.
        reports = await asyncio.gather(
            run_payouts(app.state.db, app.state.stripe),
            run_payouts(app.state.db, app.state.stripe),
        )
        assert sum(r.paid for r in reports) == 2
        calls = stand_in.calls("POST", "/v1/transfers")
        sales = await revenue_events(app, "later-payout")
        assert sorted(c.headers["Idempotency-Key"] for c in calls) == sorted(
            f"revenue-{s.id}" for s in sales
        )
        assert {c.form["destination"] for c in calls} == {account_id}
        assert {c.form["amount"] for c in calls} == {"1400"}
        report = await earnings(client, developer)
        assert report["payouts"] == [
            {"status": "paid", "currency": "EUR", "sales": 2, "developer_share_cents": 2800}
        ]
        assert (await run_payouts(app.state.db, app.state.stripe)).attempted == 0

    async def test_failed_transfers_are_retried_and_never_paid_twice(
        self, client: httpx.AsyncClient, app: FastAPI, admin: Account, stand_in: StripeStandIn
    ) -> None:
        developer = await publish(client, admin, "retry-payout", 1000)
        await onboard(client, developer)
        buyer = await account_on(client, app, BillingTier.POWER)
        response = await client.post("/api/v1/plugins/retry-payout/install", headers=buyer.headers)
        assert response.status_code == 202, response.text
        stand_in.fail_with = 500  # Stripe fails the transfer made when the payment lands
        paid = payment_completed(stand_in, response.json()["checkout_url"])
        assert (await post_webhook(client, paid)).status_code == 200
        (sale,) = await revenue_events(app, "retry-payout")
        assert sale.transfer_status == "failed"
        assert sale.transfer_attempts == 1 and sale.next_transfer_at is not None
        assert payout_states(await earnings(client, developer)) == {"failed": 1}
        stand_in.fail_with = None

        # Not due yet: nothing happens.
        assert (await run_payouts(app.state.db, app.state.stripe)).attempted == 0
        # The transfer did go out before the failure was seen (a lost response): the retry
        # finds it by its group and records it instead of paying again.
        key = f"revenue-{sale.id}"
        stand_in.transfers[key] = {
            "id": "tr_went_out",
            "object": "transfer",
            "amount": 700,
            "currency": "eur",
            "destination": "acct_x",
            "transfer_group": key,
        }
        before = len(stand_in.calls("POST", "/v1/transfers"))
        due = utcnow() + timedelta(hours=7)
        report = await run_payouts(app.state.db, app.state.stripe, now=due)
        assert (report.attempted, report.paid) == (1, 1)
        assert len(stand_in.calls("POST", "/v1/transfers")) == before
        (lookup,) = stand_in.calls("GET", "/v1/transfers")
        assert lookup.form["transfer_group"] == key
        (sale,) = await revenue_events(app, "retry-payout")
        assert (sale.transfer_status, sale.stripe_transfer_id) == ("created", "tr_went_out")
        assert payout_states(await earnings(client, developer)) == {"paid": 1}


class TestStub:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        return {"STRIPE_SECRET_KEY": "", "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}

    async def test_stub_onboarding(self, client: httpx.AsyncClient, settings) -> None:
        developer = await register(client)
        response = await client.post("/api/v1/developers/connect", headers=developer.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["account_id"].startswith("acct_stub_") and body["mode"] == "stub"
        assert body["onboarding_url"] == (
            f"{settings.STRIPE_CONNECT_RETURN_URL}?stub_account={body['account_id']}"
        )
        assert (await post_webhook(client, account_updated(body["account_id"]))).status_code == 200
        assert (await earnings(client, developer))["payable"] is True
        assert (await client.post("/api/v1/developers/connect")).status_code == 401
