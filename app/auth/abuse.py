"""Limits of the account routes that send mail or accept a token or a password.

Declared once here, per route, over the login throttle's mechanism (a moving window
per client address and per account, 429 with Retry-After); the numbers are settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from app.auth.throttle import AuthThrottle
from app.config import Settings
from app.kit.ratelimit import MovingWindow


class Guarded(StrEnum):
    """Each limited route; the value names its window."""

    VERIFY_REQUEST = "verify_request"
    VERIFY_CONFIRM = "verify_confirm"
    PASSWORD_FORGOT = "password_forgot"
    PASSWORD_RESET = "password_reset"
    PASSWORD_CHANGE = "password_change"
    ACCOUNT_DELETE = "account_delete"


SENDS_MAIL = frozenset({Guarded.VERIFY_REQUEST, Guarded.PASSWORD_FORGOT})


class AccountThrottles:
    def __init__(self, window: MovingWindow, settings: Settings) -> None:
        fail_open = settings.RATE_LIMIT_FAIL_OPEN
        self._mail = AuthThrottle(
            window,
            settings.ACCOUNT_MAIL_RATE_LIMIT_PER_IP,
            settings.ACCOUNT_MAIL_RATE_LIMIT_PER_ACCOUNT,
            fail_open=fail_open,
        )
        self._token = AuthThrottle(
            window,
            settings.ACCOUNT_TOKEN_RATE_LIMIT_PER_IP,
            settings.ACCOUNT_TOKEN_RATE_LIMIT_PER_ACCOUNT,
            fail_open=fail_open,
        )

    async def check(self, route: Guarded, ip: str, account: str | None = None) -> None:
        """Count one call from `ip` (and for `account`: an address or a user id)."""
        throttle = self._mail if route in SENDS_MAIL else self._token
        await throttle.check(route.value, ip, account)


@asynccontextmanager
async def account_throttles_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """Over the login throttle's window store (opened by the core lifespan)."""
    app.state.account_throttles = AccountThrottles(app.state.auth_throttle.window, settings)
    yield


async def get_account_throttles(request: Request) -> AccountThrottles:
    return request.app.state.account_throttles


AccountThrottlesDep = Annotated[AccountThrottles, Depends(get_account_throttles)]
