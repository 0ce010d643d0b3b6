"""Admission + release throughput of the quota gate on one worker, against PostgreSQL.

Calls the gate's `QuotaService` directly (no HTTP): each unit is admitted
(the caller's slot, the system slot, the daily counters) and finished (slots
back, counts kept), from `--concurrency` tasks at once in one process, as one
worker serves many requests at once. Anonymous callers, one per task, so the
per-identity limits never refuse; `--limit` sets the system-wide slot limit.

Starts its own PostgreSQL server (the local binaries) unless `--url` is given.

    .venv/bin/python -m bench.admission [--units 20000] [--concurrency 32] [--limit 1000]
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
from app.quota.service import QuotaService
from app.work import Charge, Identity, IdentityKind
from bench.common import machine_info, postgres_database
from tests.support.databases import migrate
from tests.support.settings import make_settings


async def run(url: str, units: int, concurrency: int, limit: int) -> float:
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

        async def worker(identity: Identity) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                admission = await quotas.admit(identity, None, None)
                await quotas.finish(admission, Charge.FULL)

        try:
            # Warm the pool and the prepared statements, then measure.
            remaining = 4 * concurrency
            await asyncio.gather(*(worker(c) for c in callers[: min(concurrency, 8)]))
            remaining = units
            started = time.perf_counter()
            await asyncio.gather(*(worker(c) for c in callers))
            return units / (time.perf_counter() - started)
        finally:
            await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--limit", type=int, default=1_000)
    parser.add_argument("--url", help="an empty PostgreSQL database (postgresql+asyncpg://…)")
    args = parser.parse_args()
    print(f"machine: {machine_info()}")
    with postgres_database(args.url) as url:
        migrate(url)
        rate = asyncio.run(run(url, args.units, args.concurrency, args.limit))
        print(
            f"admission + release: {rate:,.0f} units/s "
            f"({args.units} units, {args.concurrency} at once, system limit {args.limit})"
        )


if __name__ == "__main__":
    main()
