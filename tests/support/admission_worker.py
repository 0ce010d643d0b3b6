"""A worker process that hammers admission (for tests/test_multiworker.py).

Kept apart from the test module so that each spawned process imports only the
quota service, not the whole test suite's dependencies.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from app.billing.tiers import TierTable
from app.credits.service import CreditService
from app.db import Database
from app.errors import AppError
from app.quota.service import QuotaService
from app.work import Charge, Identity, IdentityKind
from tests.support.settings import make_settings

HAMMER_PROCESSES = 4
HAMMER_TASKS = 8  # units in flight at once per process
HAMMER_VISITORS = [f"hammer-{n}" for n in range(4)]
HAMMER_ADDRESS = "198.18.0.1"  # every visitor's: they share the address's budgets
HAMMER_LIMITS = {
    "MAX_CONCURRENT_TASK_TREES_PER_USER": 2,
    "MAX_CONCURRENT_TASK_TREES": 5,
    "RATE_LIMIT_DAILY_PER_USER": 40,
    "RATE_LIMIT_DAILY_LLM_PER_USER": 5,
    "RATE_LIMIT_DAILY_PER_IP": 1_000_000,
    "RATE_LIMIT_DAILY_LLM_PER_IP": 10,
}


@dataclass
class HammerResult:
    held: list[tuple[str, float, float]]  # visitor, admitted, finishing (CLOCK_MONOTONIC)
    llm_units: int
    refusals: dict[str, int]


def hammer_admission(url: str, data_dir: str, ready, start, results) -> None:
    """One worker process: HAMMER_TASKS units at once, each retried until its visitor's
    daily quota refuses it. Every admitted unit holds its slots through a short piece
    of work, between two timestamps of the machine-wide monotonic clock."""
    results.put(asyncio.run(_hammer(url, data_dir, ready, start)))


async def _hammer(url: str, data_dir: str, ready, start) -> HammerResult:
    settings = make_settings(url, Path(data_dir), **HAMMER_LIMITS)
    db = Database(url, settings)
    tiers = TierTable(settings)
    quotas = QuotaService(db, settings, tiers, CreditService(db, settings, tiers))
    result = HammerResult(held=[], llm_units=0, refusals={})

    async def unit_after_unit(visitor: str) -> None:
        identity = Identity(IdentityKind.ANONYMOUS, f"anon:{visitor}", HAMMER_ADDRESS)
        for _ in range(5000):
            try:
                admission = await quotas.admit(identity, None, None)
            except AppError as refusal:
                result.refusals[refusal.error] = result.refusals.get(refusal.error, 0) + 1
                if refusal.error == "daily_quota":
                    return
                continue
            admitted = time.monotonic()
            await asyncio.sleep(0.002)  # the unit's work
            result.held.append((visitor, admitted, time.monotonic()))
            result.llm_units += admission.unit.llm.use_llm
            await quotas.finish(admission, Charge.FULL)
        raise AssertionError(f"{visitor} was never refused its daily quota")

    try:
        await quotas.status(
            Identity(IdentityKind.ANONYMOUS, "anon:warm-up", HAMMER_ADDRESS), premium=False
        )
        ready.set()
        await asyncio.to_thread(start.wait, 60)
        await asyncio.gather(
            *(
                unit_after_unit(HAMMER_VISITORS[n % len(HAMMER_VISITORS)])
                for n in range(HAMMER_TASKS)
            )
        )
    finally:
        await db.dispose()
    return result
