"""Team helpers for the tests: create a team, invite by mail, accept, as clients would."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI

from tests.mail.support import SMTPServer, token_of
from tests.support.builders import Account, register

API = "/api/v1"


def acting(account: Account, tenant_id: uuid.UUID | str) -> dict[str, str]:
    return {**account.headers, "X-Tenant-Id": str(tenant_id)}


async def create_team(client: httpx.AsyncClient, owner: Account, name: str = "Crew") -> uuid.UUID:
    response = await client.post(f"{API}/tenants", json={"name": name}, headers=owner.headers)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def invite(
    client: httpx.AsyncClient, by: Account, tenant_id: uuid.UUID, email: str, role: str = "member"
) -> httpx.Response:
    return await client.post(
        f"{API}/tenants/{tenant_id}/invitations",
        json={"email": email, "role": role},
        headers=by.headers,
    )


async def mailed_invitation(app: FastAPI, smtp: SMTPServer, address: str) -> str:
    await app.state.mailer.join()
    messages = [m for m in smtp.inbox.to(address) if m["X-Adiuva-Template"] == "team_invitation"]
    assert messages, f"no invitation mailed to {address}"
    return token_of(messages[-1])


async def accept(client: httpx.AsyncClient, account: Account, token: str) -> httpx.Response:
    return await client.post(
        f"{API}/invitations/accept", json={"token": token}, headers=account.headers
    )


async def join(
    app: FastAPI,
    client: httpx.AsyncClient,
    smtp: SMTPServer,
    by: Account,
    tenant_id: uuid.UUID,
    role: str = "member",
) -> Account:
    """A new account that joins the team through a mailed invitation."""
    account = await register(client)
    response = await invite(client, by, tenant_id, account.email, role)
    assert response.status_code == 201, response.text
    token = await mailed_invitation(app, smtp, account.email)
    accepted = await accept(client, account, token)
    assert accepted.status_code == 200, accepted.text
    return account


async def user_id_of(client: httpx.AsyncClient, account: Account) -> str:
    response = await client.get(f"{API}/auth/me", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def members(client: httpx.AsyncClient, account: Account, tenant_id: uuid.UUID) -> dict:
    response = await client.get(f"{API}/tenants/{tenant_id}/members", headers=account.headers)
    assert response.status_code == 200, response.text
    return {m["email"]: m["role"] for m in response.json()["members"]}
