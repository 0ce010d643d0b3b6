"""This app against the peer a user would pick instead: LiteLLM Proxy, one worker each.

Three processes serve on loopback, each on its own: a local OpenAI-compatible
upstream (`tests/chat/upstream.py`, answering at once or after 20 ms), LiteLLM
Proxy in front of it, and this app in front of it. The measuring client and wrk
run in further processes, so no server shares an interpreter (or its GIL) with
the load, the clock or another server.

- LiteLLM Proxy: the litellm version this project locks, installed by this
  benchmark into its own virtualenv under `.bench/` with uv (reused by later
  runs; the install is timed apart from the run), plus the same httptools as
  this app's server, so both sit on the same uvicorn + uvloop + httptools.
  Started with a config file: one model (`openai/gpt-4o-mini` at the upstream),
  a master key, no database, one worker, quiet logs. Request:
  `POST /v1/chat/completions`, not streamed, with the master key.
- This app: uvicorn, one worker, on PostgreSQL as deployed (a server started by
  the benchmark; quota admission and release and credit movements are one
  statement each there), callers signed in on the pro tier (metered by
  credits), limits raised so nothing is refused.
  Request: `POST /api/v1/chat` naming `task_agent`: identity, tier rate limit,
  quota admission and release, credit reserve and settle, the orchestrator and
  its agent, then one upstream call (counted by the upstream, printed).
- Direct: the same client calling the upstream itself, the baseline.

For each upstream latency: one client in sequence (the three targets
interleaved round by round, so drift hits all alike; p50/p99, the latency added
over the direct call, and each server's CPU time per request), then 32
concurrent clients (wrk, two runs per target in opposite orders: requests/s,
p50/p99, CPU per request). Prints the table and the verdicts; a verdict whose
wall-clock figures disagree with the CPU per request says so.

    .venv/bin/python -m bench.litellm_peer [--rounds 150] [--seconds 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

import httpx
import psycopg
from packaging.requirements import Requirement
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from bench.common import (
    ROOT,
    LoadResult,
    ServerProcess,
    free_port,
    goal,
    machine_info,
    postgres_database,
    process_cpu_seconds,
    rotating_headers_script,
    start_uvicorn,
    wrk,
)
from bench.gateway_overhead import bench_env, migrate
from tests.chat.upstream import UpstreamState, build_app

USERS = 50
LATENCIES_MS = (0, 20)
BUDGET_SECONDS = 120
MASTER_KEY = "sk-bench-master"
PROMPT = "what should I do next?"
COMPLETION = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
CHAT = {"message": PROMPT, "agent": "task_agent"}
JSON_HEADERS = {"Content-Type": "application/json"}


# --- the upstream, in a process of its own -----------------------------------------


class _CountedRequests(list):
    """Counts the upstream's requests and keeps only the last (a run makes tens of thousands)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.last: dict[str, Any] | None = None

    def append(self, item: dict[str, Any]) -> None:
        self.count += 1
        self.last = item

    def clear(self) -> None:
        self.count = 0
        self.last = None


def upstream_app() -> Starlette:
    """The chat test upstream plus `/bench/upstream`: GET its request count, PUT ?ms= latency."""
    state = UpstreamState(tool_call=None)
    state.requests = _CountedRequests()

    async def control(request: Request) -> JSONResponse:
        if request.method == "PUT":
            state.latency = float(request.query_params["ms"]) / 1000
        last = state.requests.last
        return JSONResponse(
            {
                "requests": state.requests.count,
                "latency_ms": state.latency * 1000,
                "last_tools": len((last or {}).get("body", {}).get("tools") or []),
            }
        )

    return Starlette(
        routes=[
            Route("/bench/upstream", control, methods=["GET", "PUT"]),
            Mount("/", app=build_app(state)),
        ]
    )


# --- LiteLLM Proxy, installed into its own virtualenv --------------------------------


def locked_litellm_version() -> str:
    lock = (ROOT / "requirements" / "dev.txt").read_text()
    return re.search(r"^litellm==([^\s;\\]+)", lock, re.MULTILINE).group(1)


def _uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not found:
        raise RuntimeError("uv is missing: `make install-dev` installs it into .venv")
    return found


def _site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python*/site-packages"))


