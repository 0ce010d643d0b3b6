"""Time to first token: the chat WebSocket path vs calling the same local upstream directly.

Starts a local OpenAI-compatible upstream (streaming SSE) in this process and the
full app under uvicorn on free loopback ports (SQLite in a temporary DATA_DIR,
`LLM_MODEL=openai/gpt-4o-mini` pointed at the upstream). For each round it
measures the time from sending a request to the first content token:

- raw: an HTTP streaming POST straight to the upstream's /v1/chat/completions;
- litellm: `litellm.acompletion(stream=True)` against the same upstream;
- websocket: `WS /api/v1/chat/stream` (identity, rate limit, quota gate with its
  database writes, sanitizer, orchestrator, LangChain + LiteLLM), first `token` frame.

The request names its agent, so the WebSocket path makes exactly one upstream
call before the first token, like the baselines. Prints medians, p90s and ratios.

    .venv/bin/python -m bench.ws_ttft [--rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx
import litellm
from websockets.asyncio.client import connect

from bench.common import machine_info, ratio, uvicorn_server
from bench.gateway_overhead import bench_env, migrate
from tests.chat.upstream import ServerThread, UpstreamState, build_app

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "what should I do next?"},
]
CHAT_REQUEST = {"message": "what should I do next?", "agent": "task_agent"}


async def ttft_raw(base: str) -> float:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
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
        stream=True,
        temperature=0,
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            elapsed = time.perf_counter() - started
            async for _ in stream:  # drain, so the connection is reused cleanly
                pass
            return elapsed
    raise RuntimeError("no token from litellm")


async def ttft_websocket(url: str) -> float:
    started = time.perf_counter()
    first: float | None = None
    async with connect(url) as ws:
        await ws.send(json.dumps(CHAT_REQUEST))
        while True:
            frame = json.loads(await ws.recv())
            if "token" in frame and first is None:
                first = time.perf_counter() - started
            if frame.get("done") or frame.get("error"):
                break
    if first is None:
        raise RuntimeError(f"no token frame: {frame}")
    return first


def summary(name: str, samples: list[float], baseline: float | None = None) -> str:
    median = statistics.median(samples) * 1000
    p90 = statistics.quantiles(samples, n=10)[-1] * 1000
    against = f"   {ratio(median, baseline)} of raw" if baseline else ""
    return f"{name:<12} median {median:7.2f} ms   p90 {p90:7.2f} ms{against}"


async def measure(rounds: int, upstream: str, ws_url: str) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"raw": [], "litellm": [], "websocket": []}
    probes = {
        "raw": lambda: ttft_raw(upstream),
        "litellm": lambda: ttft_litellm(upstream),
        "websocket": lambda: ttft_websocket(ws_url),
    }
    for _ in range(5):  # warm-up: imports, connection pools, SQLite pages
        for probe in probes.values():
            await probe()
    for _ in range(rounds):
        for name, probe in probes.items():  # interleaved, so drift hits all three alike
            results[name].append(await probe())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()

    state = UpstreamState(tool_call=None)
    upstream = ServerThread(build_app(state)).start()
    upstream_base = f"http://127.0.0.1:{upstream.port}/v1"
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            env = bench_env(
                data_dir,
                LLM_MODEL="openai/gpt-4o-mini",
                LLM_ROUTER_MODEL="openai/gpt-4o-mini",
                LLM_API_BASE=upstream_base,
                LLM_API_KEY="sk-bench",
                RATE_LIMIT_DAILY_PER_USER="1000000",
                RATE_LIMIT_DAILY_LLM_PER_USER="1000000",
                RATE_LIMIT_DAILY_PER_IP="1000000",
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
    print(f"time to first token, {args.rounds} rounds · {machine_info()}")
    print(summary("raw", results["raw"]))
    print(summary("litellm", results["litellm"], raw))
    print(summary("websocket", results["websocket"], raw))
    ws = statistics.median(results["websocket"]) * 1000
    lite = statistics.median(results["litellm"]) * 1000
    print(
        f"websocket overhead: +{ws - raw:.2f} ms over raw ({ratio(ws, raw)}), "
        f"+{ws - lite:.2f} ms over litellm alone ({ratio(ws, lite)})"
    )


if __name__ == "__main__":
    main()
