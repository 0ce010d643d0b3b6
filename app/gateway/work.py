"""What the quota gate grants a unit of work, and how the chat layer uses it.

The gate (middleware) admits a unit of work — a chat request over REST or
WebSocket, or a demo example run — and leaves a `UnitOfWork` in the request
scope. The chat layer asks it one question, "may I call the LLM, with which
key, or must I fall back to the demo answers?" (`unit.llm`), and wraps every
LLM call in `unit.metered_call()`, which reserves credits before the call and
settles them to the real cost afterwards (or releases them if nothing was
spent), even when the client disconnects mid-stream.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Protocol

from fastapi import Depends
from starlette.requests import HTTPConnection

from app.models import BillingTier


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


def get_unit_of_work(connection: HTTPConnection) -> UnitOfWork:
    """The unit the gate admitted for this request (REST or WebSocket)."""
    unit = connection.scope.get("state", {}).get("unit_of_work")
    if unit is None:
        raise RuntimeError(
            "no unit of work in scope: the route is not registered as a unit of work "
            "in app/gateway/quota_gate.py"
        )
    return unit


UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_unit_of_work)]

__all__ = ["CreditMeter", "LLMGrant", "UnitOfWork", "UnitOfWorkDep", "get_unit_of_work"]
