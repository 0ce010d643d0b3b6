"""Chat fixtures: the local OpenAI-compatible upstream, settings pointing at it, a fake
credit accountant for units of work built directly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from app.models import BillingTier
from app.work import CreditMeter, LLMGrant, UnitOfWork
from tests.chat.upstream import ServerThread, UpstreamState, build_app

BYOK_KEY = "sk-byokTESTkey-0123456789abcdef"
SERVER_KEY = "sk-serverkey-0123456789"
# Enough daily units that the quota gate never falls back in these tests.
ROOMY_QUOTAS = {
    "RATE_LIMIT_DAILY_PER_USER": 500,
    "RATE_LIMIT_DAILY_LLM_PER_USER": 500,
    "RATE_LIMIT_DAILY_PER_IP": 500,
    "RATE_LIMIT_DAILY_LLM_PER_IP": 500,
    "RATE_LIMIT_FREE_PER_MINUTE": 500,
}


@contextmanager
def running_upstream() -> Iterator[tuple[ServerThread, UpstreamState]]:
    """A local OpenAI-compatible upstream on its own port, for the block."""
    state = UpstreamState()
    server = ServerThread(build_app(state)).start()
    try:
        yield server, state
    finally:
        state.release.set()
        server.stop()


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[tuple[ServerThread, UpstreamState]]:
    with running_upstream() as upstream:
        yield upstream


def fresh_state(upstream: tuple[ServerThread, UpstreamState]) -> Iterator[UpstreamState]:
    """An upstream's state, reset for one test; anything still held is released after."""
    _, state = upstream
    state.reset()
    yield state
    state.release.set()


@pytest.fixture
def upstream(upstream_server) -> Iterator[UpstreamState]:
    yield from fresh_state(upstream_server)


@pytest.fixture
def upstream_settings(upstream_server) -> dict[str, object]:
    server, _ = upstream_server
    base = f"http://127.0.0.1:{server.port}/v1"
    return {
        **ROOMY_QUOTAS,
        "LLM_MODEL": "openai/gpt-4o-mini",
        "LLM_ROUTER_MODEL": "openai/gpt-4o-mini",
        "LLM_API_BASE": base,
        # BYOK calls never follow LLM_API_BASE: the test upstream is named for them too.
        "BYOK_API_BASES": {"openai": base},
        "LLM_API_KEY": SERVER_KEY,
        "LLM_TIMEOUT_SECONDS": 1.0,
    }


@dataclass
class FakeAccountant:
    """Records reserve → settle, as app/credits would do against the ledger."""

    reserved: list[int] = field(default_factory=list)
    settled: list[CreditMeter] = field(default_factory=list)

    async def reserve(self, unit: UnitOfWork, credits: int) -> str:
        self.reserved.append(credits)
        return f"r{len(self.reserved)}"

    async def settle(self, unit: UnitOfWork, reservation: str, meter: CreditMeter) -> None:
        self.settled.append(meter)

    @property
    def open(self) -> int:
        return len(self.reserved) - len(self.settled)


def metered_unit(accountant: FakeAccountant, api_key: str | None = None) -> UnitOfWork:
    return UnitOfWork(
        subject="user:test",
        tier=BillingTier.PRO,
        llm=LLMGrant(
            use_llm=True, api_key=api_key, provider="openai" if api_key else None, metered=True
        ),
        accountant=accountant,
        default_estimate=50,
    )
