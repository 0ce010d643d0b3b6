"""The unit-of-work contract between the gateway, the quota and credit stores, and chat.

This module imports nothing else of the application, so every domain can
depend on it without depending on the others.

Who is calling is an `Identity` (resolved once per request by the gateway).
The gate (middleware) admits a unit of work — a chat request over REST or
WebSocket, or a demo example run — and leaves a `UnitOfWork` in the request
scope; on the WebSocket the route asks for it through `UnitAdmission.admit()`
when the first valid request frame arrives. The chat layer asks it one
question, "may I call the LLM, with which key, or must I fall back to the demo
answers?" (`unit.llm`), and wraps every
LLM call in `unit.metered_call()`, which reserves credits before the call and
settles them to the real cost afterwards (or releases them if nothing was
spent), even when the client disconnects mid-stream.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: at run time this module imports nothing of the app
    from app.models.enums import BillingTier

FREE_TIER = "free"


class IdentityKind(StrEnum):
    USER = "user"
    DEMO = "demo"
    ANONYMOUS = "anonymous"


@dataclass(slots=True)
class Identity:
    """Who is calling, as SPEC §3.1 orders it (see app/gateway/identity.py)."""

    kind: IdentityKind
    subject: str  # the key quotas and limits are counted against
    ip: str
    tier: BillingTier = FREE_TIER  # type: ignore[assignment]
    seats: int = 1
    user_id: uuid.UUID | None = None
    tenant_id: uuid.UUID | None = None
    demo_session_id: str | None = None
    # A credential was sent but did not verify: the route will refuse it (401 / 1008).
    invalid_credentials: bool = False
    # Set on the first anonymous response.
    new_cookie: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate_key(self) -> str:
        """Anonymous callers share a rate limit per IP; everyone else has their own."""
        return f"ip:{self.ip}" if self.kind is IdentityKind.ANONYMOUS else self.subject

    @property
    def has_account(self) -> bool:
        return self.kind is IdentityKind.USER


@dataclass(frozen=True, slots=True)
class LLMKey:
    """The caller's own LLM key (`X-LLM-API-KEY`), for one request only; never printed."""

    provider: str
    key: str

    def __repr__(self) -> str:
        return f"LLMKey(provider={self.provider!r}, key='***')"


@dataclass(frozen=True, slots=True)
class LLMGrant:
    use_llm: bool  # False: answer from the demo fallback, not the LLM
    api_key: str | None = None  # the caller's BYOK key, for this request only
    provider: str | None = None  # provider of that key: "openai", "anthropic", …
    metered: bool = False  # True: reserve and settle credits around each LLM call
    fallback_reason: str | None = None

    @property
    def byok(self) -> bool:
        return self.api_key is not None

    def __repr__(self) -> str:  # never print the key
        key = "***" if self.api_key else None
        return (
            f"LLMGrant(use_llm={self.use_llm}, api_key={key}, provider={self.provider}, "
            f"metered={self.metered}, fallback_reason={self.fallback_reason})"
        )


@dataclass(slots=True)
class CreditMeter:
    """Collects the real cost of one LLM call (USD, from LiteLLM's usage accounting)."""

    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def record(self, cost_usd: float, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        self.cost_usd += max(0.0, cost_usd)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens


class CreditAccountant(Protocol):
    """Reserve → settle/release on a tenant's credit balance (see app/credits)."""

    async def reserve(self, unit: UnitOfWork, credits: int) -> str: ...

    async def settle(self, unit: UnitOfWork, reservation: str, meter: CreditMeter) -> None: ...


@dataclass(slots=True)
class UnitOfWork:
    subject: str  # the identity the quotas are counted against
    tier: BillingTier
    llm: LLMGrant
    request_id: str | None = None
    user_id: uuid.UUID | None = None
    tenant_id: uuid.UUID | None = None
    demo_session_id: str | None = None
    accountant: CreditAccountant | None = field(default=None, repr=False)
    default_estimate: int = 0

    @property
    def is_demo(self) -> bool:
        return self.user_id is None

    @asynccontextmanager
    async def metered_call(self, estimate_credits: int | None = None) -> AsyncIterator[CreditMeter]:
        """Reserve credits for one LLM call, then settle them to what the meter recorded.

        Raises 402 `insufficient_credits` before the call if the balance cannot
        cover the estimate. Settles in `finally`, so a failed, cancelled or
        disconnected call is billed for what it really used (often nothing).
        """
        meter = CreditMeter()
        if not self.llm.metered or self.accountant is None:
            yield meter
            return
        estimate = self.default_estimate if estimate_credits is None else estimate_credits
        reservation = await self.accountant.reserve(self, estimate)
        try:
            yield meter
        finally:
            await self.accountant.settle(self, reservation, meter)


class UnitAdmission(Protocol):
    """A unit of work admitted when the route says it starts (a WebSocket's first request).

    `admit()` takes the quotas and slots (raises the gate's 429/503 refusals);
    `finish(status)` ends the unit: slots back at once, and the counts given back
    when the unit did no work (see `Charge`). Both are safe to call more than once.
    """

    async def admit(self) -> UnitOfWork: ...

    async def finish(self, status: int | None) -> None: ...


class Charge(StrEnum):
    """What a finished unit of work costs its caller, from how it ended."""

    FULL = "full"  # it did its work (or the client left while it ran)
    NO_LLM = "no_llm"  # a failure of ours (5xx, upstream 502/504): the LLM unit is given back
    NOTHING = "nothing"  # refused or invalid (4xx, a bad frame): every count is given back

    @classmethod
    def for_status(cls, status: int | None) -> Charge:
        """`status`: the HTTP status, or a WebSocket close code (4000 + HTTP status, or RFC 6455).

        None means the client went away first: the work was started for it, so it counts.
        """
        if status is None:
            return cls.FULL
        if status >= 4000:
            status -= 4000
        elif status >= 1000:
            status = _WS_CLOSE_AS_HTTP.get(status, 200)
        if 400 <= status < 500:
            return cls.NOTHING
        if status >= 500:
            return cls.NO_LLM
        return cls.FULL


# RFC 6455 close codes, as the HTTP outcome they stand for.
_WS_CLOSE_AS_HTTP = {
    1002: 400,  # protocol error
    1003: 415,  # unacceptable data
    1007: 422,  # invalid payload
    1008: 403,  # policy violation
    1009: 413,  # message too big
    1011: 500,  # internal error
    1012: 503,  # service restart
    1013: 503,  # try again later
}
