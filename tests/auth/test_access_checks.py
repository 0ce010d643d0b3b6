"""Every signed-in request checks the user's live row: a signature alone is not enough.

Deletion, deactivation, removal from the tenant, logout and refresh-token reuse end
the user's access tokens at once, on REST routes, on the gateway's units of work and
on the chat WebSocket; and a refused token never counts as an anonymous visitor.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws
from jose import jwt
from sqlalchemy import delete, select, update

from app.auth.security import TokenCodec
from app.config import DEFAULT_JWT_SECRET
from app.models import ConcurrencyLease, Membership, QuotaCounter, User
from tests.chat.support import ANNA, collect, ws_client
from tests.support.builders import PASSWORD, Account, register

pytestmark = pytest.mark.usefixtures("backend")

ME = "/api/v1/auth/me"
CHAT = "/api/v1/chat"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def profile(client: httpx.AsyncClient, account: Account) -> dict:
    response = await client.get(ME, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def quota_rows(app: FastAPI) -> tuple[list, list]:
    """Every daily counter and concurrency lease, to see that a refusal counted nothing."""
    async with app.state.db.engine.connect() as connection:
        counters = (
            await connection.execute(
                select(QuotaCounter.subject, QuotaCounter.kind, QuotaCounter.used).order_by(
                    QuotaCounter.subject, QuotaCounter.kind
                )
            )
        ).all()
        leases = (await connection.execute(select(ConcurrencyLease.scope))).all()
    return [tuple(row) for row in counters], [tuple(row) for row in leases]


async def assert_refused(client: httpx.AsyncClient, app: FastAPI, token: str) -> None:
    """401 on a principal route and on a unit of work, and nothing counted for it."""
    me = await client.get(ME, headers=bearer(token))
    assert me.status_code == 401, me.text
    assert me.json()["error"] == "invalid_token"
    before = await quota_rows(app)
    chat = await client.post(CHAT, json=ANNA, headers=bearer(token))
    assert chat.status_code == 401, chat.text
    assert chat.json()["error"] == "invalid_token"
    assert await quota_rows(app) == before


async def chat_ok(client: httpx.AsyncClient, token: str) -> None:
    response = await client.post(CHAT, json=ANNA, headers=bearer(token))
    assert response.status_code == 200, response.text


async def websocket_close_code(app: FastAPI, token: str) -> int:
    """How the socket ends: a refused handshake or a close after it, alike."""
    async with ws_client(app) as wc:
        with pytest.raises(WebSocketDisconnect) as closed:
            async with aconnect_ws(f"/api/v1/chat/stream?token={token}", wc) as ws:
                await ws.receive_json(timeout=10)
    return closed.value.code


async def websocket_streams(app: FastAPI, token: str) -> None:
    async with (
        ws_client(app) as wc,
        aconnect_ws(f"/api/v1/chat/stream?token={token}", wc) as ws,
    ):
        await ws.send_json(ANNA)
        _, done = await collect(ws)
    assert done.get("done") is True, done


async def test_deleted_user_is_refused_at_once(client, app):
    account = await register(client)
    user_id = uuid.UUID((await profile(client, account))["id"])
    await chat_ok(client, account.access_token)

    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(delete(User).where(User.id == user_id))

    await assert_refused(client, app, account.access_token)
    counters, _ = await quota_rows(app)
    # The one unit it used while it existed, and nothing under any anonymous subject.
    assert {subject for subject, _, _ in counters} == {f"user:{user_id}"}


async def test_member_removed_from_the_tenant_is_refused_at_once(client, app):
    account = await register(client)
    me = await profile(client, account)
    await chat_ok(client, account.access_token)

    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(
            delete(Membership).where(
                Membership.user_id == uuid.UUID(me["id"]),
                Membership.tenant_id == uuid.UUID(me["tenant_id"]),
            )
        )

    await assert_refused(client, app, account.access_token)
    assert await websocket_close_code(app, account.access_token) == 1008
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert refresh.status_code == 401


async def test_deactivated_user_is_refused_and_cannot_sign_in(client, app):
    account = await register(client)
    user_id = uuid.UUID((await profile(client, account))["id"])

    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.id == user_id).values(is_active=False))

    await assert_refused(client, app, account.access_token)
    login = await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    assert login.status_code == 401
    assert login.json()["error"] == "invalid_credentials"
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert refresh.status_code == 401


async def test_logout_ends_access_tokens_at_once(client, app):
    account = await register(client)
    second = await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    assert second.status_code == 200
    other_device = second.json()
    await chat_ok(client, account.access_token)
    await websocket_streams(app, account.access_token)

    logout = await client.post("/api/v1/auth/logout", json={"refresh_token": account.refresh_token})
    assert logout.status_code == 204

    await assert_refused(client, app, account.access_token)
    assert await websocket_close_code(app, account.access_token) == 1008
    # The user's other sessions lose their access tokens too, but keep their refresh
    # token: one refresh gives them a token at the new version.
    await assert_refused(client, app, other_device["access_token"])
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": other_device["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    fresh = refreshed.json()["access_token"]
    assert (await client.get(ME, headers=bearer(fresh))).status_code == 200
    await chat_ok(client, fresh)
    await websocket_streams(app, fresh)
    # The logged-out family stays dead.
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert again.status_code == 401


async def test_refresh_token_reuse_ends_the_users_access_tokens(client, app):
    account = await register(client)
    rotated = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert rotated.status_code == 200
    current = rotated.json()["access_token"]
    assert (await client.get(ME, headers=bearer(current))).status_code == 200

    # The old refresh token comes back (stolen, or replayed): the thief may also hold
    # an access token, so every access token of the user ends with the family.
    replay = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert replay.status_code == 401

    await assert_refused(client, app, current)
    await assert_refused(client, app, account.access_token)
    assert await websocket_close_code(app, current) == 1008
    login = await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    assert (await client.get(ME, headers=bearer(login.json()["access_token"]))).status_code == 200


async def test_signed_token_for_a_user_that_does_not_exist_is_refused(client, app, settings):
    codec = TokenCodec(settings)
    account = await register(client)
    tenant_id = (await profile(client, account))["tenant_id"]
    for tenant in (str(uuid.uuid4()), tenant_id):
        ghost = codec.encode(
            "access", str(uuid.uuid4()), timedelta(minutes=5), tid=tenant, ver=0
        ).token
        await assert_refused(client, app, ghost)
        assert await websocket_close_code(app, ghost) == 1008


async def test_token_for_another_tenant_is_refused(client, app, settings):
    alice = await register(client)
    bob = await register(client)
    alice_me = await profile(client, alice)
    bob_me = await profile(client, bob)
    # Properly signed, alive user, current version; but not a member of that tenant.
    token = (
        TokenCodec(settings)
        .encode("access", alice_me["id"], timedelta(minutes=5), tid=bob_me["tenant_id"], ver=0)
        .token
    )
    await assert_refused(client, app, token)


async def test_token_without_a_version_is_refused(client, app, settings):
    account = await register(client)
    me = await profile(client, account)
    unversioned = (
        TokenCodec(settings)
        .encode("access", me["id"], timedelta(minutes=5), tid=me["tenant_id"])
        .token
    )
    await assert_refused(client, app, unversioned)


@pytest.mark.parametrize("settings_overrides", [{"ENV": "dev", "JWT_SECRET": DEFAULT_JWT_SECRET}])
async def test_dev_app_refuses_tokens_signed_with_the_published_secret(client, app, settings):
    # Even with the placeholder still in its configuration, a dev app signs with a
    # secret of its own, so the published one forges nothing.
    assert settings.JWT_SECRET != DEFAULT_JWT_SECRET
    account = await register(client)
    me = await profile(client, account)
    claims = TokenCodec(settings).decode(account.access_token, "access")
    forged = jwt.encode(
        {**claims, "sub": me["id"], "tid": me["tenant_id"]}, DEFAULT_JWT_SECRET, algorithm="HS256"
    )
    await assert_refused(client, app, forged)
    assert await websocket_close_code(app, forged) == 1008
