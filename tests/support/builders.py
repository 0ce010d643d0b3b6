"""Builders for test objects, going through the public API where possible."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from app.cli import promote_admin
from app.models import BillingTier, Subscription

_counter = itertools.count(1)
PASSWORD = "correct horse battery staple"


@dataclass
class Account:
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}{next(_counter)}@example.com"


async def register(
    client: httpx.AsyncClient, email: str | None = None, password: str = PASSWORD
) -> Account:
    email = email or unique_email()
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(email, password, body["access_token"], body["refresh_token"])


async def register_admin(
    client: httpx.AsyncClient, app: FastAPI, email: str | None = None
) -> Account:
    """An admin made the one way there is: an operator's `adiuva promote-admin`."""
    account = await register(client, email)
    assert await promote_admin(app.state.settings, account.email)
    return account


async def tenant_id_of(client: httpx.AsyncClient, account: Account) -> uuid.UUID:
    response = await client.get("/api/v1/auth/me", headers=account.headers)
    assert response.status_code == 200, response.text
    return uuid.UUID(response.json()["tenant_id"])


async def set_tier(app: FastAPI, tenant_id: uuid.UUID, tier: BillingTier) -> None:
    """Change a tenant's tier the way a Stripe webhook would: in its subscription row."""
    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(
            update(Subscription).where(Subscription.tenant_id == tenant_id).values(tier=tier)
        )


def client_for(app: FastAPI, ip: str = "203.0.113.10", **kwargs: object) -> httpx.AsyncClient:
    """An HTTP client for the app as seen from `ip`."""
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", **kwargs)
