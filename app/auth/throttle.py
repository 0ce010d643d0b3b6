"""Bounds password guessing and hash flooding: login/register per IP and per account."""

from __future__ import annotations

import logging

from app.errors import ServiceUnavailable, TooManyRequests
from app.kit.ratelimit import WINDOW_STORE_ERRORS, MovingWindow, parse_limit

log = logging.getLogger(__name__)


class AuthThrottle:
    def __init__(
        self, window: MovingWindow, per_ip: str, per_account: str, *, fail_open: bool
    ) -> None:
        self.window = window
        self.per_ip = parse_limit(per_ip)
        self.per_account = parse_limit(per_account)
        self.fail_open = fail_open

    async def check(self, action: str, ip: str, account: str | None = None) -> None:
        checks = [(self.per_ip, ("auth", action, "ip", ip))]
        if account is not None:
            checks.append((self.per_account, ("auth", action, "account", account)))
        for item, identifiers in checks:
            try:
                result = await self.window.hit(item, *identifiers)
            except WINDOW_STORE_ERRORS as exc:
                # Same policy as the tier limiter: see README "Failure policy".
                log.warning("auth throttle storage unavailable", exc_info=exc)
                if self.fail_open:
                    return
                raise ServiceUnavailable("Rate limiter unavailable; try again shortly.") from exc
            if not result.allowed:
                raise TooManyRequests(
                    f"Too many {action} attempts; try again in {result.reset_after} s.",
                    retry_after=result.reset_after,
                )