def _proxy_extra(venv: Path) -> list[str]:
    """The requirements litellm's own `proxy` extra adds, as its installed metadata lists them.

    Two kinds are adjusted, because the index does not publish them for every
    release: the `litellm-proxy` meta-package (it only names these same
    requirements) is left out, and exact pins of litellm's companion packages
    (`litellm-proxy-extras`, `litellm-enterprise`) become "this build or older".
    """
    (litellm,) = [d for d in distributions(path=[str(_site_packages(venv))]) if d.name == "litellm"]
    wanted = []
    for line in litellm.requires or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or not marker.evaluate({"extra": "proxy"}):
            continue
        if marker.evaluate({"extra": ""}) or requirement.name == "litellm-proxy":
            continue
        requirement.marker = None
        text = str(requirement)
        if requirement.name.startswith("litellm-"):
            text = text.replace("==", "<=")
        wanted.append(text)
    return wanted


def ensure_peer(version: str) -> tuple[Path, float | None]:
    """LiteLLM Proxy `version` under `.bench/`, and the seconds its install took if it was new."""
    venv = ROOT / ".bench" / f"litellm-proxy-{version}"
    marker = venv / ".installed"
    if marker.exists():
        return venv, None
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    uv = _uv()
    python = venv / "bin" / "python"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    # Compiled now: this machine may forbid writing bytecode at run time, and a proxy
    # that compiles its imports at every start takes most of the budget to start.
    install = [uv, "pip", "install", "-q", "--compile-bytecode", "--python", str(python)]
    # The same HTTP parser as this app's server (uvicorn picks httptools when it is
    # there; the proxy extra does not bring it): the comparison is of the apps.
    httptools = re.search(
        r"^httptools==([^\s;\\]+)", (ROOT / "requirements" / "dev.txt").read_text(), re.MULTILINE
    )
    parser = [f"httptools=={httptools.group(1)}"] if httptools else ["httptools"]
    plain = subprocess.run(
        [*install, f"litellm[proxy]=={version}", *parser], capture_output=True, text=True
    )
    note = f"litellm[proxy]=={version}"
    if plain.returncode != 0:
        subprocess.run([*install, f"litellm=={version}", *parser], check=True)
        extra = _proxy_extra(venv)
        subprocess.run([*install, f"litellm=={version}", *extra], check=True)
        note = (
            f"litellm=={version} and its proxy extra's requirements, adjusted: "
            f"litellm[proxy]=={version} does not resolve on the package index"
        )
    frozen = subprocess.run(
        [uv, "pip", "freeze", "--python", str(python)], check=True, capture_output=True, text=True
    ).stdout
    marker.write_text(f"{note}\n{frozen}")
    return venv, time.monotonic() - started


def start_peer(venv: Path, upstream: str, directory: Path) -> ServerProcess:
    config = directory / "litellm.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "model_list": [
                    {
                        "model_name": "gpt-4o-mini",
                        "litellm_params": {
                            "model": "openai/gpt-4o-mini",
                            "api_base": upstream,
                            "api_key": "sk-bench",
                        },
                    }
                ],
                "litellm_settings": {"set_verbose": False},
                "general_settings": {"master_key": MASTER_KEY},
            }
        )
    )
    port = free_port()
    command = [str(venv / "bin" / "litellm"), "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    return ServerProcess(
        "LiteLLM Proxy",
        command,
        f"http://127.0.0.1:{port}",
        env={
            "LITELLM_LOG": "ERROR",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list at start
            "DATABASE_URL": None,
            "LITELLM_MASTER_KEY": None,
        },
        cwd=directory,
        ready_path="/health/liveliness",
    )


# --- this app --------------------------------------------------------------------------


def app_env(data_dir: str, upstream: str, database_url: str) -> dict[str, str]:
    return bench_env(
        data_dir,
        DATABASE_URL=database_url,
        LLM_MODEL="openai/gpt-4o-mini",
        LLM_ROUTER_MODEL="openai/gpt-4o-mini",
        LLM_API_BASE=upstream,
        LLM_API_KEY="sk-bench",
        # Every check still runs; the limits are only high enough to admit the load.
        RATE_LIMIT_PRO_PER_MINUTE="10000000",
        RATE_LIMIT_DAILY_PAID="10000000",
        MAX_CONCURRENT_PRO="1000",
        MAX_CONCURRENT_TASK_TREES="1000",
    )


