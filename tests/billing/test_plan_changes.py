"""Plan changes through the `stripe` client against the local stand-in: one live
subscription per workspace (also under concurrent checkouts), changes in place,
cancellation at the period end, the customer portal, and credits that follow the plan."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from fastapi import FastAPI

from tests.support.billing import (
    WEBHOOK_SECRET,
    StripeStandIn,
    checkout_completed,
    post_webhook,
    stripe_event,
)
from tests.support.builders import Account, register

pytestmark = pytest.mark.usefixtures("backend")

SECRET_KEY = "sk_test_standin_0123456789"


@pytest.fixture
def settings_overrides(stand_in: StripeStandIn) -> dict[str, object]:
    return {
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": stand_in.url,
    }


async def subscribed(
    client: httpx.AsyncClient, tier: str = "pro", subscription: str | None = None
) -> tuple[Account, uuid.UUID, str]:
    """A workspace whose Checkout for `tier` completed (Stripe's signed webhook)."""
    account = await register(client)
    profile = (await client.get("/api/v1/auth/me", headers=account.headers)).json()
    tenant_id = uuid.UUID(profile["tenant_id"])
    subscription = subscription or f"sub_{uuid.uuid4().hex[:10]}"
    payload = checkout_completed(
        tenant_id,
        profile["id"],
        tier,
        subscription=subscription,
        customer=f"cus_{uuid.uuid4().hex[:10]}",
        created=int(time.time()) - 60,
    )
    response = await post_webhook(client, payload)
    assert response.status_code == 200, response.text
    return account, tenant_id, subscription


async def checkout(client: httpx.AsyncClient, account: Account, tier: str) -> httpx.Response:
    return await client.post(
        "/api/v1/billing/checkout", json={"tier": tier}, headers=account.headers
    )


async def credits(client: httpx.AsyncClient, account: Account) -> dict:
    response = await client.get("/api/v1/credits?limit=100", headers=account.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    # The ledger sums to the balance.
    assert body["total"] == len(body["entries"])
    assert sum(entry["delta"] for entry in body["entries"]) == body["balance"]
    return body


async def test_concurrent_checkouts_open_one_stripe_checkout(
    client: httpx.AsyncClient, stand_in: StripeStandIn
) -> None:
    account = await register(client)
    responses = await asyncio.gather(*(checkout(client, account, "pro") for _ in range(6)))

    sessions = stand_in.calls("POST", "/v1/checkout/sessions")
    assert len(sessions) == 1
    assert int(sessions[0].form["expires_at"]) > time.time() + 29 * 60
    ok = [r.json() for r in responses if r.status_code == 200]
    refused = [r.json() for r in responses if r.status_code != 200]
    assert ok, [r.text for r in responses]
    # Every caller that got a Checkout got the same one; the rest were told it is open.
    assert {body["session_id"] for body in ok} == {ok[0]["session_id"]}
    assert all(body["action"] == "checkout" for body in ok)
    assert all(body["error"] == "checkout_in_progress" for body in refused)

    # The same tier again returns the open Checkout; another tier waits for it.
    again = await checkout(client, account, "pro")
    assert again.status_code == 200
    assert again.json()["checkout_url"] == ok[0]["checkout_url"]
    other = await checkout(client, account, "power")
    assert other.status_code == 409
    assert other.json()["error"] == "checkout_in_progress"
    assert len(stand_in.calls("POST", "/v1/checkout/sessions")) == 1


async def test_upgrade_and_downgrade_change_the_live_subscription_in_place(
    client: httpx.AsyncClient, app: FastAPI, stand_in: StripeStandIn, settings
) -> None:
    account, _, subscription = await subscribed(client, "pro")
    before = await credits(client, account)
    assert before["balance"] == settings.CREDIT_MONTHLY_GRANT_PRO

    response = await checkout(client, account, "power")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["action"] == "upgraded"
    assert body["checkout_url"] is None
    assert body["subscription"]["tier"] == "power"
    assert body["subscription"]["stripe_subscription_id"] == subscription
    assert stand_in.calls("POST", "/v1/checkout/sessions") == []
    (update,) = stand_in.calls("POST", f"/v1/subscriptions/{subscription}")
    assert update.form["items[0][id]"] == f"si_{subscription}"
    assert update.form["items[0][price]"] == settings.STRIPE_PRICE_POWER
    assert update.form["proration_behavior"] == "always_invoice"

    # The upgrade tops the balance up to the power grant, with its own ledger row.
    after = await credits(client, account)
    assert after["balance"] == settings.CREDIT_MONTHLY_GRANT_POWER
    top_up = after["entries"][0]
    assert top_up["reason"] == "plan_upgrade"
    assert (
        top_up["delta"] == settings.CREDIT_MONTHLY_GRANT_POWER - settings.CREDIT_MONTHLY_GRANT_PRO
    )

    # A downgrade is prorated as a credit and takes no credits back.
    response = await checkout(client, account, "pro")
    assert response.status_code == 200, response.text
    assert response.json()["action"] == "downgraded"
    assert response.json()["subscription"]["tier"] == "pro"
    downgrade = stand_in.calls("POST", f"/v1/subscriptions/{subscription}")[-1]
    assert downgrade.form["items[0][price]"] == settings.STRIPE_PRICE_PRO
    assert downgrade.form["proration_behavior"] == "create_prorations"
    assert (await credits(client, account))["balance"] == settings.CREDIT_MONTHLY_GRANT_POWER

    # Up again in the same period: the power grant was given already, nothing more.
    assert (await checkout(client, account, "power")).json()["action"] == "upgraded"
    final = await credits(client, account)
    assert final["balance"] == settings.CREDIT_MONTHLY_GRANT_POWER
    assert [e["reason"] for e in final["entries"]].count("plan_upgrade") == 1

    # Still the one subscription; the same tier again is a conflict.
    same = await checkout(client, account, "power")
    assert same.status_code == 409
    assert same.json()["error"] == "already_subscribed"
    assert stand_in.calls("POST", "/v1/checkout/sessions") == []


async def test_concurrent_plan_changes_never_start_a_second_subscription(
    client: httpx.AsyncClient, stand_in: StripeStandIn, settings
) -> None:
    account, _, subscription = await subscribed(client, "pro")
    responses = await asyncio.gather(*(checkout(client, account, "power") for _ in range(5)))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and set(statuses) <= {200, 409}, [r.text for r in responses]
    assert stand_in.calls("POST", "/v1/checkout/sessions") == []
    paths = {c.path for c in stand_in.calls("POST", "/v1/subscriptions/")}
    assert paths == {f"/v1/subscriptions/{subscription}"}
    state = (await client.get("/api/v1/billing/subscription", headers=account.headers)).json()
    assert state["tier"] == "power"
    assert state["stripe_subscription_id"] == subscription
    body = await credits(client, account)
    assert body["balance"] == settings.CREDIT_MONTHLY_GRANT_POWER
    assert [e["reason"] for e in body["entries"]].count("plan_upgrade") == 1


async def test_a_second_completed_subscription_is_canceled(
    client: httpx.AsyncClient, stand_in: StripeStandIn
) -> None:
    account, tenant_id, subscription = await subscribed(client, "pro")
    profile = (await client.get("/api/v1/auth/me", headers=account.headers)).json()
    payload = checkout_completed(
        tenant_id, profile["id"], "power", subscription="sub_second", customer="cus_other"
    )
    assert (await post_webhook(client, payload)).status_code == 200
    assert [c.path for c in stand_in.calls("DELETE", "/v1/subscriptions/")] == [
        "/v1/subscriptions/sub_second"
    ]
    state = (await client.get("/api/v1/billing/subscription", headers=account.headers)).json()
    assert state["tier"] == "pro"
    assert state["stripe_subscription_id"] == subscription


async def test_cancel_at_period_end_keeps_the_tier_until_stripe_ends_it(
    client: httpx.AsyncClient, stand_in: StripeStandIn, settings
) -> None:
    account, tenant_id, subscription = await subscribed(client, "power")
    response = await client.delete(
        "/api/v1/billing/subscription?at_period_end=true", headers=account.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["tier"] == "power"
    assert response.json()["cancel_at_period_end"] is True
    (call,) = stand_in.calls("POST", f"/v1/subscriptions/{subscription}")
    assert call.form == {"cancel_at_period_end": "true"}
    assert stand_in.calls("DELETE", "/v1/subscriptions/") == []

    # A checkout for the same tier withdraws the cancellation.
    resumed = await checkout(client, account, "power")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["action"] == "resumed"
    assert resumed.json()["subscription"]["cancel_at_period_end"] is False
    assert stand_in.calls("POST", f"/v1/subscriptions/{subscription}")[-1].form == {
        "cancel_at_period_end": "false"
    }

    # At the period end Stripe deletes it: back to free, nothing clawed back.
    balance = (await credits(client, account))["balance"]
    deleted = stripe_event(
        "customer.subscription.deleted",
        {
            "id": subscription,
            "object": "subscription",
            "status": "canceled",
            "metadata": {"tenant_id": str(tenant_id)},
        },
    )
    assert (await post_webhook(client, deleted)).status_code == 200
    state = (await client.get("/api/v1/billing/subscription", headers=account.headers)).json()
    assert state["tier"] == "free"
    assert state["cancel_at_period_end"] is False
    assert (await credits(client, account))["balance"] == balance


async def test_portal_link_for_a_subscribed_workspace(
    client: httpx.AsyncClient, stand_in: StripeStandIn, settings
) -> None:
    newcomer = await register(client)
    response = await client.post("/api/v1/billing/portal", headers=newcomer.headers)
    assert response.status_code == 409
    assert response.json()["error"] == "no_billing_account"

    account, _, _ = await subscribed(client, "pro")
    customer = (await client.get("/api/v1/billing/subscription", headers=account.headers)).json()[
        "stripe_customer_id"
    ]
    response = await client.post("/api/v1/billing/portal", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json()["url"].startswith("https://billing.stripe.test/p/session/")
    (call,) = stand_in.calls("POST", "/v1/billing_portal/sessions")
    assert call.form == {"customer": customer, "return_url": settings.STRIPE_PORTAL_RETURN_URL}


async def test_subscription_lists_the_tier_features(client: httpx.AsyncClient) -> None:
    account, _, _ = await subscribed(client, "team")
    state = (await client.get("/api/v1/billing/subscription", headers=account.headers)).json()
    assert "sso" in state["features"]
    assert "plugin_marketplace" in state["features"]
    free = await register(client)
    state = (await client.get("/api/v1/billing/subscription", headers=free.headers)).json()
    assert state["features"] == []
