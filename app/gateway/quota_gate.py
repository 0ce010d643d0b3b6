"""Demo/quota gate: admits units of work, refuses demo-restricted operations.

Only units of work (chat over REST or WebSocket, demo example runs) touch the
quota store; every other request passes with a set lookup. An admitted unit
holds its concurrency leases for its whole life — the response, or the whole
WebSocket stream — and gives them back on completion, error, cancellation and
client disconnect; a crashed worker's leases lapse after LEASE_TTL_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.demo.restrictions import demo_restriction, restriction_error
from app.errors import AppError
from app.gateway.byok import llm_key_from_headers
from app.gateway.identity import IdentityKind
from app.gateway.policy import RoutePolicies, method_of
from app.gateway.responses import refuse
from app.gateway.services import Gateway, gateway_of, identity_of
from app.metrics import ACTIVE_UNITS, DEMO_FALLBACKS
from app.quota.repository import Lease

log = logging.getLogger(__name__)


class QuotaGateMiddleware:
    def __init__(self, app: ASGIApp, policies: RoutePolicies) -> None:
        self.app = app
        self.policies = policies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        policy = self.policies.of(scope)
        if not policy.rate_limited:
            await self.app(scope, receive, send)
            return
        method = method_of(scope)
        identity = await identity_of(scope)
        if identity.kind is IdentityKind.DEMO:
            operation = demo_restriction(method, scope["path"])
            if operation is not None:
                await refuse(scope, receive, send, restriction_error(operation))
                return
        if not policy.unit_of_work or identity.invalid_credentials:
            # Not a unit of work, or a bad credential the route itself will refuse.
            await self.app(scope, receive, send)
            return

        gateway = gateway_of(scope)
        state = scope.setdefault("state", {})
        try:
            llm_key = llm_key_from_headers(scope.get("headers", []))
            admission = await gateway.quotas.admit(identity, llm_key, state.get("request_id"))
        except AppError as error:
            await refuse(scope, receive, send, error)
            return
        state["unit_of_work"] = admission.unit
        if not admission.unit.llm.use_llm:
            DEMO_FALLBACKS.labels(admission.unit.llm.fallback_reason or "unknown").inc()
        ACTIVE_UNITS.inc()
        renewer = asyncio.create_task(_keep_alive(gateway, admission.leases))
        released = False

        async def release() -> None:
            nonlocal released
            if not released:
                released = True
                renewer.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.gather(renewer, return_exceptions=True)
                    await gateway.quotas.release(admission.leases)

        async def send_releasing_first(message: Message) -> None:
            # Give the slots back before the client sees the end, so it can start its
            # next unit at once without meeting its own finished one.
            if message["type"] == "websocket.close" or (
                message["type"] == "http.response.body" and not message.get("more_body", False)
            ):
                await release()
            await send(message)

        async def receive_releasing_on_disconnect() -> Message:
            message = await receive()
            # The client has gone: its slot is free now, not when the handler ends.
            if message["type"] in ("websocket.disconnect", "http.disconnect"):
                await release()
            return message

        try:
            await self.app(scope, receive_releasing_on_disconnect, send_releasing_first)
        finally:
            ACTIVE_UNITS.dec()
            await release()


async def _keep_alive(gateway: Gateway, leases: list[Lease]) -> None:
    """Renew the leases while a long unit (a WebSocket stream) runs."""
    interval = max(1.0, gateway.settings.LEASE_TTL_SECONDS / 3)
    while True:
        await asyncio.sleep(interval)
        try:
            await gateway.quotas.renew(leases)
        except Exception:
            log.exception("could not renew concurrency leases")
