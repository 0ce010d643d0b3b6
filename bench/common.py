"""Shared pieces of the benchmarks: servers on loopback, wrk runs, machine facts."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from pytest_postgresql.janitor import DatabaseJanitor

from tests.support.postgres import find_pg_ctl, start_postgres

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def postgres_database(url: str | None = None) -> Iterator[str]:
    """`url`, or else an empty database on a PostgreSQL server started for the block."""
    if url is not None:
        yield url
        return
    pg_ctl = find_pg_ctl()
    if pg_ctl is None:
        raise SystemExit("PostgreSQL server binaries not found (set PG_CTL)")
    server = start_postgres(pg_ctl)
    try:
        DatabaseJanitor(user=server.user, host=server.host, port=server.port, dbname="bench").init()
        yield server.url("bench")
    finally:
        server.stop()


def machine_info() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.node()} · {os.cpu_count()} CPUs ({cpu}) · "
        f"Python {platform.python_version()} · {platform.system()} {platform.release()}"
    )


@dataclass
class Served:
    base: str
    pid: int

    def rss_kib(self) -> int:
        """Resident memory of the server process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


@contextlib.contextmanager
def uvicorn_process(
    factory: str, env: dict[str, str] | None = None, workers: int = 1
) -> Iterator[Served]:
    """Serve `module:factory` on a free loopback port until the block ends."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--no-proxy-headers",
        "--log-level",
        "warning",
        "--workers",
        str(workers),
    ]
    # A file, not a pipe: a pipe nobody reads fills up and blocks the server.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{factory} exited: {log.read().decode()[-2000:]}")
            try:
                httpx.get(f"{base}/api/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{factory} did not start") from None
                time.sleep(0.2)
        yield Served(base, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextlib.contextmanager
def uvicorn_server(
    factory: str, env: dict[str, str] | None = None, workers: int = 1
) -> Iterator[str]:
    """Serve `module:factory` on a free loopback port; yield its base URL."""
    with uvicorn_process(factory, env, workers) as served:
        yield served.base


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env, capture_output=True
        )
        found = shutil.which("wrk")
    if not found:
        raise RuntimeError("the wrk load generator is missing: install Debian's `wrk` package")
    return found


@dataclass
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int

    def row(self, name: str) -> str:
        return (
            f"{name:<42} {self.requests_per_second:>10.0f} req/s   "
            f"p50 {self.p50_ms:>7.2f} ms   p99 {self.p99_ms:>7.2f} ms"
        )


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def rotating_headers_script(
    directory: Path,
    name: str,
    values: list[str],
    *,
    method: str = "GET",
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> Path:
    """A wrk Lua script sending `name: <value>` with the values in turn, one per request."""
    quoted = ",".join(f'"{value}"' for value in values)
    static = "".join(f'["{key}"] = "{value}", ' for key, value in (headers or {}).items())
    body_line = f"wrk.body = {json.dumps(body)}\n" if body is not None else ""
    script = directory / f"rotate-{name.lower()}-{method.lower()}.lua"
    script.write_text(
        f'wrk.method = "{method}"\n'
        f"{body_line}"
        f"local values = {{{quoted}}}\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        f'  return wrk.format(nil, nil, {{{static}["{name}"] = values[(n % #values) + 1]}})\n'
        "end\n"
    )
    return script


def wrk(
    url: str,
    *,
    seconds: int = 5,
    connections: int = 32,
    threads: int = 1,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
) -> LoadResult:
    command = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return LoadResult(rps, p50, p99, int(bad.group(1)) if bad else 0)


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}×" if baseline else "n/a"
