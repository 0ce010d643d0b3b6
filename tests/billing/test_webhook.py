"""Stub mode (no Stripe key) and the signed webhook: effects, signatures, idempotency, ordering."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.billing.stripe_client import InvalidWebhook, StripeGateway, WebhookNotConfigured
from app.models import BillingTier, MembershipRole, ProcessedStripeEvent, Subscription
from app.tenants.repository import TenantRepository
from tests.support.billing import (
    WEBHOOK_SECRET,
    checkout_completed,
    post_webhook,
    sign,
    stripe_event,
)
from tests.support.builders import Account, register, tenant_id_of

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"STRIPE_SECRET_KEY": "", "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}


def subscription_event(
    event_type: str,
    tenant_id: uuid.UUID,
    price: str,
    *,
    created: int,
    status: str = "active",
    subscription: str = "sub_1",
) -> str:
    return stripe_event(
        event_type,
        {
            "id": subscription,
            "object": "subscription",
            "customer": "cus_1",
            "status": status,
            "metadata": {"tenant_id": str(tenant_id)},
            "items": {
                "object": "list",
                "data": [{"price": {"id": price}, "current_period_end": created + 30 * 86400}],
            },
        },
        created=created,
    )


async def subscription_row(app: FastAPI, tenant_id: uuid.UUID) -> Subscription:
    async with app.state.db.sessionmaker() as session:
        row = await session.scalar(select(Subscription).where(Subscription.tenant_id == tenant_id))
        assert row is not None
        return row


async def processed_count(app: FastAPI) -> int:
    async with app.state.db.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(ProcessedStripeEvent)))


async def me(client: httpx.AsyncClient, account: Account) -> httpx.Response:
    response = await client.get("/api/v1/auth/me", headers=account.headers)
    assert response.status_code == 200, response.text
    return response


async def upgraded(client: httpx.AsyncClient, tier: str = "pro") -> tuple[Account, uuid.UUID]:
    account = await register(client)
    profile = (await me(client, account)).json()
    tenant_id = uuid.UUID(profile["tenant_id"])
    payload = checkout_completed(tenant_id, profile["id"], tier, created=int(time.time()) - 100)
    response = await post_webhook(client, payload)
    assert response.status_code == 200, response.text
    return account, tenant_id


async def test_stub_checkout_returns_a_stub_url(client: httpx.AsyncClient, settings) -> None:
    account = await register(client)
    response = await client.post(
        "/api/v1/billing/checkout", json={"tier": "pro"}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "stub"
    assert body["checkout_url"].startswith(f"{settings.STRIPE_SUCCESS_URL}?stub_session=cs_stub_")
    assert body["session_id"] in body["checkout_url"]


async def test_checkout_refuses_free_and_anonymous(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.post(
        "/api/v1/billing/checkout", json={"tier": "free"}, headers=account.headers
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    response = await client.post("/api/v1/billing/checkout", json={"tier": "pro"})
    assert response.status_code == 401


async def test_free_checkout_webhook_pro_cancel_free(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    profile = (await me(client, account)).json()
    assert profile["tier"] == "free"
    free_limit = (await me(client, account)).headers.get("RateLimit-Limit")
    assert free_limit == str(app.state.tiers.rate_per_minute(BillingTier.FREE))

    checkout = await client.post(
        "/api/v1/billing/checkout", json={"tier": "pro"}, headers=account.headers
    )
    assert checkout.status_code == 200
    tenant_id = uuid.UUID(profile["tenant_id"])
    response = await post_webhook(client, checkout_completed(tenant_id, profile["id"], "pro"))
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "duplicate": False}

    # The very next request of that user sees the new tier and its rate limit.
    after = await me(client, account)
    assert after.json()["tier"] == "pro"
    assert after.headers["RateLimit-Limit"] == str(app.state.tiers.rate_per_minute(BillingTier.PRO))
    subscription = (
        await client.get("/api/v1/billing/subscription", headers=account.headers)
    ).json()
    assert subscription["tier"] == "pro"
    assert subscription["status"] == "active"
    assert subscription["stripe_subscription_id"] == "sub_1"
    assert subscription["stripe_customer_id"] == "cus_1"
    assert subscription["seats"] == 1
    assert subscription["mode"] == "stub"

    cancel = await client.delete("/api/v1/billing/subscription", headers=account.headers)
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["tier"] == "free"
    assert cancel.json()["status"] == "canceled"
    assert cancel.json()["stripe_subscription_id"] is None
    assert (await me(client, account)).json()["tier"] == "free"


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(None, id="missing"),
        pytest.param("t=1,v1=deadbeef", id="garbage"),
        pytest.param("wrong-secret", id="wrong-secret"),
        pytest.param("expired", id="expired"),
        pytest.param("tampered", id="tampered"),
    ],
)
async def test_bad_signatures_are_refused_without_effect(
    client: httpx.AsyncClient, app: FastAPI, signature: str | None
) -> None:
    account = await register(client)
    tenant_id = await tenant_id_of(client, account)
    payload = checkout_completed(tenant_id, str(uuid.uuid4()), "power")
    if signature == "wrong-secret":
        signature = sign(payload, secret="whsec_someone_else")
    elif signature == "expired":
        signature = sign(payload, timestamp=int(time.time()) - 301)
    elif signature == "tampered":
        signature = sign(payload.replace('"power"', '"team"'))
    response = await post_webhook(client, payload, signature)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_webhook"
    assert set(body) >= {"error", "message", "request_id"}
    assert WEBHOOK_SECRET not in response.text
    assert (await me(client, account)).json()["tier"] == "free"
    assert await processed_count(app) == 0


async def test_signature_within_tolerance_is_accepted(client: httpx.AsyncClient) -> None:
    account = await register(client)
    profile = (await me(client, account)).json()
    payload = checkout_completed(uuid.UUID(profile["tenant_id"]), profile["id"], "power")
    response = await post_webhook(client, payload, sign(payload, timestamp=int(time.time()) - 200))
    assert response.status_code == 200
    assert (await me(client, account)).json()["tier"] == "power"


def test_without_a_configured_secret_only_the_stub_can_sign(app: FastAPI) -> None:
    settings = app.state.settings
    payload = stripe_event("invoice.payment_failed", {"customer": "cus_1"})
    # Live mode without a secret: nothing can be verified, the webhook answers 503.
    live = StripeGateway(
        settings.model_copy(update={"STRIPE_SECRET_KEY": "sk_test_1", "STRIPE_WEBHOOK_SECRET": ""})
    )
    with pytest.raises(WebhookNotConfigured):
        live.construct_event(payload.encode(), sign(payload))
    # Stub mode without one: the stub Checkout signs with a secret of this process only.
    stub = StripeGateway(
        settings.model_copy(update={"STRIPE_SECRET_KEY": "", "STRIPE_WEBHOOK_SECRET": ""})
    )
    with pytest.raises(InvalidWebhook):
        stub.construct_event(payload.encode(), sign(payload))
    event = stub.construct_event(payload.encode(), stub.stub_signature(payload.encode()))
    assert event["type"] == "invoice.payment_failed"


async def test_duplicate_event_takes_effect_once(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await register(client)
    profile = (await me(client, account)).json()
    tenant_id = uuid.UUID(profile["tenant_id"])
    payload = checkout_completed(tenant_id, profile["id"], "pro", event_id="evt_once")
    first = await post_webhook(client, payload)
    assert first.json() == {"received": True, "duplicate": False}

    # The tenant moves on (canceled); replaying the old event must not re-upgrade it.
    assert (await client.delete("/api/v1/billing/subscription", headers=account.headers)).is_success
    again = await post_webhook(client, payload)
    assert again.status_code == 200
    assert again.json() == {"received": True, "duplicate": True}
    assert (await me(client, account)).json()["tier"] == "free"
    assert await processed_count(app) == 1


async def test_simultaneous_copies_take_effect_once(
    client: httpx.AsyncClient, app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    _, tenant_id = await upgraded(client)
    payload = stripe_event(
        "invoice.payment_failed",
        {"id": "in_1", "object": "invoice", "customer": "cus_1", "subscription": "sub_1"},
    )
    signature = sign(payload)
    with caplog.at_level(logging.WARNING, logger="app.billing.service"):
        responses = await asyncio.gather(
            *(post_webhook(client, payload, signature) for _ in range(6))
        )
    assert [r.status_code for r in responses] == [200] * 6
    assert sorted(r.json()["duplicate"] for r in responses) == [False] + [True] * 5
    notices = [r for r in caplog.records if "payment failed" in r.getMessage()]
    assert len(notices) == 1
    assert str(tenant_id) in notices[0].getMessage()
    assert await processed_count(app) == 2  # the checkout event and this one


@pytest.mark.parametrize("newer_first", [True, False], ids=["newer-first", "older-first"])
async def test_out_of_order_updates_keep_the_newest(
    client: httpx.AsyncClient, app: FastAPI, settings, newer_first: bool
) -> None:
    account, tenant_id = await upgraded(client)
    now = int(time.time())
    older = subscription_event(
        "customer.subscription.updated", tenant_id, settings.STRIPE_PRICE_PRO, created=now - 10
    )
    newer = subscription_event(
        "customer.subscription.updated", tenant_id, settings.STRIPE_PRICE_POWER, created=now - 5
    )
    for payload in (newer, older) if newer_first else (older, newer):
        response = await post_webhook(client, payload)
        assert response.status_code == 200
    assert (await me(client, account)).json()["tier"] == "power"
    row = await subscription_row(app, tenant_id)
    assert row.stripe_event_created == now - 5
    assert row.current_period_end is not None


async def test_stale_update_after_deletion_does_not_resurrect(
    client: httpx.AsyncClient, settings
) -> None:
    account, tenant_id = await upgraded(client)
    now = int(time.time())
    deleted = subscription_event(
        "customer.subscription.deleted",
        tenant_id,
        settings.STRIPE_PRICE_PRO,
        created=now,
        status="canceled",
    )
    stale = subscription_event(
        "customer.subscription.updated", tenant_id, settings.STRIPE_PRICE_TEAM, created=now - 30
    )
    assert (await post_webhook(client, deleted)).status_code == 200
    assert (await post_webhook(client, stale)).status_code == 200
    assert (await me(client, account)).json()["tier"] == "free"


async def test_subscription_deleted_returns_to_free(client: httpx.AsyncClient, settings) -> None:
    account, tenant_id = await upgraded(client, "team")
    assert (await me(client, account)).json()["tier"] == "team"
    payload = subscription_event(
        "customer.subscription.deleted",
        tenant_id,
        settings.STRIPE_PRICE_TEAM,
        created=int(time.time()),
        status="canceled",
    )
    assert (await post_webhook(client, payload)).status_code == 200
    body = (await client.get("/api/v1/billing/subscription", headers=account.headers)).json()
    assert body["tier"] == "free"
    assert body["status"] == "canceled"
    assert body["stripe_subscription_id"] is None


async def test_event_for_another_subscription_changes_nothing(
    client: httpx.AsyncClient, settings
) -> None:
    account, tenant_id = await upgraded(client)
    payload = subscription_event(
        "customer.subscription.deleted",
        tenant_id,
        settings.STRIPE_PRICE_PRO,
        created=int(time.time()),
        status="canceled",
        subscription="sub_old_one",
    )
    assert (await post_webhook(client, payload)).status_code == 200
    assert (await me(client, account)).json()["tier"] == "pro"


async def test_payment_failed_marks_past_due_and_notifies(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    account, tenant_id = await upgraded(client)
    payload = stripe_event(
        "invoice.payment_failed",
        {
            "id": "in_2",
            "object": "invoice",
            "customer": "cus_1",
            "parent": {"subscription_details": {"subscription": "sub_1"}},
        },
    )
    with caplog.at_level(logging.WARNING, logger="app.billing.service"):
        assert (await post_webhook(client, payload)).status_code == 200
    body = (await client.get("/api/v1/billing/subscription", headers=account.headers)).json()
    assert body["status"] == "past_due"
    assert body["tier"] == "pro"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(tenant_id) in r.getMessage() for r in warnings)


async def test_unknown_and_unmatched_events_are_acknowledged(client: httpx.AsyncClient) -> None:
    account = await register(client)
    unknown = stripe_event("customer.created", {"id": "cus_9", "object": "customer"})
    assert (await post_webhook(client, unknown)).json()["duplicate"] is False
    orphan = stripe_event("invoice.payment_failed", {"id": "in_9", "customer": "cus_nobody"})
    assert (await post_webhook(client, orphan)).status_code == 200
    bad_tenant = stripe_event(
        "checkout.session.completed",
        {"client_reference_id": "not-a-uuid", "metadata": {"tier": "pro"}},
    )
    assert (await post_webhook(client, bad_tenant)).status_code == 200
    assert (await me(client, account)).json()["tier"] == "free"


async def test_team_seats_are_the_tenant_members(client: httpx.AsyncClient, app: FastAPI) -> None:
    account, tenant_id = await upgraded(client, "team")
    other = await register(client)
    other_id = uuid.UUID((await me(client, other)).json()["id"])
    async with app.state.db.sessionmaker() as session:
        await TenantRepository(session).add_member(tenant_id, other_id, MembershipRole.MEMBER)
        await session.commit()
    body = (await client.get("/api/v1/billing/subscription", headers=account.headers)).json()
    assert body["seats"] == 2
    assert body["rate_limit_per_minute"] == app.state.tiers.rate_per_minute(BillingTier.TEAM, 2)
    assert body["rate_limit_per_minute"] == 2 * app.state.tiers[BillingTier.TEAM].rate_per_minute


async def test_members_see_but_do_not_manage_billing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner, tenant_id = await upgraded(client, "team")
    member = await register(client)
    member_id = (await me(client, member)).json()["id"]
    async with app.state.db.sessionmaker() as session:
        await TenantRepository(session).add_member(
            tenant_id, uuid.UUID(member_id), MembershipRole.MEMBER
        )
        await session.commit()
    codec = app.state.token_codec
    token = codec.encode("access", member_id, codec.access_ttl, tid=str(tenant_id), ver=0).token
    headers = {"Authorization": f"Bearer {token}"}

    body = (await client.get("/api/v1/billing/subscription", headers=headers)).json()
    assert body["tier"] == "team" and body["tenant_id"] == str(tenant_id)
    for method, path, kwargs in [
        ("POST", "/api/v1/billing/checkout", {"json": {"tier": "power"}}),
        ("DELETE", "/api/v1/billing/subscription", {}),
    ]:
        response = await client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "billing_role_required"
    assert (await me(client, owner)).json()["tier"] == "team"


async def test_canceling_nothing_is_a_no_op(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.delete("/api/v1/billing/subscription", headers=account.headers)
    assert response.status_code == 200
    assert response.json()["tier"] == "free"
    assert response.json()["status"] == "active"


# --- values no real event carries ----------------------------------------------------------
async def test_signature_from_the_future_is_refused(
    client: httpx.AsyncClient, app: FastAPI, settings
) -> None:
    account = await register(client)
    profile = (await me(client, account)).json()
    payload = checkout_completed(uuid.UUID(profile["tenant_id"]), profile["id"], "power")
    year_ahead = int(time.time()) + 365 * 86400
    response = await post_webhook(client, payload, sign(payload, timestamp=year_ahead))
    assert response.status_code == 400 and response.json()["error"] == "invalid_webhook"
    assert (await me(client, account)).json()["tier"] == "free"
    assert await processed_count(app) == 0
    # A sender's clock a little ahead is within the tolerance.
    ahead = int(time.time()) + settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS // 2
    assert (await post_webhook(client, payload, sign(payload, timestamp=ahead))).status_code == 200
    assert (await me(client, account)).json()["tier"] == "power"


async def test_an_event_from_the_future_cannot_freeze_the_subscription(
    client: httpx.AsyncClient, app: FastAPI, settings
) -> None:
    account, tenant_id = await upgraded(client)
    far_future = int(time.time()) + 10 * 365 * 86400
    future = subscription_event(
        "customer.subscription.updated", tenant_id, settings.STRIPE_PRICE_POWER, created=far_future
    )
    assert (await post_webhook(client, future)).status_code == 200
    row = await subscription_row(app, tenant_id)
    assert row.stripe_event_created is not None and row.stripe_event_created <= time.time()
    # The next real event still applies.
    later = subscription_event(
        "customer.subscription.updated",
        tenant_id,
        settings.STRIPE_PRICE_TEAM,
        created=int(time.time()) + 1,
    )
    assert (await post_webhook(client, later)).status_code == 200
    assert (await me(client, account)).json()["tier"] == "team"


@pytest.mark.parametrize(
    ("created", "status"),
    [
        pytest.param(2**70, "past_due", id="beyond-bigint-counts-as-now"),
        pytest.param(-(2**70), "active", id="below-bigint-counts-as-oldest"),
        pytest.param(1e400, "active", id="infinite-counts-as-oldest"),
    ],
)
async def test_out_of_range_created_is_harmless(
    client: httpx.AsyncClient, app: FastAPI, created: object, status: str
) -> None:
    _, tenant_id = await upgraded(client)
    payload = json.loads(stripe_event("invoice.payment_failed", {"customer": "cus_1"}))
    payload["created"] = created
    response = await post_webhook(client, json.dumps(payload))
    assert response.status_code == 200, response.text
    assert (await subscription_row(app, tenant_id)).status == status


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"current_period_end": 10**20}, id="period-end-beyond-year-9999"),
        pytest.param({"current_period_end": 1e400}, id="period-end-infinite"),
        pytest.param({"customer": "cus_" + "x" * 300}, id="customer-id-too-long"),
        pytest.param({"id": "sub_" + "x" * 300}, id="subscription-id-too-long"),
        pytest.param({"customer": "cus_\x00"}, id="nul-in-an-id"),
        pytest.param({"status": "active\ud800"}, id="lone-surrogate"),
        pytest.param({"event_id": "evt_" + "x" * 300}, id="event-id-too-long"),
        pytest.param({"event_id": "evt_\x00"}, id="nul-in-the-event-id"),
    ],
)
async def test_out_of_range_values_are_400_and_change_nothing(
    client: httpx.AsyncClient, app: FastAPI, settings, change: dict
) -> None:
    account, tenant_id = await upgraded(client)
    before = await processed_count(app)
    change = dict(change)
    event_id = change.pop("event_id", None)
    obj = json.loads(
        subscription_event(
            "customer.subscription.updated",
            tenant_id,
            settings.STRIPE_PRICE_POWER,
            created=int(time.time()),
        )
    )
    obj["data"]["object"].update(change)
    if event_id is not None:
        obj["id"] = event_id
    response = await post_webhook(client, json.dumps(obj))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_webhook"
    assert (await me(client, account)).json()["tier"] == "pro"
    assert await processed_count(app) == before


async def test_stub_portal_and_cancel_at_period_end(client: httpx.AsyncClient, settings) -> None:
    account, _ = await upgraded(client, "pro")
    response = await client.post("/api/v1/billing/portal", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "url": f"{settings.STRIPE_PORTAL_RETURN_URL}?stub_portal=cus_1",
        "mode": "stub",
    }
    response = await client.delete(
        "/api/v1/billing/subscription", params={"at_period_end": "true"}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    assert (response.json()["tier"], response.json()["cancel_at_period_end"]) == ("pro", True)
    # A plan change in stub mode: in place, no Checkout.
    response = await client.post(
        "/api/v1/billing/checkout", json={"tier": "power"}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["action"], body["checkout_url"]) == ("upgraded", None)
    assert body["subscription"]["cancel_at_period_end"] is False


async def test_stub_subscription_checkout_completes_through_the_signed_webhook(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    other = await register(client)
    checkout = await client.post(
        "/api/v1/billing/checkout", json={"tier": "power"}, headers=account.headers
    )
    session_id = checkout.json()["session_id"]
    url = f"/api/v1/billing/stub-checkout/{session_id}"
    assert (await client.post(url, headers=other.headers)).status_code == 404
    response = await client.post(url, headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "duplicate": False}
    state = (await client.get("/api/v1/billing/subscription", headers=account.headers)).json()
    assert state["tier"] == "power"
    assert state["stripe_subscription_id"].startswith("sub_stub_")
    # The Checkout is spent: completing it again finds nothing.
    assert (await client.post(url, headers=account.headers)).status_code == 404
