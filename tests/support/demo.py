"""Helpers for demo-session tests: start sessions over HTTP, age them in the database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from app.models import DemoSession, Tenant

SESSIONS = "/api/v1/demo/sessions"


async def start_session(client: httpx.AsyncClient, account_type: str = "freelancer") -> dict:
    response = await client.post(SESSIONS, json={"demo_account_type": account_type})
    assert response.status_code == 201, response.text
    return response.json()


async def expire_session(app: FastAPI, session_id: str, ago: timedelta = timedelta(seconds=1)):
    """Move a session's (and its tenant's) expiry into the past."""
    past = datetime.now(UTC) - ago
    async with app.state.db.sessionmaker() as session, session.begin():
        tenant_id = await session.scalar(
            select(DemoSession.tenant_id).where(DemoSession.id == session_id)
        )
        await session.execute(
            update(DemoSession).where(DemoSession.id == session_id).values(expires_at=past)
        )
        await session.execute(update(Tenant).where(Tenant.id == tenant_id).values(expires_at=past))


async def session_row(app: FastAPI, session_id: str) -> DemoSession | None:
    async with app.state.db.sessionmaker() as session:
        return await session.get(DemoSession, session_id)


async def tenant_row(app: FastAPI, tenant_id: uuid.UUID | str) -> Tenant | None:
    async with app.state.db.sessionmaker() as session:
        return await session.get(Tenant, uuid.UUID(str(tenant_id)))


def header(session_id: str) -> dict[str, Any]:
    return {"X-Demo-Session-Id": session_id}
