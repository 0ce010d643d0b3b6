"""Shared pieces of the benchmarks: servers on loopback, wrk runs, machine facts."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
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


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Served:
    base: str
    pid: int

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server process has used, from /proc."""
        return process_cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        """Resident memory of the server process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


def child_env(changes: dict[str, str | None] | None) -> dict[str, str]:
    """This process's environment with `changes` applied; a None value unsets the name."""
    env = {**os.environ, **(changes or {})}
    return {name: value for name, value in env.items() if value is not None}


class ServerProcess:
    """A server started as a child process in a session of its own, logging to a file."""

    def __init__(
        self,
        name: str,
        command: list[str],
        base: str,
        *,
        env: dict[str, str | None] | None = None,
        cwd: Path = ROOT,
        ready_path: str = "/api/v1/health",
    ) -> None:
        self.name = name
        self.base = base
        self.ready_url = f"{base}{ready_path}"
        # A file, not a pipe: a pipe nobody reads fills up and blocks the server.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=child_env(env),
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,  # its workers go with it when it is stopped
        )

    def log_tail(self, size: int = 2000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-size:]

    def wait_ready(self, timeout: float = 60) -> Served:
        """Poll the ready URL until it answers (any status); raise if the server exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            try:
                httpx.get(self.ready_url, timeout=1)
                return Served(self.base, self.process.pid)
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start: {self.log_tail()}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM to its whole process group, SIGKILL if it is still there after 15 s."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def uvicorn_command(factory: str, port: int, workers: int = 1) -> list[str]:
    return [
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


def start_uvicorn(
    factory: str, env: dict[str, str] | None = None, workers: int = 1, ready_path: str = ""
) -> ServerProcess:
    """Start serving `module:factory` on a free loopback port; wait with `wait_ready()`."""
    port = free_port()
    return ServerProcess(
        factory,
        uvicorn_command(factory, port, workers),
        f"http://127.0.0.1:{port}",
        env=env,
        ready_path=ready_path or "/api/v1/health",
    )


@contextlib.contextmanager
def uvicorn_process(
    factory: str, env: dict[str, str] | None = None, workers: int = 1
) -> Iterator[Served]:
    """Serve `module:factory` on a free loopback port until the block ends."""
    server = start_uvicorn(factory, env, workers)
    try:
        yield server.wait_ready()
    finally:
        server.stop()


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
    requests: int = 0
    errors: int = 0  # connect, read, write errors and timeouts

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
    timeout: int | None = None,
) -> LoadResult:
    command = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if timeout is not None:  # wrk's own is 2 s: a slower answer counts as an error, not a latency
        command.append(f"--timeout={timeout}s")
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    done = int(re.search(r"(\d+) requests in", output).group(1))
    failed = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = sum(int(n) for n in failed.groups()) if failed else 0
    return LoadResult(rps, p50, p99, int(bad.group(1)) if bad else 0, done, errors)


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}×" if baseline else "n/a"


GOAL_MARK = "goal |"


def goal(name: str, measured: str, target: str, met: bool) -> None:
    """Print one goal line; `make bench` gathers them into the summary at its end."""
    print(f"{GOAL_MARK} {name} | {measured} | {target} | {'met' if met else 'NOT met'}", flush=True)


def wrk_load(description: str) -> tuple[dict[str, int], dict[str, int]]:
    """`--seconds` and `--connections` from the command line: the load of a measured run
    and of a one-second warm-up; prints the machine and the load."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    print(f"machine: {machine_info()}")
    print(f"load: wrk, 1 thread, {args.connections} connections, {args.seconds} s per run\n")
    return (
        {"seconds": args.seconds, "connections": args.connections},
        {"seconds": 1, "connections": args.connections},
    )
