from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update

from app.models import BillingTier, Plugin, PluginInstallation, PluginStatus, RevenueEvent
from app.models.base import utcnow
from tests.support.billing import StripeStandIn, post_webhook, stripe_event
from tests.support.builders import Account, register, set_tier, tenant_id_of


async def account_on(client: httpx.AsyncClient, app: FastAPI, tier: BillingTier) -> Account:
    account = await register(client)
    await set_tier(app, await tenant_id_of(client, account), tier)
    return account


async def user_id_of(client: httpx.AsyncClient, account: Account) -> uuid.UUID:
    response = await client.get("/api/v1/auth/me", headers=account.headers)
    return uuid.UUID(response.json()["id"])


def manifest(plugin_id: str, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": plugin_id,
        "name": f"Plugin {plugin_id}",
        "description": "Does something useful with tasks.",
        "version": "1.0.0",
        "category": "productivity",
        "price_cents": 0,
        "currency": "EUR",
        "permissions": ["read:tasks"],
        "entrypoint": "main.js",
    }
    values.update(overrides)
    return values


async def add_plugins(app: FastAPI, rows: list[dict[str, Any]]) -> None:
    """Approved plugins straight into the table (the catalog tests need many)."""
    async with app.state.db.sessionmaker() as session:
        for row in rows:
            values = {
                "name": row["id"],
                "description": "",
                "version": "1.0.0",
                "category": "productivity",
                "status": PluginStatus.APPROVED,
                "permissions": [],
                "manifest": {},
                "created_at": utcnow(),
                **row,
            }
            session.add(Plugin(**values))
        await session.commit()


async def plugin_row(app: FastAPI, plugin_id: str) -> Plugin:
    async with app.state.db.sessionmaker() as session:
        plugin = await session.get(Plugin, plugin_id)
        assert plugin is not None
        return plugin


async def installation_count(app: FastAPI, plugin_id: str) -> int:
    async with app.state.db.sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(PluginInstallation)
            .where(PluginInstallation.plugin_id == plugin_id)
        )
        return int(count or 0)


async def revenue_events(app: FastAPI, plugin_id: str) -> list[RevenueEvent]:
    async with app.state.db.sessionmaker() as session:
        rows = await session.scalars(
            select(RevenueEvent).where(RevenueEvent.plugin_id == plugin_id)
        )
        return list(rows)


async def move_revenue(app: FastAPI, event_id: uuid.UUID, when: datetime) -> None:
    async with app.state.db.sessionmaker() as session:
        await session.execute(
            update(RevenueEvent).where(RevenueEvent.id == event_id).values(created_at=when)
        )
        await session.commit()


def account_updated(account_id: str, *, payable: bool = True, created: int | None = None) -> str:
    return stripe_event(
        "account.updated",
        {
            "id": account_id,
            "object": "account",
            "payouts_enabled": payable,
            "charges_enabled": payable,
            "details_submitted": True,
            "capabilities": {"transfers": "active" if payable else "inactive"},
        },
        created=created,
    )


async def onboard(client: httpx.AsyncClient, developer: Account, *, payable: bool = True) -> str:
    """The developer's Stripe Connect onboarding: the account link, then Stripe's signed
    `account.updated` once the account can receive payouts."""
    response = await client.post("/api/v1/developers/connect", headers=developer.headers)
    assert response.status_code == 200, response.text
    account_id = response.json()["account_id"]
    if payable:
        response = await post_webhook(client, account_updated(account_id))
        assert response.status_code == 200, response.text
    return account_id


async def buy(client: httpx.AsyncClient, buyer: Account, plugin_id: str) -> dict[str, Any]:
    """Stub mode: install a paid plugin the way a buyer does. The install answers 202
    with a Checkout; POSTing its stub URL "pays" (the signed webhook follows)."""
    response = await client.post(f"/api/v1/plugins/{plugin_id}/install", headers=buyer.headers)
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["installed"] is False
    paid = await client.post(started["checkout_url"], headers=buyer.headers)
    assert paid.status_code == 200, paid.text
    assert paid.json() == {"received": True, "duplicate": False}
    return started


def payment_completed(stand_in: StripeStandIn, checkout_url: str, **overrides: Any) -> str:
    """The `checkout.session.completed` Stripe sends once the buyer paid the Checkout the
    app created at the stand-in (its amount, currency and metadata as sent)."""
    session_id = checkout_url.rsplit("/", 1)[1]
    purchase_id = stand_in.sessions[session_id]
    (form,) = [
        c.form
        for c in stand_in.calls("POST", "/v1/checkout/sessions")
        if c.form.get("metadata[purchase_id]") == purchase_id
    ]
    metadata = {
        key[len("metadata[") : -1]: value
        for key, value in form.items()
        if key.startswith("metadata[")
    }
    obj: dict[str, Any] = {
        "id": session_id,
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
        "currency": form["line_items[0][price_data][currency]"],
        "client_reference_id": form["client_reference_id"],
        "payment_intent": f"pi_{session_id[-12:]}",
        "metadata": metadata,
    }
    obj.update(overrides)
    return stripe_event("checkout.session.completed", obj)


def charge_event(event_type: str, payment_intent: str, **fields: Any) -> str:
    if event_type == "charge.refunded":
        obj = {"id": f"ch_{payment_intent[3:]}", "object": "charge", "refunded": True}
    else:
        obj = {"id": f"dp_{payment_intent[3:]}", "object": "dispute"}
    obj.update({"payment_intent": payment_intent, **fields})
    return stripe_event(event_type, obj)
