"""Every benchmark, one after the other: `make bench` (or `python -m bench`).

Each prints its own figures as ratios against a baseline measured in the same
run, with the machine they ran on.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.common import ROOT, machine_info

SUITE = [
    ("Full middleware stack vs bare FastAPI", ["bench.gateway_overhead"]),
    ("PostgreSQL: live tier lookup, quota-gated unit of work", ["bench.postgres_paths"]),
    ("WebSocket time to first token vs the upstream directly", ["bench.ws_ttft"]),
    ("This app vs LiteLLM Proxy: added latency, requests/s per worker", ["bench.litellm_peer"]),
    ("Idle WebSockets per worker and memory per connection", ["bench.ws_idle"]),
    ("Storage throughput and memory", ["bench.storage_throughput"]),
]


def main() -> int:
    print(f"Adiuva Cloud API benchmarks · {machine_info()}")
    failed = []
    for title, module in SUITE:
        print(f"\n=== {title} ===", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", *module], cwd=ROOT)
        if result.returncode != 0:
            failed.append(title)
        print(f"({time.monotonic() - started:.0f} s)", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
