"""The database-bound paths on PostgreSQL, each against a baseline measured in the same run.

- an authenticated request: identity from the JWT and the tenant's tier read live
  from PostgreSQL on every request, vs the same trivial route on bare FastAPI;
- a quota-gated unit of work (`POST /api/v1/chat` with the offline demo model):
  the full stack — daily counters, concurrency leases (atomic upserts on
  PostgreSQL), sanitizer — vs the same app and route with the gateway removed.

Starts its own PostgreSQL server (the local server binaries; as root, run as the
`postgres` user). One uvicorn worker per server; wrk on loopback.

    .venv/bin/python -m bench.postgres_paths [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from pytest_postgresql.janitor import DatabaseJanitor

from bench.common import machine_info, ratio, rotating_headers_script, uvicorn_server, wrk
from bench.gateway_overhead import ADDRESSES, USERS, bench_env, register_users
from tests.support.databases import migrate
from tests.support.postgres import find_pg_ctl, start_postgres

CHAT_BODY = json.dumps(
    {"message": "add a task to call Anna tomorrow, high priority", "agent": "task_agent"}
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    load = {"seconds": args.seconds, "connections": args.connections}
    pg_ctl = find_pg_ctl()
    if pg_ctl is None:
        raise SystemExit("PostgreSQL server binaries not found (set PG_CTL)")
    print(f"machine: {machine_info()}")
    print(f"load: wrk, 1 thread, {args.connections} connections, {args.seconds} s per run\n")

    server = start_postgres(pg_ctl)
    try:
        DatabaseJanitor(user=server.user, host=server.host, port=server.port, dbname="bench").init()
        url = server.url("bench")
        migrate(url)
        with tempfile.TemporaryDirectory() as data_dir:
            env = bench_env(
                data_dir,
                DATABASE_URL=url,
                RATE_LIMIT_DAILY_PER_USER="1000000",
                RATE_LIMIT_DAILY_PER_IP="1000000",
                MAX_CONCURRENT_TASK_TREES="1000",
            )
            scripts = Path(data_dir)
            with uvicorn_server("bench.apps:bare_app") as bare:
                wrk(f"{bare}/api/v1/bench/ping", seconds=1, connections=args.connections)
                bare_ping = wrk(f"{bare}/api/v1/bench/ping", **load)
            with uvicorn_server("bench.apps:full_app", env) as full:
                users = rotating_headers_script(
                    scripts, "Authorization", register_users(full, USERS)
                )
                visitors = rotating_headers_script(
                    scripts,
                    "X-Forwarded-For",
                    ADDRESSES,
                    method="POST",
                    body=CHAT_BODY,
                    headers={"Content-Type": "application/json"},
                )
                ping = f"{full}/api/v1/bench/ping"
                wrk(ping, seconds=1, connections=args.connections, script=users)
                signed_in = wrk(ping, script=users, **load)
                gated = wrk(f"{full}/api/v1/chat", script=visitors, **load)
            with uvicorn_server("bench.apps:ungated_app", env) as ungated:
                ungated_chat = wrk(f"{ungated}/api/v1/chat", script=visitors, **load)
    finally:
        server.stop()

    print(bare_ping.row("bare FastAPI, GET /bench/ping"))
    print(signed_in.row(f"signed in, tier from PostgreSQL ({USERS} users)"))
    print(ungated_chat.row("POST /chat, app without the gateway"))
    print(gated.row("POST /chat, full stack (quota-gated unit)"))
    print()
    for name, result, baseline in (
        ("signed-in request vs bare FastAPI", signed_in, bare_ping),
        ("quota-gated unit vs ungated", gated, ungated_chat),
    ):
        throughput = ratio(result.requests_per_second, baseline.requests_per_second)
        p50 = ratio(result.p50_ms, baseline.p50_ms)
        p99 = ratio(result.p99_ms, baseline.p99_ms)
        print(f"{name:<36} throughput {throughput}  p50 {p50}  p99 {p99}")
    refused = signed_in.non_2xx + gated.non_2xx + ungated_chat.non_2xx
    if refused:
        print(f"\nwarning: {refused} non-2xx responses during the runs")


if __name__ == "__main__":
    main()
