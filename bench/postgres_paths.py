"""The database-bound paths on PostgreSQL, each against a baseline measured in the same run.

- an authenticated request: identity from the JWT, the caller's access (active,
  token version, membership, tier, seats) from the per-worker cache kept by
  PostgreSQL notifications, vs the same trivial route on bare FastAPI;
- a quota-gated unit of work (`POST /api/v1/chat` with the offline demo model):
  the full stack — daily counters, concurrency leases (atomic upserts on
  PostgreSQL), sanitizer — vs the same app and route with the gateway removed.

Starts its own PostgreSQL server (the local server binaries; as root, run as the
`postgres` user). One uvicorn worker per server; wrk on loopback.

    .venv/bin/python -m bench.postgres_paths [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench.common import (
    postgres_database,
    ratio,
    rotating_headers_script,
    uvicorn_server,
    wrk,
    wrk_load,
)
from bench.gateway_overhead import (
    ADDRESSES,
    USERS,
    bench_env,
    register_users,
    report,
    side_by_side,
)
from tests.support.databases import migrate

CHAT_BODY = json.dumps(
    {"message": "add a task to call Anna tomorrow, high priority", "agent": "task_agent"}
)


def main() -> None:
    load, warm = wrk_load(__doc__.splitlines()[0])
    with postgres_database() as url, tempfile.TemporaryDirectory() as data_dir:
        migrate(url)
        env = bench_env(
            data_dir,
            DATABASE_URL=url,
            RATE_LIMIT_DAILY_PER_USER="1000000",
            RATE_LIMIT_DAILY_PER_IP="1000000",
            RATE_LIMIT_DAILY_LLM_PER_USER="1000000",
            RATE_LIMIT_DAILY_LLM_PER_IP="1000000",
            MAX_CONCURRENT_TASK_TREES="1000",
        )
        scripts = Path(data_dir)
        with (
            uvicorn_server("bench.apps:bare_app") as bare,
            uvicorn_server("bench.apps:full_app", env) as full,
            # A data directory of its own: embedded Qdrant locks the full app's.
            uvicorn_server(
                "bench.apps:ungated_app", {**env, "DATA_DIR": str(Path(data_dir) / "ungated")}
            ) as ungated,
        ):
            users = rotating_headers_script(scripts, "Authorization", register_users(full, USERS))
            visitors = rotating_headers_script(
                scripts,
                "X-Forwarded-For",
                ADDRESSES,
                method="POST",
                body=CHAT_BODY,
                headers={"Content-Type": "application/json"},
            )
            ping = f"{full}/api/v1/bench/ping"
            wrk(f"{bare}/api/v1/bench/ping", **warm)
            wrk(ping, script=users, **warm)
            wrk(f"{full}/api/v1/chat", script=visitors, **warm)
            wrk(f"{ungated}/api/v1/chat", script=visitors, **warm)
            signed_in = side_by_side(
                bare, load, f"signed in, PostgreSQL ({USERS} users)", 0.60, ping, users
            )
            ungated_chat = wrk(f"{ungated}/api/v1/chat", script=visitors, **load)
            gated = wrk(f"{full}/api/v1/chat", script=visitors, **load)

    report([signed_in])
    print()
    print(ungated_chat.row("POST /chat, app without the gateway"))
    print(gated.row("POST /chat, full stack (quota-gated unit)"))
    throughput = ratio(gated.requests_per_second, ungated_chat.requests_per_second)
    p50 = ratio(gated.p50_ms, ungated_chat.p50_ms)
    p99 = ratio(gated.p99_ms, ungated_chat.p99_ms)
    print(f"{'quota-gated unit vs ungated':<40} throughput {throughput}  p50 {p50}  p99 {p99}")
    refused = gated.non_2xx + ungated_chat.non_2xx
    if refused:
        print(f"\nwarning: {refused} non-2xx responses during the runs")


if __name__ == "__main__":
    main()
