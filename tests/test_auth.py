from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta

import bcrypt
import pytest

from app.auth.security import TokenCodec
from app.cli import promote_admin
from tests.support.builders import PASSWORD, register, unique_email

pytestmark = pytest.mark.usefixtures("backend")


def _assert_error(response, status: int, error: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "message", "request_id"}
    assert body["request_id"] == response.headers["x-request-id"]
    if error:
        assert body["error"] == error
    return body


async def test_register_login_me(client):
    email = unique_email("Ada")
    account = await register(client, email=email.upper())
    me = await client.get("/api/v1/auth/me", headers=account.headers)
    assert me.status_code == 200
    profile = me.json()
    assert profile["email"] == email.lower()
    assert profile["tier"] == "free"
    assert profile["is_admin"] is False

    login = await client.post(
        "/api/v1/auth/login", json={"email": email.lower(), "password": PASSWORD}
    )
    assert login.status_code == 200
    assert login.json()["token_type"] == "bearer"
    again = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    )
    assert again.json()["tenant_id"] == profile["tenant_id"]


async def test_wrong_password_and_unknown_email_are_the_same_401(client, monkeypatch):
    account = await register(client)
    checks: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def counting_checkpw(password: bytes, hashed: bytes) -> bool:
        checks.append(hashed)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)

    wrong = await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": "not the password"}
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": unique_email("ghost"), "password": "whatever1"}
    )
    body_wrong = _assert_error(wrong, 401, "invalid_credentials")
    body_unknown = _assert_error(unknown, 401, "invalid_credentials")
    assert body_wrong["message"] == body_unknown["message"]
    # Both paths pay for exactly one bcrypt check (a dummy hash for the unknown email),
    # at the same cost factor, so neither is measurably faster.
    assert len(checks) == 2
    assert checks[0][:7] == checks[1][:7]


async def test_duplicate_email_in_any_case_is_409(client):
    account = await register(client)
    response = await client.post(
        "/api/v1/auth/register", json={"email": account.email.upper(), "password": PASSWORD}
    )
    _assert_error(response, 409, "email_taken")


async def test_concurrent_registrations_of_one_email_create_one_account(client):
    email = unique_email("race")
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
            for _ in range(5)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409]


@pytest.mark.parametrize(
    "password",
    ["a" * 73, "é" * 37],  # the second is only 37 characters but 74 bytes
    ids=["73-ascii", "74-bytes-utf8"],
)
async def test_password_over_72_bytes_is_refused(client, password):
    response = await client.post(
        "/api/v1/auth/register", json={"email": unique_email(), "password": password}
    )
    body = _assert_error(response, 422, "validation_error")
    assert "72 bytes" in body["message"]
    assert password not in response.text


async def test_password_of_exactly_72_bytes_is_accepted(client):
    account = await register(client, password="p" * 72)
    login = await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": "p" * 72}
    )
    assert login.status_code == 200


async def test_missing_token_is_401(client):
    response = await client.get("/api/v1/auth/me")
    _assert_error(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_bad_access_tokens_are_401(client, settings):
    account = await register(client)
    codec = TokenCodec(settings)
    claims = codec.decode(account.access_token, "access")
    header, payload, signature = account.access_token.split(".")

    expired = codec.encode(
        "access", claims["sub"], timedelta(seconds=-60), tid=claims["tid"], ver=claims["ver"]
    )
    tampered_payload = _b64({**claims, "sub": "00000000-0000-0000-0000-000000000000"})
    alg_none = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]

    for token in (
        expired.token,
        f"{header}.{tampered_payload}.{signature}",
        f"{header}.{payload}.{flipped}",
        alg_none,
        account.refresh_token,  # a refresh token is never an access token
        "not-a-jwt",
    ):
        response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        _assert_error(response, 401)


async def test_token_signed_with_other_secret_is_401(client, settings):
    account = await register(client)
    claims = TokenCodec(settings).decode(account.access_token, "access")
    forged = TokenCodec(settings.model_copy(update={"JWT_SECRET": "x" * 40})).encode(
        "access", claims["sub"], timedelta(minutes=5), tid=claims["tid"], ver=claims["ver"]
    )
    response = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {forged.token}"}
    )
    _assert_error(response, 401, "invalid_token")


