"""Time to first token: the chat WebSocket path vs calling the same local upstream directly.

Starts a local OpenAI-compatible upstream (streaming SSE) in this process and the
full app under uvicorn on free loopback ports (SQLite in a temporary DATA_DIR,
`LLM_MODEL=openai/gpt-4o-mini` pointed at the upstream). For each round it
measures the time to the first content token of:

- raw: an HTTP streaming POST straight to the upstream's /v1/chat/completions;
- litellm: `litellm.acompletion(stream=True)` against the same upstream;
- websocket: `WS /api/v1/chat/stream` (identity, rate limit, quota gate with its
  database writes, sanitizer, orchestrator, LangChain + LiteLLM), first `token`
  frame, timed from sending the first frame on an open connection; the handshake
  (connect + upgrade + first token) is shown on a line of its own.

The baselines send the very request the WebSocket path sends upstream: the task
agent's system prompt over an empty workspace, the message, and its tool schemas.
The request names its agent, so the WebSocket path makes exactly one upstream call
before the first token, like the baselines. Every caller limit is raised, so no
request falls back to the demo model (that would skip the upstream altogether);
a round that does is an error. Prints medians, p90s and the differences.

    .venv/bin/python -m bench.ws_ttft [--rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx
import litellm
from websockets.asyncio.client import connect

from app.chat.agents import Workspace, registry
from bench.common import goal, machine_info, postgres_database, ratio, uvicorn_server
from bench.gateway_overhead import bench_env, migrate
from tests.chat.upstream import ServerThread, UpstreamState, build_app

GOAL_MS = 2.0
MESSAGE = "what should I do next?"
CHAT_REQUEST = {"message": MESSAGE, "agent": "task_agent"}
_AGENT = registry.get("task_agent")
# What the task agent sends upstream for CHAT_REQUEST: its prompt and its tools.
MESSAGES = [
    {"role": "system" if m.type == "system" else "user", "content": m.content}
    for m in _AGENT.build_messages(MESSAGE, Workspace(None))
]
TOOLS = list(_AGENT.tool_schemas.schemas)


async def ttft_raw(base: str) -> float:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "tools": TOOLS, "stream": True}
    async with httpx.AsyncClient(timeout=30) as client:
        started = time.perf_counter()
        async with client.stream("POST", f"{base}/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {") and '"content"' in line:
                    return time.perf_counter() - started
    raise RuntimeError("no token from the upstream")


async def ttft_litellm(base: str) -> float:
    started = time.perf_counter()
    stream = await litellm.acompletion(
        model="openai/gpt-4o-mini",
        api_base=base,
        api_key="sk-bench",
        messages=MESSAGES,
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            elapsed = time.perf_counter() - started
            async for _ in stream:  # drain, so the connection is reused cleanly
                pass
            return elapsed
    raise RuntimeError("no token from litellm")


async def ttft_websocket(url: str) -> tuple[float, float]:
    """(from the first frame, from connecting) to the first token frame."""
    connecting = time.perf_counter()
    first: float | None = None
    async with connect(url) as ws:
        started = time.perf_counter()
        await ws.send(json.dumps(CHAT_REQUEST))
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("demo"):
                raise RuntimeError("the demo fallback answered: the upstream was never called")
            if "token" in frame and first is None:
                first = time.perf_counter()
            if frame.get("done") or frame.get("error"):
                break
    if first is None:
        raise RuntimeError(f"no token frame: {frame}")
    return first - started, first - connecting


def summary(name: str, samples: list[float], baseline: float | None = None) -> str:
    median = statistics.median(samples) * 1000
    p90 = statistics.quantiles(samples, n=10)[-1] * 1000
    against = f"   {ratio(median, baseline)} of raw" if baseline else ""
    return f"{name:<26} median {median:7.2f} ms   p90 {p90:7.2f} ms{against}"


async def measure(rounds: int, upstream: str, ws_url: str) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"raw": [], "litellm": [], "websocket": [], "connect": []}

    async def websocket() -> None:
        from_frame, from_connect = await ttft_websocket(ws_url)
        results["websocket"].append(from_frame)
        results["connect"].append(from_connect)

    async def raw() -> None:
        results["raw"].append(await ttft_raw(upstream))

    async def lite() -> None:
        results["litellm"].append(await ttft_litellm(upstream))

    probes = (raw, lite, websocket)
    for _ in range(5):  # warm-up: imports, connection pools, SQLite pages, tokenizers
        for probe in probes:
            await probe()
    for samples in results.values():
        samples.clear()
    for _ in range(rounds):
        for probe in probes:  # interleaved, so drift hits all three alike
            await probe()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="SQLite (the embedded default) or a PostgreSQL server started for the run",
    )
    args = parser.parse_args()

    state = UpstreamState(tool_call=None)
    upstream = ServerThread(build_app(state)).start()
    upstream_base = f"http://127.0.0.1:{upstream.port}/v1"
    try:
        with contextlib.ExitStack() as stack:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory())
            database = {}
            if args.database == "postgresql":
                database["DATABASE_URL"] = stack.enter_context(postgres_database())
            env = bench_env(
                data_dir,
                **database,
                LLM_MODEL="openai/gpt-4o-mini",
                LLM_ROUTER_MODEL="openai/gpt-4o-mini",
                LLM_API_BASE=upstream_base,
                LLM_API_KEY="sk-bench",
                RATE_LIMIT_DAILY_PER_USER="1000000",
                RATE_LIMIT_DAILY_LLM_PER_USER="1000000",
                RATE_LIMIT_DAILY_PER_IP="1000000",
                RATE_LIMIT_DAILY_LLM_PER_IP="1000000",
                # Back-to-back streams: the previous one's slot may still be on its way back.
                MAX_CONCURRENT_TASK_TREES_PER_USER="1000",
            )
            migrate(env)
            with uvicorn_server("app.main:create_app", env) as base:
                ws_url = base.replace("http://", "ws://") + "/api/v1/chat/stream"
                results = asyncio.run(measure(args.rounds, upstream_base, ws_url))
    finally:
        upstream.stop()

    raw = statistics.median(results["raw"]) * 1000
    print(f"time to first token, {args.rounds} rounds, {args.database} · {machine_info()}")
    print(summary("raw", results["raw"]))
    print(summary("litellm", results["litellm"], raw))
    print(summary("websocket (first frame)", results["websocket"], raw))
    print(summary("websocket (with connect)", results["connect"], raw))
    ws = statistics.median(results["websocket"]) * 1000
    lite = statistics.median(results["litellm"]) * 1000
    connected = statistics.median(results["connect"]) * 1000
    print(
        f"websocket overhead from the first frame: +{ws - raw:.2f} ms over raw "
        f"({ratio(ws, raw)}), {ws - lite:+.2f} ms over litellm alone ({ratio(ws, lite)}; "
        f"goal <= +{GOAL_MS:g} ms)"
    )
    print(f"with the connection and upgrade: {connected - lite:+.2f} ms over litellm alone")
    goal(
        f"WebSocket time to first token over litellm.acompletion alone, {args.database} (median)",
        f"{ws - lite:+.1f} ms",
        f"≤ +{GOAL_MS:g} ms",
        ws - lite <= GOAL_MS,
    )


if __name__ == "__main__":
    main()
