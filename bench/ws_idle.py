"""Idle chat WebSockets held by one worker, and the memory each one costs.

Opens N connections to `WS /api/v1/chat/stream` and keeps them idle (connected,
no chat request yet) on a bare Starlette WebSocket route and on the full app,
where each connection is an admitted unit of work holding its concurrency
leases (limits raised for the run). Reports how many stayed open and the
server's resident memory per connection (VmRSS before and after, from /proc).

    .venv/bin/python -m bench.ws_idle [--connections 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile

from websockets.asyncio.client import connect

from bench.common import Served, machine_info, ratio, uvicorn_process
from bench.gateway_overhead import bench_env, migrate


async def hold(served: Served, count: int) -> tuple[int, float]:
    """Open `count` connections; how many are open at once, and KiB of RSS per connection."""
    url = served.base.replace("http://", "ws://") + "/api/v1/chat/stream"
    before = served.rss_kib()
    connections = []
    try:
        for start in range(0, count, 100):
            batch = await asyncio.gather(
                *(
                    connect(url, ping_interval=None, open_timeout=30)
                    for _ in range(min(100, count - start))
                ),
                return_exceptions=True,
            )
            connections += [c for c in batch if not isinstance(c, BaseException)]
        await asyncio.sleep(1)  # let the server settle its buffers before reading RSS
        after = served.rss_kib()
    finally:
        for connection in connections:
            await connection.close()
    return len(connections), (after - before) / max(1, len(connections))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.connections)), hard))
    print(f"machine: {machine_info()}")
    with tempfile.TemporaryDirectory() as data_dir:
        env = bench_env(
            data_dir,
            RATE_LIMIT_DAILY_PER_USER="100000000",
            RATE_LIMIT_DAILY_PER_IP="100000000",
            MAX_CONCURRENT_TASK_TREES="100000",
            MAX_CONCURRENT_TASK_TREES_PER_USER="100000",
            WS_PING_INTERVAL_SECONDS="30",
        )
        migrate(env)
        with uvicorn_process("bench.apps:bare_app") as bare:
            bare_open, bare_kib = asyncio.run(hold(bare, args.connections))
        with uvicorn_process("bench.apps:full_app", env) as full:
            full_open, full_kib = asyncio.run(hold(full, args.connections))
    print(f"idle WebSockets, {args.connections} opened per server, one uvicorn worker")
    print(f"{'':34}{'held':>8}{'KiB/conn':>11}")
    print(f"{'bare Starlette WebSocket':34}{bare_open:>8}{bare_kib:>11.1f}")
    print(f"{'full stack /chat/stream (leased)':34}{full_open:>8}{full_kib:>11.1f}")
    print(
        f"\nfull stack vs bare: connections held {ratio(full_open, bare_open)}, "
        f"memory per connection {ratio(full_kib, bare_kib)}"
    )


if __name__ == "__main__":
    main()