async def test_refresh_rotates_and_reuse_revokes_the_family(client):
    account = await register(client)
    first = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert first.status_code == 200
    newest = first.json()["refresh_token"]
    assert newest != account.refresh_token
    assert (
        await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {first.json()['access_token']}"}
        )
    ).status_code == 200

    # The old token comes back: treat it as stolen and revoke the family.
    replay = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    _assert_error(replay, 401, "invalid_token")
    newest_after = await client.post("/api/v1/auth/refresh", json={"refresh_token": newest})
    _assert_error(newest_after, 401, "invalid_token")


async def test_refresh_families_are_independent(client):
    account = await register(client)
    other_login = await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    other_refresh = other_login.json()["refresh_token"]
    await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    # Reuse in the first family leaves the second login's family alone.
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": other_refresh})
    assert response.status_code == 200


async def test_concurrent_refresh_of_one_token_succeeds_once(client):
    account = await register(client)
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
            for _ in range(4)
        )
    )
    assert sum(r.status_code == 200 for r in responses) == 1
    assert all(r.status_code in (200, 401) for r in responses)


async def test_access_token_is_not_a_refresh_token(client):
    account = await register(client)
    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.access_token}
    )
    _assert_error(response, 401, "invalid_token")


async def test_logout_revokes_the_family(client):
    account = await register(client)
    rotated = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    newest = rotated.json()["refresh_token"]
    logout = await client.post("/api/v1/auth/logout", json={"refresh_token": newest})
    assert logout.status_code == 204
    after = await client.post("/api/v1/auth/refresh", json={"refresh_token": newest})
    _assert_error(after, 401, "invalid_token")


async def test_logout_with_garbage_is_401(client):
    response = await client.post("/api/v1/auth/logout", json={"refresh_token": "garbage"})
    _assert_error(response, 401, "invalid_token")


@pytest.mark.parametrize(
    "body",
    [{}, {"email": "not-an-email", "password": PASSWORD}, {"email": "a@example.com"}],
    ids=["empty", "bad-email", "no-password"],
)
async def test_register_validation_errors(client, body):
    response = await client.post("/api/v1/auth/register", json=body)
    payload = _assert_error(response, 422, "validation_error")
    assert payload["details"]


@pytest.mark.parametrize(
    "settings_overrides", [{"ADMIN_EMAILS": "Boss@Example.com, other@example.com"}]
)
async def test_registering_an_admin_email_does_not_make_an_admin(client, settings):
    # Anyone can register any address: being listed proves nothing until it is verified.
    listed = await register(client, email="boss@example.com")
    me = await client.get("/api/v1/auth/me", headers=listed.headers)
    assert me.json()["is_admin"] is False
    admin_only = await client.get("/api/v1/demo/stats", headers=listed.headers)
    _assert_error(admin_only, 403, "admin_required")

    # The operator's command is the way in; the flag is read live, so the same
    # access token is an admin's on its next request.
    assert await promote_admin(settings, "Boss@Example.com") is True
    me = await client.get("/api/v1/auth/me", headers=listed.headers)
    assert me.json()["is_admin"] is True
    assert (await client.get("/api/v1/demo/stats", headers=listed.headers)).status_code == 200
    assert await promote_admin(settings, unique_email("nobody")) is False


@pytest.mark.parametrize(
    "settings_overrides",
    [{"AUTH_RATE_LIMIT_PER_ACCOUNT": "3/minute", "AUTH_RATE_LIMIT_PER_IP": "100/minute"}],
)
async def test_login_is_throttled_per_account(client):
    account = await register(client)
    statuses = []
    for _ in range(4):
        response = await client.post(
            "/api/v1/auth/login", json={"email": account.email, "password": "wrong-password"}
        )
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429]
    assert int(response.headers["retry-after"]) >= 1
    _assert_error(response, 429, "rate_limited")
    # Another account from the same IP is not affected.
    other = await register(client)
    ok = await client.post("/api/v1/auth/login", json={"email": other.email, "password": PASSWORD})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "settings_overrides",
    [{"AUTH_RATE_LIMIT_PER_IP": "2/minute", "AUTH_RATE_LIMIT_PER_ACCOUNT": "100/minute"}],
)
async def test_register_is_throttled_per_ip(client):
    for _ in range(2):
        await register(client)
    response = await client.post(
        "/api/v1/auth/register", json={"email": unique_email(), "password": PASSWORD}
    )
    _assert_error(response, 429, "rate_limited")
    assert "retry-after" in response.headers
