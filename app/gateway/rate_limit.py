"""Tier rate limit: a moving 60-second window per identity, sized by the live tier.

Windows: a user's own; a demo session's own (keyed by a hash of the session id, so
the store never holds the credential), sized by the tier demo sessions count as
(free, from the tier table); anonymous callers share one window per address. A
request whose credential does not hold is counted in its address's anonymous
window — never in the window of the user or session it names, which a holder of a
stale or stolen token could otherwise drain — and refused with 401 (close 1008
on the WebSocket) on every limited route, before any route or the quota gate.

Pure ASGI; HTTP and WebSocket alike. Every limited response carries
`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; a refusal is a
429 with `Retry-After`. The window store is memory (one process) or Redis
(shared by every worker and host). If the store fails, `RATE_LIMIT_FAIL_OPEN`
decides: let the request through (default, logged) or refuse it with 503.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from limits import RateLimitItemPerMinute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.demo.session_ref import session_ref
from app.errors import ServiceUnavailable, TooManyRequests
from app.gateway.identity import RATE_KEY, credential_refusal, set_cookie_header
from app.gateway.responses import refuse
from app.gateway.services import gateway_of, identity_of
from app.kit.policy import RoutePolicies
from app.kit.ratelimit import WINDOW_STORE_ERRORS
from app.kit.sql import STORE_ERRORS
from app.work import Identity, IdentityKind

log = logging.getLogger(__name__)


@lru_cache(maxsize=256)
def _per_minute(amount: int) -> RateLimitItemPerMinute:
    """One limit item per rate (a handful: tiers × team sizes), not one per request."""
    return RateLimitItemPerMinute(amount)


def window_key(identity: Identity) -> str:
    """The moving window an identity's requests count in."""
    if identity.kind is IdentityKind.USER:
        # A team workspace's members share its window (sized per seat).
        return identity.extra.get(RATE_KEY, identity.subject)
    if identity.kind is IdentityKind.DEMO and identity.demo_session_id is not None:
        return f"demo:{session_ref(identity.demo_session_id)}"
    return f"ip:{identity.ip}"  # anonymous visitors, and credentials that did not hold


class TierRateLimitMiddleware:
    def __init__(self, app: ASGIApp, policies: RoutePolicies) -> None:
        self.app = app
        self.policies = policies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.policies.of(scope).rate_limited:
            await self.app(scope, receive, send)
            return

        gateway = gateway_of(scope)
        try:
            identity = await identity_of(scope)
        except STORE_ERRORS as exc:
            log.error("identity store unavailable", exc_info=exc)
            await refuse(
                scope,
                receive,
                send,
                ServiceUnavailable(
                    "Service temporarily unavailable.", error="identity_unavailable"
                ),
            )
            return
        amount = gateway.tiers.rate_per_minute(identity.tier, identity.seats)
        headers: list[tuple[str, str]] = []
        try:
            result = await gateway.window.hit(_per_minute(amount), "tier", window_key(identity))
        except WINDOW_STORE_ERRORS as exc:
            log.warning("rate limit store unavailable", exc_info=exc)
            if not gateway.settings.RATE_LIMIT_FAIL_OPEN:
                await refuse(
                    scope,
                    receive,
                    send,
                    ServiceUnavailable(
                        "Rate limiting is temporarily unavailable; try again shortly.",
                        error="rate_limit_unavailable",
                        headers={"Retry-After": "5"},
                    ),
                )
                return
        else:
            headers = [
                ("RateLimit-Limit", str(result.limit)),
                ("RateLimit-Remaining", str(result.remaining)),
                ("RateLimit-Reset", str(result.reset_after)),
            ]
            if not result.allowed:
                await refuse(
                    scope,
                    receive,
                    send,
                    TooManyRequests(
                        f"Rate limit of {result.limit} requests per minute exceeded; "
                        f"retry in {result.reset_after} s.",
                        retry_after=result.reset_after,
                    ),
                    headers,
                )
                return

        if identity.invalid_credentials:
            await refuse(scope, receive, send, credential_refusal(identity), headers)
            return

        cookie = None
        if identity.new_cookie is not None:
            cookie = set_cookie_header(
                identity.new_cookie,
                secure=gateway.settings.ENV != "dev" and gateway.settings.ENV != "test",
                max_age_days=gateway.settings.DEMO_COOKIE_MAX_AGE_DAYS,
            )
        # Raw header pairs, appended as they are: no route sets these headers itself.
        extra = [(name.lower().encode(), value.encode()) for name, value in headers]
        if cookie is not None:
            extra.append(cookie)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and extra:
                message["headers"] = [*message.get("headers", ()), *extra]
            elif message["type"] == "websocket.accept" and cookie is not None:
                message["headers"] = [*message.get("headers", []), cookie]
            await send(message)

        await self.app(scope, receive, send_with_headers)
