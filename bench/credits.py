"""Credit reservation + settlement throughput on one worker, on PostgreSQL and SQLite.

Calls `CreditService` directly (no HTTP), as a metered LLM call does: reserve the
estimate, then settle to the real cost (a refund of part of it). `--concurrency`
tasks at once in one process, one tenant each, so no reservation is refused.
Prints cycles (one reservation + one settlement) per second, and the CPU time of
this process per cycle (the database server's own CPU is not counted).

Starts its own PostgreSQL server (the local binaries) unless `--url` is given.

    .venv/bin/python -m bench.credits [--cycles 5000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from app.billing.tiers import TierTable
from app.credits.service import CreditService
from app.db import Database
from app.models import BillingTier, Tenant, TenantKind, User
from app.work import CreditMeter, LLMGrant, UnitOfWork
from bench.common import machine_info, postgres_database
from tests.support.databases import migrate, sqlite_url
from tests.support.settings import make_settings

ESTIMATE = 10
COST_USD = 0.004  # 4 credits of the 10 reserved: every settlement refunds 6


async def measure(url: str, cycles: int, concurrency: int) -> tuple[float, float]:
    """(cycles per second, CPU microseconds of this process per cycle)."""
    with tempfile.TemporaryDirectory() as data_dir:
        settings = make_settings(
            url, Path(data_dir), CREDITS_PER_USD=1000, DATABASE_POOL_SIZE=concurrency
        )
        db = Database(url, settings)
        credits = CreditService(db, settings, TierTable(settings))
        tenants = [uuid.uuid4() for _ in range(concurrency)]
        admin = User(id=uuid.uuid4(), email="admin@bench.example", password_hash="-")
        async with db.sessionmaker.begin() as session:
            session.add(admin)
            session.add_all(
                Tenant(id=tenant, name=f"bench {n}", kind=TenantKind.PERSONAL)
                for n, tenant in enumerate(tenants)
            )
        for tenant in tenants:
            await credits.admin_grant(tenant, 10**12, admin.id, None)
        remaining = 0

        async def worker(tenant: uuid.UUID) -> None:
            nonlocal remaining
            unit = UnitOfWork(
                subject=f"user:{tenant}",
                tier=BillingTier.PRO,
                llm=LLMGrant(use_llm=True, metered=True),
                tenant_id=tenant,
            )
            meter = CreditMeter()
            meter.record(COST_USD)
            while remaining > 0:
                remaining -= 1
                reservation = await credits.reserve(unit, ESTIMATE)
                await credits.settle(unit, reservation, meter)

        try:
            # Warm the pool and the prepared statements, then measure.
            remaining = 4 * concurrency
            await asyncio.gather(*(worker(t) for t in tenants))
            remaining = cycles
            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker(t) for t in tenants))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            return cycles / wall, cpu / cycles * 1e6
        finally:
            await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--url", help="an empty PostgreSQL database (postgresql+asyncpg://…)")
    args = parser.parse_args()
    print(f"machine: {machine_info()}")
    print(f"{args.cycles} reservations + settlements, {args.concurrency} tenants at once")
    with postgres_database(args.url) as url, tempfile.TemporaryDirectory() as directory:
        databases = (("PostgreSQL", url), ("SQLite", sqlite_url(Path(directory) / "b.db")))
        for name, database in databases:
            migrate(database)
            rate, cpu = asyncio.run(measure(database, args.cycles, args.concurrency))
            print(f"{name:>10}: {rate:8,.0f} cycles/s, {cpu:6,.0f} µs CPU per cycle")


if __name__ == "__main__":
    main()
