"""The chat path: `POST /api/v1/chat` on the offline demo model, against bare FastAPI.

Three servers in this run, one uvicorn worker each, loaded by wrk on loopback:

- bare FastAPI's trivial route (`GET /api/v1/bench/ping`): the baseline;
- the app without the gateway (`bench.apps:ungated_app`): every request is an
  admitted unit of work, so the figure is the chat path itself — request context,
  routing, the orchestrator, the agent's tool loop over the `demo` model;
- the full app (`bench.apps:full_app`, SQLite): the same chat through the whole
  gateway — rate limit, quota gate with its daily counters and slots, sanitizer.

The chat names its agent and asks for one tool call (two model calls), from
rotating client addresses so no caller runs out of quota. Prints requests/s,
p50/p99 and the ratios to the baseline, and the server's CPU time per chat (from
/proc), which a machine shared with other work disturbs less than requests/s.

    .venv/bin/python -m bench.chat_path [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import (
    LoadResult,
    goal,
    ratio,
    rotating_headers_script,
    uvicorn_process,
    uvicorn_server,
    wrk,
    wrk_load,
)
from bench.gateway_overhead import ADDRESSES, bench_env, migrate
from bench.postgres_paths import CHAT_BODY

GOAL_REQUESTS_PER_SECOND = 1000
ROOMY = "1000000"


def _chat_load(
    factory: str, env: dict[str, str], script: Path, load: dict[str, int]
) -> tuple[LoadResult, float]:
    """wrk's figures and the server's CPU milliseconds per request."""
    with uvicorn_process(factory, env) as served:
        url = f"{served.base}/api/v1/chat"
        wrk(url, seconds=1, connections=load["connections"], script=script)  # warm-up
        before = served.cpu_seconds()
        result = wrk(url, script=script, **load)
        used = served.cpu_seconds() - before
    requests = result.requests_per_second * load["seconds"]
    return result, used / requests * 1000 if requests else float("nan")


def main() -> None:
    load, warm = wrk_load(__doc__.splitlines()[0])

    with tempfile.TemporaryDirectory() as data_dir:
        env = bench_env(
            data_dir,
            LLM_MODEL="demo",
            LLM_ROUTER_MODEL="demo",
            RATE_LIMIT_DAILY_PER_IP=ROOMY,
            RATE_LIMIT_DAILY_LLM_PER_IP=ROOMY,
            RATE_LIMIT_DAILY_PER_USER=ROOMY,
            RATE_LIMIT_DAILY_LLM_PER_USER=ROOMY,
            MAX_CONCURRENT_TASK_TREES="1000",
        )
        migrate(env)
        visitors = rotating_headers_script(
            Path(data_dir),
            "X-Forwarded-For",
            ADDRESSES,
            method="POST",
            body=CHAT_BODY,
            headers={"Content-Type": "application/json"},
        )
        with uvicorn_server("bench.apps:bare_app") as bare:
            ping = f"{bare}/api/v1/bench/ping"
            wrk(ping, **warm)
            baseline = wrk(ping, **load)
        ungated_chat, ungated_cpu = _chat_load("bench.apps:ungated_app", env, visitors, load)
        full_chat, full_cpu = _chat_load("bench.apps:full_app", env, visitors, load)

    print(baseline.row("bare FastAPI, GET /bench/ping"))
    print(ungated_chat.row("POST /chat (demo), app without the gateway"))
    print(full_chat.row("POST /chat (demo), full app"))
    print()
    for name, cpu in (("without the gateway", ungated_cpu), ("full app", full_cpu)):
        print(
            f"server CPU per chat, {name:<20} {cpu:6.3f} ms "
            f"(at most {1000 / cpu:,.0f} req/s on one free core)"
        )
    print()
    for name, result in (("without the gateway", ungated_chat), ("full app", full_chat)):
        throughput = ratio(result.requests_per_second, baseline.requests_per_second)
        p50 = ratio(result.p50_ms, baseline.p50_ms)
        p99 = ratio(result.p99_ms, baseline.p99_ms)
        print(f"chat, {name:<22} throughput {throughput}  p50 {p50}  p99 {p99}  (vs bare)")
    goal(
        "offline demo POST /chat without the gateway, one worker",
        f"{ungated_chat.requests_per_second:,.0f} req/s ({ungated_cpu:.2f} ms CPU each)",
        f"≥ {GOAL_REQUESTS_PER_SECOND:,} req/s",
        ungated_chat.requests_per_second >= GOAL_REQUESTS_PER_SECOND,
    )
    refused = ungated_chat.non_2xx + full_chat.non_2xx
    if refused:
        print(f"\nwarning: {refused} non-2xx responses during the runs")


if __name__ == "__main__":
    main()
