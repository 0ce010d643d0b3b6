"""Every benchmark, one after the other: `make bench` (or `python -m bench`).

Each prints its own figures as ratios against a baseline measured in the same
run, with the machine they ran on.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.common import GOAL_MARK, ROOT, machine_info

SUITE = [
    ("Full middleware stack vs bare FastAPI", ["bench.gateway_overhead"]),
    ("PostgreSQL: signed-in request, quota-gated unit of work", ["bench.postgres_paths"]),
    ("Admission and release on PostgreSQL, one worker", ["bench.admission"]),
    ("Credit reservation and settlement", ["bench.credits"]),
    ("Offline demo chat with and without the gateway", ["bench.chat_path"]),
    ("Sanitizer cost per token frame, leak and benign corpora", ["bench.sanitizer"]),
    ("WebSocket time to first token vs the upstream directly, SQLite", ["bench.ws_ttft"]),
    (
        "WebSocket time to first token vs the upstream directly, PostgreSQL",
        ["bench.ws_ttft", "--database", "postgresql"],
    ),
    ("This app vs LiteLLM Proxy: added latency, requests/s per worker", ["bench.litellm_peer"]),
    ("Idle WebSockets per worker and memory per connection", ["bench.ws_idle"]),
    ("Storage throughput and memory", ["bench.storage_throughput"]),
]


def run(module: list[str]) -> tuple[int, list[str]]:
    """Run one benchmark, echoing its output; its exit code and its goal lines."""
    goals = []
    with subprocess.Popen(
        [sys.executable, "-m", *module], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            if line.startswith(GOAL_MARK):
                goals.append(line[len(GOAL_MARK) :].strip())
    return process.returncode, goals


def summary(goals: list[str]) -> None:
    rows = [[cell.strip() for cell in line.split("|")] for line in goals]
    print("\n=== Goals ===")
    print("| What | Measured | Goal | |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> int:
    print(f"Adiuva Cloud API benchmarks · {machine_info()}")
    failed = []
    goals: list[str] = []
    for title, module in SUITE:
        print(f"\n=== {title} ===", flush=True)
        started = time.monotonic()
        code, found = run(module)
        goals += found
        if code != 0:
            failed.append(title)
        print(f"({time.monotonic() - started:.0f} s)", flush=True)
    summary(goals)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
