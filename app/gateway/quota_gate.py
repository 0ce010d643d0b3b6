"""Demo/quota gate: admits units of work, refuses demo-restricted operations.

Only routes declared as units of work (chat over REST or WebSocket, demo example
runs) touch the quota store; every other request passes after one policy lookup.

A unit is admitted when it starts (SPEC §12.1): a REST unit before its route
runs, a WebSocket unit when the route has a valid first request frame and calls
`UnitAdmission.admit()`. An open socket that has not started a unit holds
nothing but its place in the per-address cap on anonymous sockets.

An admitted unit holds its concurrency leases until it finishes — its response,
or the end of its stream — and gives them back on completion, error,
cancellation and client disconnect; a crashed worker's leases lapse after
LEASE_TTL_SECONDS. How it finished decides what it costs (`app.work.Charge`): a
unit refused or invalid (4xx, a bad frame) gives back every count it took, a
failure of ours (5xx) gives back its LLM count.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.demo.restrictions import demo_restriction, restriction_error
from app.errors import AppError, TooManyRequests
from app.gateway.identity import credential_refusal
from app.gateway.responses import refuse
from app.gateway.services import Gateway, gateway_of, identity_of
from app.kit.byok import LLM_KEY
from app.kit.policy import RoutePolicies, method_of
from app.kit.units import ADMITTED_UNIT, UNIT_ADMISSION
from app.metrics import ACTIVE_UNITS, DEMO_FALLBACKS
from app.quota.service import Admission
from app.work import Charge, Identity, IdentityKind, LLMKey, UnitOfWork

log = logging.getLogger(__name__)


class GatedUnit:
    """One unit of work's life at the gate: `admit()` once, `finish()` once (both idempotent)."""

    def __init__(
        self, gateway: Gateway, identity: Identity, llm_key: LLMKey | None, request_id: str | None
    ) -> None:
        self.gateway = gateway
        self.identity = identity
        self.llm_key = llm_key
        self.request_id = request_id
        self.admission: Admission | None = None
        self.finished = False
        self._renewer: asyncio.Task[None] | None = None

    async def admit(self) -> UnitOfWork:
        if self.admission is not None:
            return self.admission.unit
        if self.finished:
            raise RuntimeError("this unit of work has already finished")
        admission = await self.gateway.quotas.admit(self.identity, self.llm_key, self.request_id)
        self.admission = admission
        ACTIVE_UNITS.inc()
        if not admission.unit.llm.use_llm:
            DEMO_FALLBACKS.labels(admission.unit.llm.fallback_reason or "unknown").inc()
        self._renewer = asyncio.create_task(_keep_alive(self.gateway, admission.lease_id))
        return admission.unit

    async def finish(self, status: int | None) -> None:
        """End the unit: its slots back, with the counts a unit without work gives back.

        `status` is the HTTP status or WebSocket close code it ended with; None when
        the client went away while it ran.
        """
        if self.finished:
            return
        self.finished = True
        admission = self.admission
        if admission is None:
            return
        ACTIVE_UNITS.dec()
        with anyio.CancelScope(shield=True):
            if self._renewer is not None:
                self._renewer.cancel()
                await asyncio.gather(self._renewer, return_exceptions=True)
            await self.gateway.quotas.finish(admission, Charge.for_status(status))


class QuotaGateMiddleware:
    def __init__(self, app: ASGIApp, policies: RoutePolicies) -> None:
        self.app = app
        self.policies = policies
        # Open sockets per address from callers without an account, in this process:
        # each one costs this process memory and a file descriptor, whatever it sends.
        self.anonymous_sockets: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        policy = self.policies.of(scope)
        if not policy.rate_limited:
            await self.app(scope, receive, send)
            return
        identity = await identity_of(scope)
        if identity.invalid_credentials:
            # The rate limiter in front refuses these already; never admit one as anonymous.
            await refuse(scope, receive, send, credential_refusal(identity))
            return
        if identity.kind is IdentityKind.DEMO:
            operation = demo_restriction(method_of(scope), scope["path"])
            if operation is not None:
                await refuse(scope, receive, send, restriction_error(operation))
                return
        if not policy.unit_of_work:
            await self.app(scope, receive, send)
            return

        state = scope.setdefault("state", {})
        # Parsed and checked by the BYOK guard in front of the limiter.
        llm_key: LLMKey | None = state.get(LLM_KEY)
        unit = GatedUnit(gateway_of(scope), identity, llm_key, state.get("request_id"))
        if scope["type"] == "http":
            await self._http(scope, receive, send, unit)
        else:
            await self._websocket(scope, receive, send, unit)

    async def _http(self, scope: Scope, receive: Receive, send: Send, unit: GatedUnit) -> None:
        try:
            scope["state"][ADMITTED_UNIT] = await unit.admit()
        except AppError as error:
            await refuse(scope, receive, send, error)
            return
        status: int | None = None

        async def send_finishing_first(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Finish before the client sees the end, so it can start its next unit
                # at once without meeting this one's slot.
                await unit.finish(status)
            await send(message)

        async def receive_finishing_on_disconnect() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                await unit.finish(None)  # the client has gone: its slot is free now
            return message

        try:
            await self.app(scope, receive_finishing_on_disconnect, send_finishing_first)
        except asyncio.CancelledError:
            await unit.finish(None)
            raise
        except Exception:
            await unit.finish(500)
            raise
        finally:
            await unit.finish(status if status is not None else 500)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, unit: GatedUnit) -> None:
        identity = unit.identity
        address = None if identity.kind is IdentityKind.USER else identity.ip
        if address is not None:
            cap = unit.gateway.settings.WS_MAX_ANONYMOUS_PER_IP
            if self.anonymous_sockets[address] >= cap:
                error = TooManyRequests(
                    f"Too many open chat connections from this address (limit {cap}); "
                    "close one or sign in.",
                    error="too_many_connections",
                    retry_after=5,
                )
                await refuse(scope, receive, send, error)
                return
            self.anonymous_sockets[address] += 1
        scope["state"][UNIT_ADMISSION] = unit

        async def send_finishing_on_close(message: Message) -> None:
            if message["type"] == "websocket.close":
                await unit.finish(message.get("code", 1000))
            await send(message)

        async def receive_finishing_on_disconnect() -> Message:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await unit.finish(None)
            return message

        try:
            await self.app(scope, receive_finishing_on_disconnect, send_finishing_on_close)
        except asyncio.CancelledError:
            await unit.finish(None)
            raise
        except Exception:
            await unit.finish(1011)
            raise
        finally:
            await unit.finish(None)
            if address is not None:
                self.anonymous_sockets[address] -= 1
                if self.anonymous_sockets[address] <= 0:
                    del self.anonymous_sockets[address]


async def _keep_alive(gateway: Gateway, lease_id: str) -> None:
    """Renew the lease while a long unit (a WebSocket stream) runs."""
    interval = max(1.0, gateway.settings.LEASE_TTL_SECONDS / 3)
    while True:
        await asyncio.sleep(interval)
        try:
            await gateway.quotas.renew(lease_id)
        except Exception:
            log.exception("could not renew a concurrency lease")
