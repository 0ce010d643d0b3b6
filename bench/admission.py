"""Admission + release throughput of the quota gate on one worker, against PostgreSQL.

Calls the gate's `QuotaService` directly (no HTTP): each unit is admitted
(the caller's slot, the system slot, the daily counters) and finished (slots
back, counts kept), from `--concurrency` tasks at once in one process, as one
worker serves many requests at once. Anonymous callers, one per task, so the
per-identity limits never refuse. Three system-wide slot limits: 100,000 and the
number of callers (nothing refused either way: the cost of admission must not
depend on the limit), then 8, below the number of callers, where the peak of
units held at once shows there is no over-admission.

Starts its own PostgreSQL server (the local binaries) unless `--url` is given.

    .venv/bin/python -m bench.admission [--units 10000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from app.billing.tiers import TierTable
from app.credits.service import CreditService
from app.db import Database
from app.errors import AppError
from app.quota.service import QuotaService
from app.work import Charge, Identity, IdentityKind
from bench.common import goal, machine_info, postgres_database
from tests.support.databases import migrate
from tests.support.settings import make_settings


async def run(url: str, units: int, concurrency: int, limit: int) -> tuple[float, int, int]:
    """Units per second; the most units ever held at once, and how many were refused."""
    with tempfile.TemporaryDirectory() as data_dir:
        settings = make_settings(
            url,
            Path(data_dir),
            RATE_LIMIT_DAILY_PER_USER=10**9,
            RATE_LIMIT_DAILY_LLM_PER_USER=10**9,
            RATE_LIMIT_DAILY_PER_IP=10**9,
            RATE_LIMIT_DAILY_LLM_PER_IP=10**9,
            MAX_CONCURRENT_TASK_TREES=limit,
            DATABASE_POOL_SIZE=concurrency,
        )
        db = Database(url, settings)
        tiers = TierTable(settings)
        quotas = QuotaService(db, settings, tiers, CreditService(db, settings, tiers))
        callers = [
            Identity(IdentityKind.ANONYMOUS, f"anon:bench-{n}", f"192.0.2.{n % 250}")
            for n in range(concurrency)
        ]
        remaining = 0
        held = peak = refused = 0

        async def worker(identity: Identity) -> None:
            nonlocal remaining, held, peak, refused
            while remaining > 0:
                remaining -= 1
                try:
                    admission = await quotas.admit(identity, None, None)
                except AppError:  # the system's slots are all taken: refused, not queued
                    refused += 1
                    continue
                held += 1
                peak = max(peak, held)
                await asyncio.sleep(0)  # hold the slot across a turn of the loop
                held -= 1
                await quotas.finish(admission, Charge.FULL)

        try:
            # Warm the pool and the prepared statements, then measure.
            remaining = 4 * concurrency
            await asyncio.gather(*(worker(c) for c in callers[: min(concurrency, 8)]))
            remaining, peak, refused = units, 0, 0
            started = time.perf_counter()
            await asyncio.gather(*(worker(c) for c in callers))
            return units / (time.perf_counter() - started), peak, refused
        finally:
            await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--url", help="an empty PostgreSQL database (postgresql+asyncpg://…)")
    args = parser.parse_args()
    print(f"machine: {machine_info()}")
    with postgres_database(args.url) as url:
        migrate(url)
        rates = {}
        for limit in (100_000, args.concurrency, 8):
            rate, peak, refused = asyncio.run(run(url, args.units, args.concurrency, limit))
            rates[limit] = rate
            print(
                f"system limit {limit:>7,}: {rate:>7,.0f} units/s, at most {peak} held at once, "
                f"{refused} refused ({args.units} units, {args.concurrency} callers at once)"
            )
            if limit < args.concurrency:
                over = max(0, peak - limit)
                goal(
                    f"over-admission, {args.concurrency} callers for {limit} slots",
                    f"{over} (peak {peak})",
                    "0",
                    over == 0,
                )
        goal(
            "admission + release per worker, PostgreSQL",
            f"{rates[100_000]:,.0f} units/s",
            "≥ 1,500 units/s",
            rates[100_000] >= 1500,
        )
        print(
            f"limit 100,000 vs limit {args.concurrency}: "
            f"{rates[100_000] / rates[args.concurrency]:.2f}× the throughput "
            "(the cost of admission does not grow with the limit)"
        )


if __name__ == "__main__":
    main()
