"""Account export (a streamed ZIP) and deletion, on both databases and both blob stores."""

from __future__ import annotations

import base64
import io
import json
import uuid
import zipfile
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.account.vectors import count_user_points
from app.models import (
    Base,
    BillingTier,
    CreditLedgerEntry,
    CreditReason,
    Membership,
    MembershipRole,
    Plugin,
    QuotaCounter,
    QuotaKind,
    RevenueEvent,
    Tenant,
    TenantKind,
    User,
)
from tests.support.builders import (
    PASSWORD,
    Account,
    register,
    register_admin,
    tenant_id_of,
)
from tests.support.storage import blob_keys, set_account_tier, sha256

pytestmark = pytest.mark.usefixtures("backend")

API = "/api/v1"


async def fill(app: FastAPI, client: httpx.AsyncClient, admin: Account, tag: str) -> Account:
    """An account holding a bit of everything the server keeps."""
    account = await register(client)
    await set_account_tier(app, client, account, BillingTier.POWER)
    for n in range(2):
        data = f"{tag} encrypted record {n}".encode()
        headers = {
            **account.headers,
            "X-Table": "notes",
            "X-Checksum": sha256(data),
            "Content-Type": "application/octet-stream",
        }
        response = await client.post(f"{API}/storage/records", content=data, headers=headers)
        assert response.status_code == 201, response.text
    backup = f"{tag} encrypted backup".encode()
    response = await client.put(
        f"{API}/backup",
        content=backup,
        headers={
            **account.headers,
            "X-Backup-Version": "1.4.0",
            "X-Backup-Timestamp": "2026-11-30T10:00:00Z",
            "X-Backup-Checksum": sha256(backup),
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code in (200, 201), response.text
    blob = f"{tag} vector blob".encode()
    response = await client.post(
        f"{API}/storage/vectors/upsert",
        json={
            "items": [
                {"id": "v1", "blob": base64.b64encode(blob).decode(), "checksum": sha256(blob)}
            ]
        },
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    response = await client.post(f"{API}/plugins/github-sync/install", headers=account.headers)
    assert response.status_code in (200, 201), response.text
    response = await client.post(
        f"{API}/plugins/github-sync/rating", json={"rating": 4}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    tenant_id = await tenant_id_of(client, account)
    response = await client.post(
        f"{API}/admin/tenants/{tenant_id}/credits", json={"amount": 500}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    return account


async def row_counts(app: FastAPI) -> dict[str, int]:
    counts = {}
    async with app.state.db.sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            counts[table.name] = int(
                await session.scalar(select(func.count()).select_from(table)) or 0
            )
    return counts


async def state(app: FastAPI, users: dict[str, uuid.UUID]) -> dict[str, Any]:
    index = app.state.vector_index
    return {
        "rows": await row_counts(app),
        "blobs": len(blob_keys(app)),
        "vectors": {name: await count_user_points(index, uid) for name, uid in users.items()},
    }


async def user_id(client: httpx.AsyncClient, account: Account) -> uuid.UUID:
    response = await client.get(f"{API}/auth/me", headers=account.headers)
    return uuid.UUID(response.json()["id"])


async def test_export_streams_everything_the_server_keeps(app, client):
    admin = await register_admin(client, app)
    account = await fill(app, client, admin, "ada")
    other = await fill(app, client, admin, "bob")

    async with client.stream("GET", f"{API}/account/export", headers=account.headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/zip"
        assert "attachment" in response.headers["content-disposition"]
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    names = archive.namelist()

    def jsonl(name: str) -> list[dict]:
        return [json.loads(line) for line in archive.read(name).splitlines()]

    (profile,) = jsonl("profile.jsonl")
    assert profile["email"] == account.email and "password_hash" not in profile
    (workspace,) = jsonl("workspaces.jsonl")
    assert workspace["kind"] == "personal" and workspace["role"] == "owner"
    assert jsonl("subscriptions.jsonl")[0]["tier"] == "power"
    assert [row["delta"] for row in jsonl("credit_ledger.jsonl")] == [500]
    assert len(jsonl("storage_records.jsonl")) == 2 and len(jsonl("backups.jsonl")) == 1
    assert [p["plugin_id"] for p in jsonl("plugin_installs.jsonl")] == ["github-sync"]
    assert [r["rating"] for r in jsonl("plugin_ratings.jsonl")] == [4]
    assert all("token_hash" not in s for s in jsonl("sessions.jsonl"))
    (vector,) = jsonl("vectors.jsonl")
    for kind in ("plugin_purchases", "payout_account", "plan_runs", "daily_quotas"):
        assert f"{kind}.jsonl" in names, kind
    assert base64.b64decode(vector["payload"]["blob"]) == b"ada vector blob"
    blobs = sorted(n for n in names if n.startswith("blobs/"))
    assert len(blobs) == 3
    stored = {archive.read(n) for n in blobs}
    assert stored == {b"ada encrypted record 0", b"ada encrypted record 1", b"ada encrypted backup"}
    assert all(b"bob" not in archive.read(n) for n in names)
    assert other.email.encode() not in body


async def test_delete_leaves_nothing_but_anonymous_accounting(app, client, capsys):
    admin = await register_admin(client, app)
    account = await fill(app, client, admin, "ada")
    other = await fill(app, client, admin, "bob")
    users = {
        "ada": await user_id(client, account),
        "bob": await user_id(client, other),
        "admin": await user_id(client, admin),
    }
    ada_tenant = await tenant_id_of(client, account)
    async with app.state.db.sessionmaker() as session, session.begin():
        # A metered model call of Ada's, as the credit meter records it.
        session.add(
            CreditLedgerEntry(
                tenant_id=ada_tenant,
                user_id=users["ada"],
                delta=-20,
                reason=CreditReason.RESERVE,
                request_id="req-1",
                balance_after=480,
            )
        )
        # The day's counters the gateway keeps for Ada and for Bob.
        for who in ("ada", "bob"):
            for kind in (QuotaKind.TOTAL, QuotaKind.LLM):
                session.add(
                    QuotaCounter(subject=f"user:{users[who]}", kind=kind, day=date.today(), used=3)
                )
    before = await state(app, users)

    wrong = await client.request(
        "DELETE", f"{API}/account", json={"password": "not my password"}, headers=account.headers
    )
    assert wrong.status_code == 403 and wrong.json()["error"] == "invalid_password"
    assert await state(app, users) == before

    response = await client.request(
        "DELETE", f"{API}/account", json={"password": PASSWORD}, headers=account.headers
    )
    assert response.status_code == 204, response.text
    after = await state(app, users)
    with capsys.disabled():
        print(f"\n[{app.state.db.engine.dialect.name}/{app.state.settings.BLOB_STORE}] deletion")
        for key in ("blobs", "vectors"):
            print(f"  {key}: {before[key]} -> {after[key]}")
        for table, count in before["rows"].items():
            if count != after["rows"][table]:
                print(f"  {table}: {count} -> {after['rows'][table]}")

    rows_before, rows_after = before["rows"], after["rows"]
    async with app.state.db.sessionmaker() as session:
        left = await session.scalar(
            select(func.count())
            .select_from(QuotaCounter)
            .where(QuotaCounter.subject == f"user:{users['ada']}")
        )
    assert left == 0
    expected_drop = {
        # Ada's day counters; Bob's and the admin's stay.
        "quota_counters": 2,
        "users": 1,
        "memberships": 1,
        "storage_records": 2,
        "backup_metadata": 1,
        "storage_usage": 2,
        "storage_sync_heads": 1,
        "plugin_installations": 1,
        "plugin_ratings": 1,
        # The personal workspace has ledger rows: it stays as a shell, without its plan.
        "subscriptions": 1,
        "refresh_tokens": rows_before["refresh_tokens"] - rows_after["refresh_tokens"],
    }
    assert expected_drop["refresh_tokens"] >= 1
    for table, count in rows_before.items():
        assert rows_after[table] == count - expected_drop.get(table, 0), table
    assert after["blobs"] == before["blobs"] - 3
    assert after["vectors"] == {"ada": 0, "bob": 1, "admin": 0}

    async with app.state.db.sessionmaker() as session:
        assert await session.get(User, users["ada"]) is None
        shell = await session.get(Tenant, ada_tenant)
        assert shell is not None and shell.name == "Deleted account"
        assert ada_tenant.hex not in str(shell.name)
        ledger = (
            await session.scalars(
                select(CreditLedgerEntry).where(CreditLedgerEntry.tenant_id == ada_tenant)
            )
        ).all()
        # Both stay: Ada's own movement without her id, the admin's grant as it was.
        assert sorted((entry.delta, entry.user_id) for entry in ledger) == [
            (-20, None),
            (500, users["admin"]),
        ]
        members = await session.scalar(
            select(func.count()).select_from(Membership).where(Membership.tenant_id == ada_tenant)
        )
        assert members == 0
        plugin = await session.get(Plugin, "github-sync")
        assert plugin is not None
        assert (plugin.install_count, plugin.rating_count, plugin.rating_sum) == (1, 1, 4)

    # The deleted account's tokens are dead; the other account is untouched.
    assert (await client.get(f"{API}/auth/me", headers=account.headers)).status_code == 401
    login = await client.post(
        f"{API}/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    assert login.status_code == 401
    listed = await client.get(f"{API}/storage/records?table=notes", headers=other.headers)
    assert listed.status_code == 200 and len(listed.json()["items"]) == 2


async def test_sole_owner_of_a_team_with_members_must_transfer_first(app, client):
    owner = await register(client)
    member = await register(client)
    async with app.state.db.sessionmaker() as session, session.begin():
        team = Tenant(name="Team", kind=TenantKind.TEAM)
        session.add(team)
        await session.flush()
        for account, role in ((owner, MembershipRole.OWNER), (member, MembershipRole.MEMBER)):
            uid = (await session.scalars(select(User.id).where(User.email == account.email))).one()
            session.add(Membership(tenant_id=team.id, user_id=uid, role=role))
        team_id = team.id

    refused = await client.request(
        "DELETE", f"{API}/account", json={"password": PASSWORD}, headers=owner.headers
    )
    assert refused.status_code == 409 and refused.json()["error"] == "team_transfer_required"

    # A plain member leaves the team as they go; the team stays with its owner.
    gone = await client.request(
        "DELETE", f"{API}/account", json={"password": PASSWORD}, headers=member.headers
    )
    assert gone.status_code == 204
    async with app.state.db.sessionmaker() as session:
        assert await session.get(Tenant, team_id) is not None
    again = await client.request(
        "DELETE", f"{API}/account", json={"password": PASSWORD}, headers=owner.headers
    )
    assert again.status_code == 204
    async with app.state.db.sessionmaker() as session:
        assert await session.get(Tenant, team_id) is None
        assert await session.scalar(select(func.count()).select_from(RevenueEvent)) == 0
