"""Cost of the full middleware stack: the same trivial route, bare FastAPI vs the full app.

Both servers run side by side in this run, on loopback, one uvicorn worker each;
the load comes from wrk in another process. Each row is measured right after a
run of the baseline, and its ratio is to that run, so load elsewhere on the
machine moves both alike. Traffic is spread over many callers, as in
production: anonymous requests come from rotating client addresses (through a
trusted proxy), signed-in ones rotate over many users, so every request does
the full work — identity, tier lookup, moving-window limit — without being
refused. Prints requests/s, p50/p99 latency and the ratios to the baseline.

    .venv/bin/python -m bench.gateway_overhead [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import (
    ROOT,
    LoadResult,
    goal,
    ratio,
    rotating_headers_script,
    uvicorn_server,
    wrk,
    wrk_load,
)

USERS = 100
ADDRESSES = [f"198.18.{n // 250}.{n % 250 + 1}" for n in range(5000)]


def bench_env(data_dir: str, **extra: str) -> dict[str, str]:
    return {
        "DATA_DIR": data_dir,
        "LOG_LEVEL": "WARNING",
        "BCRYPT_ROUNDS": "4",
        "AUTH_RATE_LIMIT_PER_IP": "100000/minute",
        "TRUSTED_PROXIES": "127.0.0.1",
        # High enough that spreading the load over callers keeps every request admitted.
        "RATE_LIMIT_FREE_PER_MINUTE": "100000",
        **extra,
    }


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )


def register_users(base: str, count: int) -> list[str]:
    tokens = []
    with httpx.Client(base_url=base) as client:
        for n in range(count):
            response = client.post(
                "/api/v1/auth/register",
                json={"email": f"bench{n}@example.com", "password": "benchmark-password"},
            )
            response.raise_for_status()
            tokens.append(f"Bearer {response.json()['access_token']}")
    return tokens


@dataclass
class Row:
    name: str
    baseline: LoadResult
    result: LoadResult
    goal: float  # the least throughput ratio to the baseline accepted

    @property
    def throughput(self) -> float:
        return self.result.requests_per_second / self.baseline.requests_per_second


def side_by_side(
    bare: str, load: dict, name: str, goal_ratio: float, url: str, script: Path | None = None
) -> Row:
    """The baseline's trivial route, then the row's request, under the same load."""
    baseline = wrk(f"{bare}/api/v1/bench/ping", **load)
    return Row(name, baseline, wrk(url, script=script, **load), goal_ratio)


def report(rows: list[Row]) -> None:
    for row in rows:
        print(row.baseline.row("bare FastAPI, GET /bench/ping"))
        print(row.result.row(f"full stack, {row.name}"))
    print()
    for row in rows:
        p50 = ratio(row.result.p50_ms, row.baseline.p50_ms)
        p99 = ratio(row.result.p99_ms, row.baseline.p99_ms)
        print(f"{row.name:<40} throughput {row.throughput:.2f}×  p50 {p50}  p99 {p99}  (vs bare)")
    for row in rows:
        goal(
            f"{row.name} vs bare FastAPI",
            f"{row.throughput:.2f}×",
            f"≥ {row.goal:.2f}×",
            row.throughput >= row.goal,
        )
    refused = sum(row.result.non_2xx for row in rows)
    if refused:
        print(f"\nwarning: {refused} non-2xx responses during the runs")


def main() -> None:
    load, warm = wrk_load(__doc__.splitlines()[0])

    with tempfile.TemporaryDirectory() as data_dir:
        env = bench_env(data_dir)
        migrate(env)
        scripts = Path(data_dir)
        with (
            uvicorn_server("bench.apps:bare_app") as bare,
            uvicorn_server("bench.apps:full_app", env) as full,
        ):
            users = rotating_headers_script(scripts, "Authorization", register_users(full, USERS))
            visitors = rotating_headers_script(scripts, "X-Forwarded-For", ADDRESSES)
            ping = f"{full}/api/v1/bench/ping"
            wrk(f"{bare}/api/v1/bench/ping", **warm)
            wrk(ping, script=visitors, **warm)
            wrk(ping, script=users, **warm)
            rows = [
                side_by_side(bare, load, "exempt path (/health)", 0.90, f"{full}/api/v1/health"),
                side_by_side(bare, load, "anonymous trivial route", 0.60, ping, visitors),
                side_by_side(bare, load, f"signed in, SQLite ({USERS} users)", 0.60, ping, users),
            ]
    report(rows)


if __name__ == "__main__":
    main()
