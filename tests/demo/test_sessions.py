"""Demo sessions over HTTP: create, read, extend, end, expire, isolation, concurrency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.demo.templates import load_templates
from app.models import DemoSession, DemoSessionStatus, Subscription, Tenant, TenantKind
from tests.support.demo import (
    SESSIONS,
    expire_session,
    header,
    session_row,
    start_session,
    tenant_row,
)

pytestmark = pytest.mark.usefixtures("backend")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_accounts_lists_each_template_with_its_contents(client):
    response = await client.get("/api/v1/demo/accounts")
    assert response.status_code == 200
    body = response.json()
    assert body["session_minutes"] == 30
    assert body["max_extensions"] == 3
    accounts = {a["demo_account_type"]: a for a in body["accounts"]}
    assert set(accounts) == set(load_templates().account_types)
    freelancer = accounts["freelancer"]
    assert freelancer["description"]
    assert freelancer["persona"].startswith("Mara Lindqvist")
    summary = freelancer["summary"]
    assert summary["tasks"] == sum(summary["tasks_by_status"].values()) == 12
    assert summary["projects"] == len(freelancer["projects"])
    assert summary["checkpoints"] > 0 and summary["notes"] > 0
    rebrand = next(p for p in freelancer["projects"] if p["id"] == "project_northwind_rebrand")
    assert rebrand["tasks"] == 5 and rebrand["checkpoints"] == 2 and rebrand["notes"] == 1
    assert freelancer["sample_tasks"] and freelancer["sample_checkpoints"]
    assert freelancer["sample_notes"]


async def test_create_makes_a_virtual_tenant_with_a_free_subscription(app, client, settings):
    before = datetime.now(UTC)
    created = await start_session(client, "product_team")
    after = datetime.now(UTC)
    assert created["session_id"].startswith("demo_")
    assert created["demo_account_type"] == "product_team"
    expires_at = _parse(created["expires_at"])
    assert before + timedelta(minutes=30) <= expires_at <= after + timedelta(minutes=30)

    tenant = await tenant_row(app, created["virtual_tenant_id"])
    assert tenant is not None and tenant.kind is TenantKind.DEMO
    assert tenant.expires_at == expires_at
    row = await session_row(app, created["session_id"])
    assert row.tenant_id == tenant.id
    assert row.status is DemoSessionStatus.ACTIVE
    assert row.workspace["account_type"] == "product_team"
    async with app.state.db.sessionmaker() as session:
        tier = await session.scalar(
            select(Subscription.tier).where(Subscription.tenant_id == tenant.id)
        )
    assert tier == "free"

    claims = app.state.token_codec.decode(created["session_token"], "demo")
    assert claims["type"] == "demo"
    assert claims["sub"] == created["session_id"]
    assert claims["tid"] == created["virtual_tenant_id"]
    assert abs(claims["exp"] - expires_at.timestamp()) < 2


async def test_unknown_account_type_is_422_naming_the_choices(client):
    response = await client.post(SESSIONS, json={"demo_account_type": "astronaut"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "unknown_demo_account_type"
    assert "freelancer" in body["message"] and "product_team" in body["message"]


async def test_get_reports_status_expiry_extensions_and_workspace(client):
    created = await start_session(client)
    response = await client.get(f"{SESSIONS}/{created['session_id']}")
    assert response.status_code == 200
    info = response.json()
    assert info["status"] == "active"
    assert info["virtual_tenant_id"] == created["virtual_tenant_id"]
    assert _parse(info["expires_at"]) == _parse(created["expires_at"])
    assert info["extensions_used"] == 0 and info["extensions_left"] == 3
    assert 0 < info["seconds_left"] <= 30 * 60
    assert info["workspace"]["tasks"] == 12


async def test_token_and_header_both_name_the_current_session(client):
    created = await start_session(client)
    by_token = await client.get(
        f"{SESSIONS}/current", headers={"Authorization": f"Bearer {created['session_token']}"}
    )
    by_header = await client.get(f"{SESSIONS}/current", headers=header(created["session_id"]))
    assert by_token.status_code == by_header.status_code == 200
    assert by_token.json()["session_id"] == by_header.json()["session_id"] == created["session_id"]

    nothing = await client.get(f"{SESSIONS}/current")
    assert nothing.status_code == 401
    assert nothing.json()["error"] == "demo_session_required"
    unknown = await client.get(f"{SESSIONS}/current", headers=header("demo_unknown"))
    assert unknown.status_code == 401
    forged = await client.get(f"{SESSIONS}/current", headers={"Authorization": "Bearer x.y.z"})
    assert forged.status_code == 401


async def test_a_user_access_token_is_not_a_session_token(client):
    from tests.support.builders import register

    account = await register(client)
    response = await client.get(f"{SESSIONS}/current", headers=account.headers)
    assert response.status_code == 401


async def test_credentials_of_another_session_are_refused(client):
    mine = await start_session(client)
    theirs = await start_session(client)
    path = f"{SESSIONS}/{theirs['session_id']}"
    with_token = {"Authorization": f"Bearer {mine['session_token']}"}
    for method, url in (
        ("GET", path),
        ("POST", f"{path}/extend"),
        ("GET", f"{path}/workspace"),
        ("DELETE", path),
    ):
        for headers in (with_token, header(mine["session_id"])):
            response = await client.request(method, url, headers=headers)
            assert response.status_code == 403, (method, url, response.text)
            assert response.json()["error"] == "not_your_session"
    assert (await client.get(path)).json()["status"] == "active"


async def test_token_and_header_naming_different_sessions_conflict(client):
    one = await start_session(client)
    two = await start_session(client)
    response = await client.get(
        f"{SESSIONS}/current",
        headers={"Authorization": f"Bearer {one['session_token']}", **header(two["session_id"])},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "session_mismatch"


async def test_unknown_session_is_404_with_the_error_shape(client):
    for method, suffix in (("GET", ""), ("POST", "/extend"), ("DELETE", ""), ("GET", "/workspace")):
        response = await client.request(method, f"{SESSIONS}/demo_doesnotexist{suffix}")
        assert response.status_code == 404
        body = response.json()
        assert body["error"] == "session_not_found"
        assert set(body) >= {"error", "message", "request_id"}


async def test_extend_adds_thirty_minutes_three_times_then_409(client, app):
    created = await start_session(client)
    path = f"{SESSIONS}/{created['session_id']}"
    expiry = _parse(created["expires_at"])
    for used in (1, 2, 3):
        response = await client.post(f"{path}/extend")
        assert response.status_code == 200, response.text
        body = response.json()
        assert _parse(body["expires_at"]) == expiry + timedelta(minutes=30 * used)
        assert body["extensions_used"] == used and body["extensions_left"] == 3 - used
        claims = app.state.token_codec.decode(body["session_token"], "demo")
        assert abs(claims["exp"] - _parse(body["expires_at"]).timestamp()) < 2
    refused = await client.post(f"{path}/extend")
    assert refused.status_code == 409
    assert refused.json()["error"] == "extension_limit_reached"
    assert "3 times" in refused.json()["message"]

    row = await session_row(app, created["session_id"])
    assert row.extension_count == 3
    assert row.expires_at == expiry + timedelta(minutes=90)
    tenant = await tenant_row(app, created["virtual_tenant_id"])
    assert tenant.expires_at == row.expires_at


async def test_concurrent_extends_never_pass_the_limit(client, app):
    created = await start_session(client)
    path = f"{SESSIONS}/{created['session_id']}/extend"
    responses = await asyncio.gather(*(client.post(path) for _ in range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 3 + [409] * 7, [r.text for r in responses]
    assert sorted(r.json()["extensions_used"] for r in responses if r.status_code == 200) == [
        1,
        2,
        3,
    ]
    row = await session_row(app, created["session_id"])
    assert row.extension_count == 3
    assert row.expires_at == _parse(created["expires_at"]) + timedelta(minutes=90)


async def test_an_expired_session_is_gone(client, app):
    created = await start_session(client)
    await expire_session(app, created["session_id"])
    path = f"{SESSIONS}/{created['session_id']}"
    for method, url in (
        ("GET", path),
        ("POST", f"{path}/extend"),
        ("DELETE", path),
        ("GET", f"{path}/workspace"),
    ):
        response = await client.request(method, url)
        assert response.status_code == 410, (method, url)
        body = response.json()
        assert body["error"] == "session_expired"
        assert "POST /api/v1/demo/sessions" in body["message"]
        assert body["request_id"]
    # The path names a resource that is gone (410); a header or token presenting the
    # session as the caller's credential is a credential that no longer holds (401).
    by_header = await client.get(f"{SESSIONS}/current", headers=header(created["session_id"]))
    assert by_header.status_code == 401
    assert by_header.json()["error"] == "session_expired"
    assert "POST /api/v1/demo/sessions" in by_header.json()["message"]


async def test_delete_ends_the_session_at_once(client, app):
    created = await start_session(client)
    path = f"{SESSIONS}/{created['session_id']}"
    response = await client.delete(path, headers=header(created["session_id"]))
    assert response.status_code == 204
    row = await session_row(app, created["session_id"])
    assert row.status is DemoSessionStatus.DELETED and row.ended_at is not None
    again = await client.get(path)
    assert again.status_code == 410
    assert again.json()["error"] == "session_ended"
    token = {"Authorization": f"Bearer {created['session_token']}"}
    current = await client.get(f"{SESSIONS}/current", headers=token)
    assert current.status_code == 401
    assert current.json()["error"] == "session_ended"
    assert (await client.delete(path)).status_code == 410


async def test_sessions_of_one_template_are_isolated_and_the_template_unchanged(client, app):
    one = await start_session(client, "freelancer")
    two = await start_session(client, "freelancer")
    template_before = load_templates().get("freelancer").materialize(datetime.now(UTC).date())

    actions = {
        "actions": [
            {
                "type": "update_record",
                "table": "tasks",
                "id": "task_nw_logo_sketches",
                "data": {"status": "done", "title": "Logo done"},
            },
            {"type": "delete_record", "table": "notes", "id": "note_rates"},
            {
                "type": "create_record",
                "table": "tasks",
                "data": {
                    "title": "Call Anna",
                    "priority": "high",
                    "project_id": "project_harbor_dental_site",
                },
            },
            {
                "type": "create_record",
                "table": "comments",
                "data": {"task_id": "task_hd_wireframes", "body": "Sent for review"},
            },
        ]
    }
    response = await client.post(f"{SESSIONS}/{one['session_id']}/workspace/actions", json=actions)
    assert response.status_code == 200, response.text
    changed = response.json()
    task = next(t for t in changed["tasks"] if t["id"] == "task_nw_logo_sketches")
    assert task["status"] == "done" and task["title"] == "Logo done"
    assert all(n["id"] != "note_rates" for n in changed["notes"])
    assert any(t["title"] == "Call Anna" for t in changed["tasks"])

    stored = (await client.get(f"{SESSIONS}/{one['session_id']}/workspace")).json()
    assert stored == changed

    other = (await client.get(f"{SESSIONS}/{two['session_id']}/workspace")).json()
    assert other == template_before
    fresh = await start_session(client, "freelancer")
    fresh_workspace = (await client.get(f"{SESSIONS}/{fresh['session_id']}/workspace")).json()
    assert fresh_workspace == template_before
    assert (
        load_templates().get("freelancer").materialize(datetime.now(UTC).date()) == template_before
    )
    served = app.state.demo_templates.get("freelancer")
    assert served.materialize(datetime.now(UTC).date()) == template_before


async def test_workspace_actions_that_break_references_are_refused(client):
    created = await start_session(client)
    path = f"{SESSIONS}/{created['session_id']}/workspace/actions"
    dangling = {
        "actions": [
            {
                "type": "create_record",
                "table": "checkpoints",
                "data": {"title": "Orphan", "project_id": "project_nope"},
            }
        ]
    }
    response = await client.post(path, json=dangling)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_action"
    missing = {"actions": [{"type": "update_record", "table": "tasks", "id": "task_x"}]}
    assert (await client.post(path, json=missing)).status_code == 404
    bad_status = {
        "actions": [
            {
                "type": "update_record",
                "table": "tasks",
                "id": "task_nw_packaging",
                "data": {"status": "blocked"},
            }
        ]
    }
    assert (await client.post(path, json=bad_status)).status_code == 422
    # Nothing of the refused batches was kept.
    workspace = (await client.get(f"{SESSIONS}/{created['session_id']}/workspace")).json()
    assert all(c["title"] != "Orphan" for c in workspace["checkpoints"])


async def test_deleting_a_project_takes_its_tasks_and_checkpoints(client):
    created = await start_session(client)
    path = f"{SESSIONS}/{created['session_id']}/workspace/actions"
    action = {
        "type": "delete_record",
        "table": "projects",
        "id": "project_northwind_rebrand",
    }
    response = await client.post(path, json={"actions": [action]})
    assert response.status_code == 200
    workspace = response.json()
    assert all(t["project_id"] != "project_northwind_rebrand" for t in workspace["tasks"])
    assert all(c["project_id"] != "project_northwind_rebrand" for c in workspace["checkpoints"])
    note = next(n for n in workspace["notes"] if n["id"] == "note_nw_call")
    assert note["project_id"] is None


async def test_concurrent_writes_to_one_workspace_are_all_kept(client):
    created = await start_session(client)
    path = f"{SESSIONS}/{created['session_id']}/workspace/actions"

    def create(n: int) -> dict:
        return {
            "actions": [{"type": "create_record", "table": "notes", "data": {"title": f"n{n}"}}]
        }

    responses = await asyncio.gather(*(client.post(path, json=create(n)) for n in range(8)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    workspace = (await client.get(f"{SESSIONS}/{created['session_id']}/workspace")).json()
    assert {f"n{n}" for n in range(8)} <= {note["title"] for note in workspace["notes"]}


async def test_many_clients_creating_sessions_at_once_get_distinct_tenants(client, app):
    count = 25
    responses = await asyncio.gather(
        *(
            client.post(SESSIONS, json={"demo_account_type": ("freelancer", "product_team")[i % 2]})
            for i in range(count)
        )
    )
    assert [r.status_code for r in responses] == [201] * count, [r.text for r in responses]
    bodies = [r.json() for r in responses]
    assert len({b["session_id"] for b in bodies}) == count
    tenant_ids = {uuid.UUID(b["virtual_tenant_id"]) for b in bodies}
    assert len(tenant_ids) == count
    async with app.state.db.sessionmaker() as session:
        demo_tenants = await session.scalar(
            select(func.count()).select_from(Tenant).where(Tenant.kind == TenantKind.DEMO)
        )
        subscriptions = await session.scalar(
            select(func.count())
            .select_from(Subscription)
            .where(Subscription.tenant_id.in_(tenant_ids))
        )
        sessions = await session.scalar(select(func.count()).select_from(DemoSession))
    assert demo_tenants == subscriptions == sessions == count


async def test_the_gateway_refuses_restricted_operations_in_a_session(client):
    created = await start_session(client)
    response = await client.delete(
        "/api/v1/storage/records/0b6f3c3e-0000-4000-8000-000000000000",
        headers=header(created["session_id"]),
    )
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "demo_restriction"
    assert body["message"].startswith("Deleting data is not available in a demo session")
    own = await client.delete(
        f"{SESSIONS}/{created['session_id']}", headers=header(created["session_id"])
    )
    assert own.status_code == 204
