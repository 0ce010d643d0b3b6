"""Builders for test objects, going through the public API where possible."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import httpx

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
