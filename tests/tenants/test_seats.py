"""Seats (active members) set the team subscription's quantity at Stripe, with proration."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from app.billing import seats
from tests.mail.support import SMTPServer, smtp_server
from tests.support.billing import WEBHOOK_SECRET, checkout_completed, post_webhook
from tests.support.builders import register
from tests.tenants.stripe_seats import SeatStandIn, seat_stand_in
from tests.tenants.support import API, create_team, join, user_id_of

__all__ = ["smtp_server"]


@pytest.fixture
def stripe_seats() -> Iterator[SeatStandIn]:
    with seat_stand_in() as server:
        yield server


@pytest.fixture
def settings_overrides(smtp_server: SMTPServer, stripe_seats: SeatStandIn) -> dict[str, object]:
    return {
        **smtp_server.settings,
        "STRIPE_SECRET_KEY": "sk_test_seats_0123456789",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": stripe_seats.url,
    }


async def subscribe_team(client, tenant_id: uuid.UUID, user_id: str, subscription: str) -> None:
    payload = checkout_completed(tenant_id, user_id, "team", subscription=subscription)
    response = await post_webhook(client, payload)
    assert response.status_code == 200, response.text


async def test_members_joining_and_leaving_set_the_quantity(app, client, smtp_server, stripe_seats):
    owner = await register(client)
    team = await create_team(client, owner)
    subscription = f"sub_{uuid.uuid4().hex[:10]}"
    stripe_seats.subscription(subscription, quantity=1)
    await subscribe_team(client, team, await user_id_of(client, owner), subscription)

    member = await join(app, client, smtp_server, owner, team)
    await app.state.seat_sync.join()
    assert stripe_seats.updates == [{"quantity": "2", "proration_behavior": "create_prorations"}]

    await join(app, client, smtp_server, owner, team)
    member_id = await user_id_of(client, member)
    removed = await client.delete(
        f"{API}/tenants/{team}/members/{member_id}", headers=owner.headers
    )
    assert removed.status_code == 204
    await app.state.seat_sync.join()
    assert stripe_seats.quantities[f"si_{subscription}"] == 2
    assert [u["quantity"] for u in stripe_seats.updates] == ["2", "3", "2"]


async def test_no_call_without_a_team_subscription(app, client, smtp_server, stripe_seats):
    owner = await register(client)
    team = await create_team(client, owner)  # free tier: nothing billed per seat
    await join(app, client, smtp_server, owner, team)
    await app.state.seat_sync.join()
    assert stripe_seats.updates == []


async def test_a_failed_update_is_retried(app, client, smtp_server, stripe_seats, monkeypatch):
    monkeypatch.setattr(seats, "RETRY_DELAYS", (0.01, 0.01))
    owner = await register(client)
    team = await create_team(client, owner)
    subscription = f"sub_{uuid.uuid4().hex[:10]}"
    stripe_seats.subscription(subscription, quantity=1)
    await subscribe_team(client, team, await user_id_of(client, owner), subscription)
    # The library retries once by itself; two failures reach the seat sync.
    stripe_seats.failures_left = 2
    await join(app, client, smtp_server, owner, team)
    for _ in range(500):  # bounded: the retry comes 10 ms later
        await app.state.seat_sync.join()
        if stripe_seats.quantities[f"si_{subscription}"] == 2:
            break
        await asyncio.sleep(0.01)
    assert stripe_seats.quantities[f"si_{subscription}"] == 2
