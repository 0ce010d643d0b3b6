"""Team workspaces through the API: creation, invitations by mail, roles, removal, acting."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from app.models import BillingTier, MembershipRole
from app.tenants.teams import may_invite, may_manage
from tests.mail.support import SMTPServer, smtp_server
from tests.support.builders import register, set_tier, tenant_id_of
from tests.tenants.support import (
    API,
    accept,
    acting,
    create_team,
    invite,
    join,
    mailed_invitation,
    members,
    user_id_of,
)

__all__ = ["smtp_server"]


@pytest.fixture
def settings_overrides(smtp_server: SMTPServer) -> dict[str, object]:
    return {**smtp_server.settings}


async def test_create_and_list_workspaces(client):
    owner = await register(client)
    personal = await tenant_id_of(client, owner)
    team = await create_team(client, owner, "  Research  ")

    listed = (await client.get(f"{API}/tenants", headers=owner.headers)).json()["workspaces"]
    by_id = {w["id"]: w for w in listed}
    assert by_id[str(personal)] == {
        "id": str(personal),
        "name": f"{owner.email} (personal)",
        "kind": "personal",
        "role": "owner",
        "tier": "free",
        "seats": 1,
        "default": True,
    }
    assert by_id[str(team)]["name"] == "Research"
    assert by_id[str(team)]["kind"] == "team"
    assert by_id[str(team)]["role"] == "owner"
    assert by_id[str(team)]["default"] is False
    assert await members(client, owner, team) == {owner.email: "owner"}

    blank = await client.post(f"{API}/tenants", json={"name": "   "}, headers=owner.headers)
    assert blank.status_code == 422


async def test_invitation_by_mail_is_single_use_and_bound_to_the_address(app, client, smtp_server):
    owner = await register(client)
    team = await create_team(client, owner)
    invitee = await register(client)
    other = await register(client)

    sent = await invite(client, owner, team, invitee.email.upper(), "admin")
    assert sent.status_code == 201, sent.text
    body = sent.json()
    assert body["email"] == invitee.email and body["role"] == "admin"
    token = await mailed_invitation(app, smtp_server, invitee.email)
    assert token not in sent.text  # only the mailbox receives it
    pending = await client.get(f"{API}/tenants/{team}/invitations", headers=owner.headers)
    assert [i["email"] for i in pending.json()["invitations"]] == [invitee.email]

    # Another account cannot use it, and trying does not use it up.
    wrong = await accept(client, other, token)
    assert wrong.status_code == 403 and wrong.json()["error"] == "invitation_email_mismatch"

    joined = await accept(client, invitee, token)
    assert joined.status_code == 200, joined.text
    assert joined.json()["id"] == str(team) and joined.json()["role"] == "admin"
    assert joined.json()["seats"] == 2
    assert await members(client, owner, team) == {owner.email: "owner", invitee.email: "admin"}

    again = await accept(client, invitee, token)
    assert again.status_code == 400 and again.json()["error"] == "invalid_token"
    made_up = await accept(client, invitee, "x" * 43)
    assert made_up.status_code == 400
    assert set(made_up.json()) == {"error", "message", "request_id"}
    assert (
        await client.get(f"{API}/tenants/{team}/invitations", headers=owner.headers)
    ).json() == {"invitations": []}
    member_already = await invite(client, owner, team, invitee.email)
    assert member_already.status_code == 409


async def test_the_database_keeps_only_the_hash(app, client, smtp_server):
    from sqlalchemy import select

    from app.models.tenancy import Invitation

    owner = await register(client)
    team = await create_team(client, owner)
    assert (await invite(client, owner, team, "grace@example.com")).status_code == 201
    token = await mailed_invitation(app, smtp_server, "grace@example.com")
    async with app.state.db.sessionmaker() as session:
        stored = (await session.scalars(select(Invitation.token_hash))).all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]


async def test_revoked_and_replaced_invitations_stop_working(app, client, smtp_server):
    owner = await register(client)
    team = await create_team(client, owner)
    invitee = await register(client)
    first = (await invite(client, owner, team, invitee.email)).json()
    first_token = await mailed_invitation(app, smtp_server, invitee.email)
    revoked = await client.delete(
        f"{API}/tenants/{team}/invitations/{first['id']}", headers=owner.headers
    )
    assert revoked.status_code == 204
    assert (await accept(client, invitee, first_token)).status_code == 400

    await invite(client, owner, team, invitee.email)
    older = await mailed_invitation(app, smtp_server, invitee.email)
    await invite(client, owner, team, invitee.email)
    newer = await mailed_invitation(app, smtp_server, invitee.email)
    assert (await accept(client, invitee, older)).status_code == 400
    assert (await accept(client, invitee, newer)).status_code == 200


async def test_who_may_invite(app, client, smtp_server):
    owner = await register(client)
    team = await create_team(client, owner)
    admin = await join(app, client, smtp_server, owner, team, "admin")
    member = await join(app, client, smtp_server, owner, team, "member")
    outsider = await register(client)

    assert (await invite(client, member, team, "a@example.com")).status_code == 403
    assert (await invite(client, admin, team, "b@example.com", "owner")).status_code == 403
    assert (await invite(client, admin, team, "b@example.com", "admin")).status_code == 201
    assert (await invite(client, owner, team, "c@example.com", "owner")).status_code == 201
    refused = await invite(client, outsider, team, "d@example.com")
    assert refused.status_code == 404 and refused.json()["error"] == "workspace_not_found"
    personal = await tenant_id_of(client, owner)
    own = await invite(client, owner, personal, "e@example.com")
    assert own.status_code == 409 and own.json()["error"] == "personal_workspace"


async def test_invitations_are_rate_limited(app, client, smtp_server):
    owner = await register(client)
    team = await create_team(client, owner)
    app.state.invitation_throttle.per_account = __import__(
        "app.kit.ratelimit", fromlist=["parse_limit"]
    ).parse_limit("2/hour")
    assert (await invite(client, owner, team, "one@example.com")).status_code == 201
    assert (await invite(client, owner, team, "two@example.com")).status_code == 201
    third = await invite(client, owner, team, "three@example.com")
    assert third.status_code == 429 and "Retry-After" in third.headers


async def test_role_rules_and_the_last_owner(app, client, smtp_server):
    owner = await register(client)
    team = await create_team(client, owner)
    admin = await join(app, client, smtp_server, owner, team, "admin")
    member = await join(app, client, smtp_server, owner, team, "member")
    owner_id, admin_id, member_id = [await user_id_of(client, a) for a in (owner, admin, member)]

    async def patch(actor, target, role):
        return await client.patch(
            f"{API}/tenants/{team}/members/{target}", json={"role": role}, headers=actor.headers
        )

    assert (await patch(member, member_id, "admin")).status_code == 403
    assert (await patch(admin, member_id, "owner")).status_code == 403
    assert (await patch(admin, owner_id, "member")).status_code == 403
    promoted = await patch(admin, member_id, "admin")
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    assert (await patch(admin, member_id, "member")).json()["role"] == "member"

    last = await patch(owner, owner_id, "admin")
    assert last.status_code == 409 and last.json()["error"] == "last_owner"
    leave = await client.delete(f"{API}/tenants/{team}/members/me", headers=owner.headers)
    assert leave.status_code == 409 and leave.json()["error"] == "last_owner"

    assert (await patch(owner, admin_id, "owner")).status_code == 200
    assert (await patch(owner, owner_id, "member")).status_code == 200  # another owner remains
    assert await members(client, admin, team) == {
        owner.email: "member",
        admin.email: "owner",
        member.email: "member",
    }
    left = await client.delete(f"{API}/tenants/{team}/members/me", headers=member.headers)
    assert left.status_code == 204
    gone = await client.get(f"{API}/tenants/{team}/members", headers=member.headers)
    assert gone.status_code == 404


async def test_removal_takes_effect_on_the_next_request(app, client, smtp_server):
    owner = await register(client)
    team = await create_team(client, owner)
    member = await join(app, client, smtp_server, owner, team)
    member_id = await user_id_of(client, member)
    ok = await client.get(f"{API}/credits", headers=acting(member, team))
    assert ok.status_code == 200 and ok.json()["tenant_id"] == str(team)

    removed = await client.delete(
        f"{API}/tenants/{team}/members/{member_id}", headers=owner.headers
    )
    assert removed.status_code == 204
    refused = await client.get(f"{API}/credits", headers=acting(member, team))
    assert refused.status_code == 403 and refused.json()["error"] == "not_a_member"
    # Their own workspace still works.
    assert (await client.get(f"{API}/credits", headers=member.headers)).status_code == 200


async def test_x_tenant_id_isolates_workspaces(app, client, smtp_server):
    owner = await register(client)
    team = await create_team(client, owner)
    personal = await tenant_id_of(client, owner)
    member = await join(app, client, smtp_server, owner, team)
    await set_tier(app, team, BillingTier.TEAM)
    await set_tier(app, personal, BillingTier.PRO)

    async def write(headers, text):
        data = text.encode()
        checksum = hashlib.sha256(data).hexdigest()
        headers = {**headers, "X-Table": "notes", "X-Checksum": checksum}
        response = await client.post(f"{API}/storage/records", content=data, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    async def listed(headers):
        response = await client.get(f"{API}/storage/records", headers=headers)
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()["items"]}

    in_team = await write(acting(owner, team), "team notes")
    in_personal = await write(owner.headers, "my notes")
    assert await listed(acting(owner, team)) == {in_team}
    assert await listed(owner.headers) == {in_personal}
    assert in_personal not in await listed(acting(member, team))
    read = await client.get(f"{API}/storage/records/{in_personal}", headers=acting(owner, team))
    assert read.status_code == 404

    # Someone else's personal workspace, a made-up one, a malformed header.
    for tenant in (personal, "00000000-0000-4000-8000-000000000000"):
        refused = await client.get(f"{API}/storage/records", headers=acting(member, tenant))
        assert refused.status_code == 403 and refused.json()["error"] == "not_a_member"
    bad = await client.get(f"{API}/credits", headers=acting(member, "nope"))
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_tenant_header"
    # Billing acts in the named workspace too.
    sub = await client.get(f"{API}/billing/subscription", headers=acting(member, team))
    assert sub.status_code == 200 and sub.json()["tier"] == "team"


async def test_seats_size_the_team_rate_limit(app, client, smtp_server):
    owner = await register(client)
    team = await create_team(client, owner)
    await set_tier(app, team, BillingTier.TEAM)
    first = await client.get(f"{API}/credits", headers=acting(owner, team))
    assert first.headers["RateLimit-Limit"] == "200"
    member = await join(app, client, smtp_server, owner, team)
    second = await client.get(f"{API}/credits", headers=acting(member, team))
    assert second.headers["RateLimit-Limit"] == "400"
    # One window for the team: both members' requests count in it.
    remaining = int(second.headers["RateLimit-Remaining"])
    third = await client.get(f"{API}/credits", headers=acting(owner, team))
    assert int(third.headers["RateLimit-Remaining"]) == remaining - 1
    sub = (await client.get(f"{API}/billing/subscription", headers=acting(owner, team))).json()
    assert sub["seats"] == 2 and sub["rate_limit_per_minute"] == 400

    member_id = await user_id_of(client, member)
    await client.delete(f"{API}/tenants/{team}/members/{member_id}", headers=owner.headers)
    after = await client.get(f"{API}/credits", headers=acting(owner, team))
    assert after.headers["RateLimit-Limit"] == "200"


async def test_owners_removing_each_other_at_once_leave_one_owner(app, client, smtp_server):
    owner = await register(client)
    team = await create_team(client, owner)
    second = await join(app, client, smtp_server, owner, team, "owner")
    owner_id, second_id = await user_id_of(client, owner), await user_id_of(client, second)

    for _ in range(3):
        results = await asyncio.gather(
            client.delete(f"{API}/tenants/{team}/members/{second_id}", headers=owner.headers),
            client.delete(f"{API}/tenants/{team}/members/{owner_id}", headers=second.headers),
        )
        codes = sorted(r.status_code for r in results)
        assert codes in ([204, 404], [204, 409]), [r.text for r in results]
        remaining = [
            a
            for a in (owner, second)
            if (await client.get(f"{API}/tenants/{team}/members", headers=a.headers)).status_code
            == 200
        ]
        assert len(remaining) == 1
        survivor = remaining[0]
        assert await members(client, survivor, team) == {survivor.email: "owner"}
        # Back to two owners for the next round.
        gone = second if survivor is owner else owner
        sent = await invite(client, survivor, team, gone.email, "owner")
        assert sent.status_code == 201
        token = await mailed_invitation(app, smtp_server, gone.email)
        assert (await accept(client, gone, token)).status_code == 200


async def test_owners_demoting_each_other_at_once_leave_one_owner(app, client, smtp_server):
    owner = await register(client)
    team = await create_team(client, owner)
    second = await join(app, client, smtp_server, owner, team, "owner")
    owner_id, second_id = await user_id_of(client, owner), await user_id_of(client, second)
    results = await asyncio.gather(
        client.patch(
            f"{API}/tenants/{team}/members/{second_id}",
            json={"role": "member"},
            headers=owner.headers,
        ),
        client.patch(
            f"{API}/tenants/{team}/members/{owner_id}",
            json={"role": "member"},
            headers=second.headers,
        ),
    )
    assert sorted(r.status_code for r in results)[0] == 200
    roles = await members(client, owner, team)
    assert sorted(roles.values()) == ["member", "owner"]


def test_role_rules():
    owner, admin, member = MembershipRole.OWNER, MembershipRole.ADMIN, MembershipRole.MEMBER
    assert may_manage(owner, owner, member) and may_manage(owner, member)
    assert may_manage(admin, member, admin) and may_manage(admin, admin)
    assert not may_manage(admin, owner) and not may_manage(admin, member, owner)
    assert not may_manage(member, member, member)
    assert may_invite(owner, owner) and may_invite(admin, admin)
    assert not may_invite(admin, owner) and not may_invite(member, member)


async def test_removal_rules(app, client, smtp_server):
    owner = await register(client)
    team = await create_team(client, owner)
    admin = await join(app, client, smtp_server, owner, team, "admin")
    other_admin = await join(app, client, smtp_server, owner, team, "admin")
    member = await join(app, client, smtp_server, owner, team)
    owner_id, other_admin_id, member_id = [
        await user_id_of(client, a) for a in (owner, other_admin, member)
    ]

    async def remove(actor, target):
        return await client.delete(f"{API}/tenants/{team}/members/{target}", headers=actor.headers)

    assert (await remove(member, other_admin_id)).status_code == 403
    refused = await remove(admin, owner_id)
    assert refused.status_code == 403 and refused.json()["error"] == "role_required"
    assert (await remove(admin, other_admin_id)).status_code == 204
    assert (await remove(admin, member_id)).status_code == 204
    missing = await remove(admin, member_id)
    assert missing.status_code == 404 and missing.json()["error"] == "member_not_found"
    assert await members(client, owner, team) == {owner.email: "owner", admin.email: "admin"}


async def test_a_bad_token_is_a_401_whatever_the_header_names(client):
    owner = await register(client)
    team = await create_team(client, owner)
    headers = {"Authorization": "Bearer not-a-token", "X-Tenant-Id": str(team)}
    response = await client.get(f"{API}/credits", headers=headers)
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"
    logout = await client.post(
        f"{API}/auth/logout", json={"refresh_token": owner.refresh_token}, headers=owner.headers
    )
    assert logout.status_code == 204
    ended = await client.get(f"{API}/credits", headers=acting(owner, team))
    assert ended.status_code == 401 and ended.json()["error"] == "invalid_token"
