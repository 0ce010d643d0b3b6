"""Live mode: the real `stripe` client talks to a local HTTP stand-in for the Stripe API."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from fastapi import FastAPI

from app.models import MembershipRole
from app.tenants.repository import TenantRepository
from tests.support.billing import (
    WEBHOOK_SECRET,
    StripeStandIn,
    checkout_completed,
    post_webhook,
)
from tests.support.builders import register

pytestmark = pytest.mark.usefixtures("backend")

SECRET_KEY = "sk_test_standin_0123456789"


@pytest.fixture
def settings_overrides(stand_in: StripeStandIn) -> dict[str, object]:
    return {
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": stand_in.url,
    }


async def test_checkout_creates_a_stripe_session(
    client: httpx.AsyncClient, stand_in: StripeStandIn, settings
) -> None:
    account = await register(client)
    profile = (await client.get("/api/v1/auth/me", headers=account.headers)).json()
    response = await client.post(
        "/api/v1/billing/checkout", json={"tier": "power"}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "live"
    assert body["checkout_url"] == f"https://checkout.stripe.test/c/pay/{body['session_id']}"

    (call,) = stand_in.calls("POST", "/v1/checkout/sessions")
    assert call.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    form = call.form
    assert form["mode"] == "subscription"
    assert form["line_items[0][price]"] == settings.STRIPE_PRICE_POWER
    assert form["line_items[0][quantity]"] == "1"
    assert form["client_reference_id"] == profile["tenant_id"]
    assert form["metadata[tenant_id]"] == profile["tenant_id"]
    assert form["metadata[user_id]"] == profile["id"]
    assert form["metadata[tier]"] == "power"
    assert form["subscription_data[metadata][tenant_id]"] == profile["tenant_id"]
    assert form["success_url"] == settings.STRIPE_SUCCESS_URL
    assert form["cancel_url"] == settings.STRIPE_CANCEL_URL
    assert form["customer_email"] == account.email


async def test_team_checkout_is_priced_per_seat(
    client: httpx.AsyncClient, app: FastAPI, stand_in: StripeStandIn, settings
) -> None:
    owner = await register(client)
    member = await register(client)
    owner_profile = (await client.get("/api/v1/auth/me", headers=owner.headers)).json()
    member_id = (await client.get("/api/v1/auth/me", headers=member.headers)).json()["id"]
    async with app.state.db.sessionmaker() as session:
        await TenantRepository(session).add_member(
            uuid.UUID(owner_profile["tenant_id"]), uuid.UUID(member_id), MembershipRole.MEMBER
        )
        await session.commit()
    response = await client.post(
        "/api/v1/billing/checkout", json={"tier": "team"}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    (call,) = stand_in.calls("POST", "/v1/checkout/sessions")
    assert call.form["line_items[0][price]"] == settings.STRIPE_PRICE_TEAM
    assert call.form["line_items[0][quantity]"] == "2"


async def test_cancel_goes_through_stripe_then_back_to_free(
    client: httpx.AsyncClient, stand_in: StripeStandIn
) -> None:
    account = await register(client)
    profile = (await client.get("/api/v1/auth/me", headers=account.headers)).json()
    payload = checkout_completed(
        uuid.UUID(profile["tenant_id"]),
        profile["id"],
        "pro",
        subscription="sub_live_42",
        customer="cus_live_42",
        created=int(time.time()) - 60,
    )
    assert (await post_webhook(client, payload)).status_code == 200

    response = await client.delete("/api/v1/billing/subscription", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json()["tier"] == "free"
    assert [c.path for c in stand_in.calls("DELETE", "/v1/subscriptions/")] == [
        "/v1/subscriptions/sub_live_42"
    ]
    me = (await client.get("/api/v1/auth/me", headers=account.headers)).json()
    assert me["tier"] == "free"

    # Subscribing again reuses the Stripe customer.
    response = await client.post(
        "/api/v1/billing/checkout", json={"tier": "power"}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    assert stand_in.calls("POST", "/v1/checkout/sessions")[-1].form["customer"] == "cus_live_42"


async def test_stripe_outage_is_503_and_changes_nothing(
    client: httpx.AsyncClient, stand_in: StripeStandIn
) -> None:
    account = await register(client)
    profile = (await client.get("/api/v1/auth/me", headers=account.headers)).json()
    payload = checkout_completed(
        uuid.UUID(profile["tenant_id"]), profile["id"], "pro", created=int(time.time()) - 60
    )
    assert (await post_webhook(client, payload)).status_code == 200

    stand_in.fail_with = 500
    response = await client.post(
        "/api/v1/billing/checkout", json={"tier": "power"}, headers=account.headers
    )
    assert response.status_code == 503
    assert response.json()["error"] == "payment_provider_unavailable"
    assert SECRET_KEY not in response.text
    response = await client.delete("/api/v1/billing/subscription", headers=account.headers)
    assert response.status_code == 503
    me = (await client.get("/api/v1/auth/me", headers=account.headers)).json()
    assert me["tier"] == "pro"
