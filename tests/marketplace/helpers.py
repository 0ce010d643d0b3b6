from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update

from app.models import BillingTier, Plugin, PluginInstallation, PluginStatus, RevenueEvent, User
from app.models.base import utcnow
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


async def set_connect_account(app: FastAPI, user_id: uuid.UUID, account: str | None) -> None:
    async with app.state.db.sessionmaker() as session:
        await session.execute(
            update(User).where(User.id == user_id).values(stripe_connect_account_id=account)
        )
        await session.commit()