def pro_users(base: str, database_url: str, count: int) -> list[str]:
    """`count` signed-in callers on the pro tier, as a Stripe webhook would set it."""
    tokens = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for n in range(count):
            response = client.post(
                "/api/v1/auth/register",
                json={"email": f"peer{n}@example.com", "password": "benchmark-password"},
            )
            response.raise_for_status()
            tokens.append(f"Bearer {response.json()['access_token']}")
        with psycopg.connect(database_url.replace("+asyncpg", ""), autocommit=True) as db:
            db.execute("UPDATE subscriptions SET tier = 'pro'")
        for token in tokens:  # the tier is live, and the month's grant is in
            response = client.get("/api/v1/credits", headers={"Authorization": token})
            response.raise_for_status()
            if response.json()["balance"] <= 0:
                raise RuntimeError(f"a pro caller without credits: {response.text}")
    return tokens


# --- measuring ---------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str
    body: dict[str, Any]
    headers: dict[str, str]


def percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def sequential(
    targets: list[Target], pids: dict[str, int], rounds: int, warmup: int = 10
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Milliseconds per request, one client, the targets interleaved round by round;
    and the CPU milliseconds each server process spent per request meanwhile."""
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    clients = {t.name: httpx.Client(timeout=30) for t in targets}
    cpu: dict[str, float] = {}
    try:
        for n in range(warmup + rounds):
            if n == warmup:
                cpu = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
            shift = n % len(targets)  # each target goes first, second, third in turn
            for target in targets[shift:] + targets[:shift]:
                started = time.perf_counter()
                response = clients[target.name].post(
                    target.url, json=target.body, headers=target.headers
                )
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"{target.name}: {response.status_code} {response.text}")
                if n >= warmup:
                    samples[target.name].append(elapsed)
    finally:
        for client in clients.values():
            client.close()
    spent = {
        name: (process_cpu_seconds(pid) - cpu[name]) * 1000 / rounds for name, pid in pids.items()
    }
    return samples, spent


def upstream_count(control: str) -> int:
    return httpx.get(control).json()["requests"]


def calls_per_request(control: str, send: Callable[[], None], times: int = 10) -> float:
    before = upstream_count(control)
    for _ in range(times):
        send()
    return (upstream_count(control) - before) / times


def wrk_script(directory: Path, target: Target, tokens: list[str] | None) -> Path:
    """POSTs of the target's body; the Authorization header rotates over `tokens` if given."""
    values = tokens or [target.headers["Authorization"]]
    (directory / target.name).mkdir()
    return rotating_headers_script(
        directory / target.name,
        "Authorization",
        values,
        method="POST",
        body=json.dumps(target.body),
        headers=JSON_HEADERS,
    )


def combined(runs: list[LoadResult], seconds: int) -> LoadResult:
    """Runs of `seconds` each as one: their requests/s; the worse of their p50s and p99s."""
    done = sum(run.requests for run in runs)
    return LoadResult(
        done / (seconds * len(runs)),
        max(run.p50_ms for run in runs),
        max(run.p99_ms for run in runs),
        sum(run.non_2xx for run in runs),
        done,
        sum(run.errors for run in runs),
    )


@dataclass
class ModeResult:
    latency_ms: int
    sequential: dict[str, list[float]]
    cpu_ms: dict[str, float]  # server CPU per request, one client
    load: dict[str, LoadResult]
    load_cpu: dict[str, tuple[float, float]]  # under load: CPU ms per request, share of a core


def measure_mode(
    latency_ms: int,
    control: str,
    targets: list[Target],
    pids: dict[str, int],
    scripts: dict[str, Path],
    rounds: int,
    seconds: int,
) -> ModeResult:
    httpx.put(control, params={"ms": latency_ms}).raise_for_status()
    seq, cpu = sequential(targets, pids, rounds)
    for target in targets:  # warm-up
        wrk(target.url, seconds=1, connections=32, script=scripts[target.name], timeout=30)
    # Two runs each, in opposite orders, so the other load on the machine meets all alike.
    runs: dict[str, list[LoadResult]] = {t.name: [] for t in targets}
    spent = dict.fromkeys(pids, 0.0)
    half = max(seconds // 2, 1)
    for order in (targets, targets[::-1]):
        for target in order:
            pid = pids.get(target.name)
            before = process_cpu_seconds(pid) if pid else 0.0
            runs[target.name].append(
                wrk(
                    target.url,
                    seconds=half,
                    connections=32,
                    script=scripts[target.name],
                    timeout=30,
                )
            )
            if pid:
                spent[target.name] += process_cpu_seconds(pid) - before
    load = {name: combined(results, half) for name, results in runs.items()}
    load_cpu = {
        name: (spent[name] * 1000 / max(load[name].requests, 1), spent[name] / (2 * half))
        for name in pids
    }
    return ModeResult(latency_ms, seq, cpu, load, load_cpu)


# --- report --------------------------------------------------------------------------------


def report(results: list[ModeResult], names: dict[str, str]) -> list[str]:
    """Print the tables; return the verdict lines."""
    verdicts = []
    for result in results:
        seq, load, cpu = result.sequential, result.load, result.cpu_ms
        direct50, direct99 = percentile(seq["direct"], 50), percentile(seq["direct"], 99)
        print(f"\nupstream answering after {result.latency_ms} ms")
        print(
            f"  {'':<30} {'one client:':>11} {'p50':>7} {'p99':>7} {'added p50':>10} "
            f"{'added p99':>10} {'CPU/req':>8}   {'32 clients:':>11} {'req/s':>6} "
            f"{'p50':>7} {'p99':>7}"
        )
        for key in ("direct", "peer", "app"):
            p50, p99 = percentile(seq[key], 50), percentile(seq[key], 99)
            added = f"{p50 - direct50:>+10.2f} {p99 - direct99:>+10.2f}" if key != "direct" else ""
            spent = f"{cpu[key]:>8.2f}" if key in cpu else ""
            row = load[key]
            print(
                f"  {names[key]:<30} {'':>11} {p50:>7.2f} {p99:>7.2f} {added:>21} {spent:>8}   "
                f"{'':>11} {row.requests_per_second:>6.0f} {row.p50_ms:>7.2f} {row.p99_ms:>7.2f}"
            )
        for key, (per, share) in result.load_cpu.items():
            print(
                f"  {names[key]} under load: {per:.2f} CPU ms per request, "
                f"busy {share:.0%} of one core"
            )
        failed = {names[k]: r.non_2xx + r.errors for k, r in load.items() if r.non_2xx + r.errors}
        if failed:
            print(f"  warning: failed requests under load (non-2xx, socket errors): {failed}")
        app_added = percentile(seq["app"], 50) - direct50
        peer_added = percentile(seq["peer"], 50) - direct50
        app_rps, peer_rps = load["app"].requests_per_second, load["peer"].requests_per_second
        cheaper = cpu["app"] < cpu["peer"]
        # The server's own CPU per request hardly depends on what else the machine runs;
        # wall-clock figures do. When the two disagree, the verdict says so.
        caveat = (
            f"; but its CPU per request says {'yes' if cheaper else 'no'} "
            f"({cpu['app']:.2f} ms vs {cpu['peer']:.2f} ms): other load on the machine "
            "decided this one, run it again"
        )
        latency = app_added < peer_added
        throughput = app_rps > peer_rps
        verdicts.append(
            f"upstream {result.latency_ms:>2} ms: adds less latency than LiteLLM Proxy: "
            f"{'yes' if latency else 'no'} (p50 {app_added:+.2f} ms vs {peer_added:+.2f} ms"
            f"{caveat if latency != cheaper else ''})"
        )
        verdicts.append(
            f"upstream {result.latency_ms:>2} ms: serves more req/s per worker: "
            f"{'yes' if throughput else 'no'} ({app_rps:.0f} vs {peer_rps:.0f}"
            f"{caveat if throughput != cheaper else ''})"
        )
        goal(
            f"added latency vs LiteLLM Proxy, upstream {result.latency_ms} ms (p50)",
            f"{app_added:+.1f} ms vs {peer_added:+.1f} ms",
            "less than the proxy",
            latency,
        )
        goal(
            f"req/s per worker vs LiteLLM Proxy, upstream {result.latency_ms} ms, 32 clients",
            f"{app_rps:.0f} vs {peer_rps:.0f}",
            "more than the proxy",
            throughput,
        )
    verdicts.append(
        "server CPU per request, one client: "
        + ", ".join(
            f"{result.latency_ms} ms upstream: this app {result.cpu_ms['app']:.2f} ms vs "
            f"LiteLLM Proxy {result.cpu_ms['peer']:.2f} ms"
            for result in results
        )
    )
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=150, help="sequential rounds per latency")
    parser.add_argument("--seconds", type=int, default=4, help="wrk seconds per target")
    args = parser.parse_args()

    version = locked_litellm_version()
    venv, install_seconds = ensure_peer(version)
    where = venv.relative_to(ROOT)
    if install_seconds is None:
        print(f"LiteLLM Proxy {version}: reusing {where}")
    else:
        print(f"LiteLLM Proxy {version}: installed into {where} in {install_seconds:.0f} s")
    installed = (venv / ".installed").read_text().splitlines()
    companions = [line for line in installed[1:] if line.startswith("litellm")]
    print(f"{installed[0]} ({', '.join(companions)})")
    print(f"machine: {machine_info()}")
    started = time.monotonic()
    names = {
        "direct": "upstream directly",
        "peer": f"LiteLLM Proxy {version}",
        "app": "this app (POST /api/v1/chat)",
    }

    results: list[ModeResult] = []
    with (
        tempfile.TemporaryDirectory() as data_dir,
        postgres_database() as database_url,
        contextlib.ExitStack() as stack,
    ):
        work = Path(data_dir)
        upstream_server = start_uvicorn(
            "bench.litellm_peer:upstream_app", ready_path="/bench/upstream"
        )
        stack.callback(upstream_server.stop)
        upstream = upstream_server.wait_ready().base
        control, api_base = f"{upstream}/bench/upstream", f"{upstream}/v1"

        env = app_env(str(work / "data"), api_base, database_url)
        migrate(env)
        # Both start at once: each takes seconds to import.
        app_server = start_uvicorn("app.main:create_app", env)
        stack.callback(app_server.stop)
        peer_server = start_peer(venv, api_base, work)
        stack.callback(peer_server.stop)
        app = app_server.wait_ready(timeout=90).base
        peer = peer_server.wait_ready(timeout=90).base
        print(f"servers ready after {time.monotonic() - started:.0f} s")

        tokens = pro_users(app, database_url, USERS)
        targets = [
            Target(
                "direct",
                f"{api_base}/chat/completions",
                COMPLETION,
                {"Authorization": "Bearer sk-bench"},
            ),
            Target(
                "peer",
                f"{peer}/v1/chat/completions",
                COMPLETION,
                {"Authorization": f"Bearer {MASTER_KEY}"},
            ),
            Target("app", f"{app}/api/v1/chat", CHAT, {"Authorization": tokens[0]}),
        ]
        scripts = {
            "direct": wrk_script(work, targets[0], None),
            "peer": wrk_script(work, targets[1], None),
            "app": wrk_script(work, targets[2], tokens),
        }
        # Exactly: no other request reaches the upstream meanwhile.
        with httpx.Client(timeout=30) as client:
            for target in targets:

                def send(target: Target = target) -> None:
                    response = client.post(target.url, json=target.body, headers=target.headers)
                    if response.status_code != 200:
                        raise RuntimeError(f"{target.name}: {response.status_code} {response.text}")

                per = calls_per_request(control, send)
                print(f"upstream calls per request, {names[target.name]}: {per:.2f}")
        pids = {"peer": peer_server.process.pid, "app": app_server.process.pid}
        for latency in LATENCIES_MS:
            results.append(
                measure_mode(latency, control, targets, pids, scripts, args.rounds, args.seconds)
            )

    elapsed = time.monotonic() - started
    print(
        f"\none client: {args.rounds} requests to each target, interleaved; added = over the "
        f"direct call at the same percentile; CPU/req: the server process's CPU ms per request. "
        f"32 clients: wrk, 1 thread, {args.seconds} s per target in two runs (the worse p50/p99 "
        "of the two). Times in ms."
    )
    verdicts = report(results, names)
    print()
    for line in verdicts:
        print(line)
    budget = "within" if elapsed < BUDGET_SECONDS else "OVER"
    print(f"\nrun time {elapsed:.0f} s ({budget} the {BUDGET_SECONDS} s budget; install excluded)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
