"""Verification, recovery, password change, sessions, address identity, abuse limits."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.mail.support import SMTPServer, smtp_server, token_of
from tests.support.builders import PASSWORD, Account, client_for, register

__all__ = ["smtp_server"]

API = "/api/v1"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def settings_overrides(smtp_server: SMTPServer) -> dict[str, object]:
    return {
        **smtp_server.settings,
        "ADMIN_EMAILS": "boss@example.com",
        "VERIFIED_EMAIL_REQUIRED_FOR": "checkout,plugin_submission",
    }


async def mailed_token(app: FastAPI, smtp: SMTPServer, address: str) -> str:
    await app.state.mailer.join()
    return token_of(smtp.inbox.to(address)[-1])


async def verify(app: FastAPI, client: httpx.AsyncClient, smtp: SMTPServer, account: Account):
    response = await client.post(f"{API}/auth/verify/request", headers=account.headers)
    assert response.status_code == 202, response.text
    token = await mailed_token(app, smtp, account.email.lower())
    return await client.post(f"{API}/auth/verify/confirm", json={"token": token})


async def me(client: httpx.AsyncClient, account: Account) -> httpx.Response:
    return await client.get(f"{API}/auth/me", headers=account.headers)


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(f"{API}/auth/login", json={"email": email, "password": password})


# --- verification -------------------------------------------------------------------


async def test_verification_is_single_use_and_sets_the_flag(app, client, smtp_server):
    account = await register(client)
    assert (await me(client, account)).json()["email_verified"] is False
    response = await client.post(f"{API}/auth/verify/request", headers=account.headers)
    assert response.status_code == 202
    token = await mailed_token(app, smtp_server, account.email)

    confirmed = await client.post(f"{API}/auth/verify/confirm", json={"token": token})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json() == {"email": account.email, "email_verified": True, "is_admin": False}
    assert (await me(client, account)).json()["email_verified"] is True

    again = await client.post(f"{API}/auth/verify/confirm", json={"token": token})
    assert again.status_code == 400 and again.json()["error"] == "invalid_token"
    refused = await client.post(f"{API}/auth/verify/request", headers=account.headers)
    assert refused.status_code == 409 and refused.json()["error"] == "email_already_verified"


async def test_a_newer_token_replaces_the_older_one(app, client, smtp_server):
    account = await register(client)
    await client.post(f"{API}/auth/verify/request", headers=account.headers)
    first = await mailed_token(app, smtp_server, account.email)
    await client.post(f"{API}/auth/verify/request", headers=account.headers)
    second = await mailed_token(app, smtp_server, account.email)
    assert first != second
    stale = await client.post(f"{API}/auth/verify/confirm", json={"token": first})
    assert stale.status_code == 400
    fresh = await client.post(f"{API}/auth/verify/confirm", json={"token": second})
    assert fresh.status_code == 200


async def test_made_up_token_is_refused(client):
    response = await client.post(f"{API}/auth/verify/confirm", json={"token": "x" * 43})
    assert response.status_code == 400
    assert set(response.json()) >= {"error", "message", "request_id"}


async def test_admin_emails_promote_only_once_verified(app, client, smtp_server):
    boss = await register(client, "Boss@Example.com")
    assert (await me(client, boss)).json()["is_admin"] is False
    pending = await client.get(f"{API}/admin/plugins/pending", headers=boss.headers)
    assert pending.status_code == 403

    response = await verify(app, client, smtp_server, boss)
    assert response.json()["is_admin"] is True
    assert (await me(client, boss)).json()["is_admin"] is True
    pending = await client.get(f"{API}/admin/plugins/pending", headers=boss.headers)
    assert pending.status_code == 200


async def test_verified_address_required_for_configured_features(app, client, smtp_server):
    account = await register(client)
    checkout = await client.post(
        f"{API}/billing/checkout", json={"tier": "pro"}, headers=account.headers
    )
    assert checkout.status_code == 403 and checkout.json()["error"] == "email_unverified"
    manifest = {
        "id": "my-plugin",
        "name": "Mine",
        "version": "1.0.0",
        "category": "productivity",
        "permissions": ["read:tasks"],
    }
    submit = await client.post(f"{API}/plugins", json=manifest, headers=account.headers)
    assert submit.status_code == 403 and submit.json()["error"] == "email_unverified"

    assert (await verify(app, client, smtp_server, account)).status_code == 200
    checkout = await client.post(
        f"{API}/billing/checkout", json={"tier": "pro"}, headers=account.headers
    )
    assert checkout.status_code == 200, checkout.text
    submit = await client.post(f"{API}/plugins", json=manifest, headers=account.headers)
    assert submit.status_code == 201, submit.text


# --- recovery and change --------------------------------------------------------------


async def test_forgot_answers_the_same_for_unknown_addresses(app, client, smtp_server):
    account = await register(client)
    known = await client.post(f"{API}/auth/password/forgot", json={"email": account.email})
    unknown = await client.post(f"{API}/auth/password/forgot", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    await app.state.mailer.join()
    assert len(smtp_server.inbox.to(account.email)) == 1
    assert smtp_server.inbox.to("nobody@example.com") == []


async def test_reset_sets_the_password_and_ends_every_session(app, client, smtp_server):
    account = await register(client)
    other = await login(client, account.email, PASSWORD)
    await client.post(f"{API}/auth/password/forgot", json={"email": account.email})
    token = await mailed_token(app, smtp_server, account.email)

    short = await client.post(
        f"{API}/auth/password/reset", json={"token": token, "new_password": "short"}
    )
    assert short.status_code == 422
    reset = await client.post(
        f"{API}/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert reset.status_code == 204, reset.text
    again = await client.post(
        f"{API}/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert again.status_code == 400

    assert (await me(client, account)).status_code == 401
    for refresh in (account.refresh_token, other.json()["refresh_token"]):
        response = await client.post(f"{API}/auth/refresh", json={"refresh_token": refresh})
        assert response.status_code == 401
    assert (await login(client, account.email, PASSWORD)).status_code == 401
    assert (await login(client, account.email, NEW_PASSWORD)).status_code == 200
    await app.state.mailer.join()
    assert smtp_server.inbox.to(account.email)[-1]["Subject"] == "Your password was changed"


async def test_a_password_change_voids_reset_links_mailed_before_it(app, client, smtp_server):
    account = await register(client)
    await client.post(f"{API}/auth/password/forgot", json={"email": account.email})
    token = await mailed_token(app, smtp_server, account.email)
    changed = await client.post(
        f"{API}/auth/password/change",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert changed.status_code == 200, changed.text
    late = await client.post(
        f"{API}/auth/password/reset",
        json={"token": token, "new_password": "somebody else's passphrase"},
    )
    assert late.status_code == 400 and late.json()["error"] == "invalid_token"
    assert (await login(client, account.email, NEW_PASSWORD)).status_code == 200


async def test_change_needs_the_current_password(app, client):
    account = await register(client)
    other = (await login(client, account.email, PASSWORD)).json()
    wrong = await client.post(
        f"{API}/auth/password/change",
        json={"current_password": "not it at all", "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert wrong.status_code == 403 and wrong.json()["error"] == "invalid_password"
    changed = await client.post(
        f"{API}/auth/password/change",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert changed.status_code == 200, changed.text
    fresh = changed.json()
    # The caller goes on with new tokens; every other session and token is over.
    assert (await client.get(f"{API}/auth/me", headers=auth(fresh))).status_code == 200
    assert (await me(client, account)).status_code == 401
    assert (await client.get(f"{API}/auth/me", headers=auth(other))).status_code == 401
    stale = await client.post(f"{API}/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert stale.status_code == 401
    assert (await login(client, account.email, NEW_PASSWORD)).status_code == 200


def auth(tokens: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


# --- sessions --------------------------------------------------------------------------


async def test_sessions_list_end_one_and_logout_all(app, client):
    account = await register(client)
    async with client_for(app, ip="198.51.100.7", headers={"User-Agent": "Adiuva/2.0"}) as laptop:
        second = (await login(laptop, account.email, PASSWORD)).json()
        refreshed = await laptop.post(
            f"{API}/auth/refresh", json={"refresh_token": second["refresh_token"]}
        )
        second = refreshed.json()

    listed = await client.get(f"{API}/auth/sessions", headers=account.headers)
    assert listed.status_code == 200, listed.text
    sessions = listed.json()["sessions"]
    assert len(sessions) == 2
    laptop_session = next(s for s in sessions if s["user_agent"] == "Adiuva/2.0")
    mine = next(s for s in sessions if s["current"])
    assert laptop_session["ip_address"] == "198.51.100.7" and not laptop_session["current"]
    assert laptop_session["last_used_at"] > laptop_session["created_at"]
    assert mine["ip_address"] == "203.0.113.10"

    intruder = await register(client)
    foreign = await client.delete(
        f"{API}/auth/sessions/{laptop_session['id']}", headers=intruder.headers
    )
    assert foreign.status_code == 404 and foreign.json()["error"] == "session_not_found"

    ended = await client.delete(
        f"{API}/auth/sessions/{laptop_session['id']}", headers=account.headers
    )
    assert ended.status_code == 204
    dead = await client.post(f"{API}/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert dead.status_code == 401
    # Access tokens end too; this device refreshes into a new one.
    assert (await me(client, account)).status_code == 401
    renewed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert renewed.status_code == 200
    tokens = renewed.json()
    (only,) = (await client.get(f"{API}/auth/sessions", headers=auth(tokens))).json()["sessions"]
    assert only["id"] == mine["id"] and only["current"]

    out = await client.post(f"{API}/auth/logout-all", headers=auth(tokens))
    assert out.status_code == 204
    assert (await client.get(f"{API}/auth/me", headers=auth(tokens))).status_code == 401
    gone = await client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert gone.status_code == 401
    assert (await client.get(f"{API}/auth/sessions", headers=intruder.headers)).json()["sessions"][
        0
    ]["current"]


# --- address identity ----------------------------------------------------------------


async def test_full_width_address_is_the_same_account(client):
    await register(client, "alice@example.com")
    response = await client.post(
        f"{API}/auth/register", json={"email": "ａlice@ｅxample.com", "password": PASSWORD}
    )
    assert response.status_code == 409 and response.json()["error"] == "email_taken"
    assert (await login(client, "ＡＬＩＣＥ@example.com", PASSWORD)).status_code == 200


async def test_mixed_script_address_is_refused(client):
    response = await client.post(
        f"{API}/auth/register", json={"email": "\u0430lice@example.com", "password": PASSWORD}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["details"][0]["type"] == "confusable_email"
    assert "look-alike" in body["message"]


# --- abuse limits --------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "ACCOUNT_MAIL_RATE_LIMIT_PER_ACCOUNT": "2/hour",
            "ACCOUNT_TOKEN_RATE_LIMIT_PER_IP": "3/hour",
        }
    ],
)
async def test_mail_and_token_routes_are_limited(client):
    address = {"email": "someone@example.com"}
    for _ in range(2):
        ok = await client.post(f"{API}/auth/password/forgot", json=address)
        assert ok.status_code == 202
    limited = await client.post(f"{API}/auth/password/forgot", json=address)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert set(limited.json()) >= {"error", "message", "request_id"}
    # Per address: another address still gets its message.
    other = await client.post(f"{API}/auth/password/forgot", json={"email": "b@example.com"})
    assert other.status_code == 202

    for _ in range(3):
        bad = await client.post(f"{API}/auth/verify/confirm", json={"token": "guess"})
        assert bad.status_code == 400
    limited = await client.post(f"{API}/auth/verify/confirm", json={"token": "guess"})
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
