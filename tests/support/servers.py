"""The real server as separate OS processes, for multi-worker and shutdown tests.

`start_gunicorn()` runs gunicorn with our uvicorn workers (as the Dockerfile
does), `start_single()` one `adiuva serve` process. Settings come from the
environment, as in production. Readiness is polled with a deadline; `stop()`
sends SIGTERM and, if anything is left after the deadline, SIGKILLs the whole
process group, so no worker outlives the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from pytest_postgresql.janitor import DatabaseJanitor
from websockets.asyncio.client import ClientConnection, connect

from tests.chat.support import ANNA
from tests.support.databases import migrate
from tests.support.postgres import PostgresServer, _free_port
from tests.support.settings import test_values

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEADLINE = 30.0  # for anything the tests wait for over a socket or in the database
START_DEADLINE = 120.0  # importing LiteLLM and LangChain is slow on a busy 2-core machine
STOP_DEADLINE = 40.0


def base_env(database_url: str, data_dir: Path, **overrides: object) -> dict[str, str]:
    """The settings of a test server, as environment variables."""
    values = test_values(
        database_url, data_dir, **{"DEMO_CLEANUP_INTERVAL_SECONDS": 0, **overrides}
    )
    return {key: str(value) for key, value in values.items()}


@contextmanager
def fresh_database(server: PostgresServer) -> Iterator[str]:
    """A new, migrated PostgreSQL database, dropped afterwards."""
    name = f"mw_{uuid.uuid4().hex[:16]}"
    janitor = DatabaseJanitor(
        user=server.user, host=server.host, port=server.port, dbname=name, template_dbname=None
    )
    janitor.init()
    url = server.url(name)
    try:
        migrate(url)
        yield url
    finally:
        janitor.drop()


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    multi_worker: bool

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def workers(self) -> list[psutil.Process]:
        """The processes that serve requests: gunicorn's workers, or the server itself."""
        try:
            master = psutil.Process(self.pid)
            return master.children() if self.multi_worker else [master]
        except psutil.NoSuchProcess:
            return []

    def worker_serving(self, client_port: int) -> int | None:
        """The pid of the worker holding the connection that comes from `client_port`."""
        for worker in self.workers():
            try:
                connections = worker.net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            for conn in connections:
                if conn.laddr and conn.laddr.port == self.port and conn.raddr:  # noqa: SIM102
                    if conn.raddr.port == client_port:
                        return worker.pid
        return None

    def wait_ready(self, workers: int = 1) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited at start-up:\n{self.log_text()[-4000:]}")
            try:
                healthy = httpx.get(f"{self.base_url}/api/v1/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy and len(self.workers()) >= workers:
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server not ready in {START_DEADLINE} s:\n{self.log_text()[-4000:]}")

    def wait_all_workers_serving(self) -> None:
        """Poll with fresh connections until every worker has answered one.

        A worker listens only once its lifespan has started; until then the others
        take every connection.
        """
        seen: set[int] = set()
        deadline = time.monotonic() + START_DEADLINE
        while not self.worker_pids() <= seen:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers {self.worker_pids() - seen} never served a request")
            with httpx.Client(base_url=self.base_url, timeout=10) as client:
                response = client.get("/api/v1/health")
                client_port = response.extensions["network_stream"].get_extra_info("client_addr")[1]
                pid = self.worker_serving(client_port)
            if pid is not None:
                seen.add(pid)

    def worker_pids(self) -> set[int]:
        pids = set()
        for worker in self.workers():
            try:
                if worker.status() != psutil.STATUS_ZOMBIE:
                    pids.add(worker.pid)
            except psutil.NoSuchProcess:
                continue
        return pids

    def terminate(self) -> int | None:
        """SIGTERM, as an orchestrator stops a container; the exit code, or None if it hung."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Whatever is left of the process group goes, whatever state it is in."""
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_DEADLINE)

    def stop(self) -> None:
        try:
            self.terminate()
        finally:
            self.kill()


def _spawn(
    argv: list[str], env: Mapping[str, str], workdir: Path, port: int, multi_worker: bool
) -> ServerProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "server.log"
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            env=full_env,
            # No `.env` here: the server sees exactly the settings the test gives it.
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServerProcess(process, port, log_path, multi_worker)


def start_gunicorn(
    env: Mapping[str, str], workdir: Path, *, workers: int = 4, graceful_timeout: int = 30
) -> ServerProcess:
    """gunicorn with `workers` uvicorn workers, as the Dockerfile runs it."""
    port = _free_port()
    argv = [
        str(BIN / "gunicorn"),
        "app.main:create_app()",
        "--worker-class",
        "app.server.UvicornWorker",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        # Import the app once and fork: four imports of LiteLLM would not fit 2 cores.
        "--preload",
        "--no-control-socket",
        "--keep-alive",
        "30",
        "--timeout",
        "120",
        "--graceful-timeout",
        str(graceful_timeout),
    ]
    return start_command(argv, env, workdir, port, workers=workers)


def spawn_command(
    argv: list[str], env: Mapping[str, str], workdir: Path, port: int
) -> ServerProcess:
    """Any command that becomes a gunicorn master serving `port` (the image's CMD, say)."""
    return _spawn(argv, env, workdir, port, multi_worker=True)


def start_command(
    argv: list[str], env: Mapping[str, str], workdir: Path, port: int, *, workers: int
) -> ServerProcess:
    """`spawn_command()`, ready once every one of its `workers` has answered a request."""
    server = spawn_command(argv, env, workdir, port)
    try:
        server.wait_ready(workers)
        server.wait_all_workers_serving()
    except BaseException:
        server.kill()
        raise
    return server


def _spawn_single(env: Mapping[str, str], workdir: Path, graceful_timeout: int) -> ServerProcess:
    port = _free_port()
    argv = [
        str(BIN / "adiuva"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--graceful-timeout",
        str(graceful_timeout),
    ]
    return _spawn(argv, env, workdir, port, multi_worker=False)


def start_single(
    env: Mapping[str, str], workdir: Path, *, graceful_timeout: int = 25
) -> ServerProcess:
    """One `adiuva serve` process."""
    (server,) = start_instances([(env, workdir)], graceful_timeout=graceful_timeout)
    return server


def start_instances(
    instances: list[tuple[Mapping[str, str], Path]], *, graceful_timeout: int = 25
) -> list[ServerProcess]:
    """Independent `adiuva serve` processes (hosts, as far as they know), started together."""
    servers = [_spawn_single(env, workdir, graceful_timeout) for env, workdir in instances]
    try:
        for server in servers:
            server.wait_ready()
    except BaseException:
        for server in servers:
            server.kill()
        raise
    return servers


def readme_block(name: str) -> str:
    """The bash block the README fences with `<!-- {name}:begin -->` … `<!-- {name}:end -->`;
    its tests run it as it stands."""
    marker = re.escape(name)
    pattern = rf"<!-- {marker}:begin -->\s*```bash\n(?P<script>.*?)```\s*<!-- {marker}:end -->"
    match = re.search(pattern, (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    assert match, f"README.md has no {name} block"
    return match.group("script")


async def poll(check: Callable[[], Awaitable[bool]], what: str, deadline: float = DEADLINE) -> None:
    """Wait for `check()` to hold, polling; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while not await check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def open_stream(
    server: ServerProcess, token: str | None, request: Mapping[str, object] = ANNA
) -> ClientConnection:
    """A `/chat/stream` connection that has sent its ChatRequest."""
    query = f"?token={token}" if token else ""
    ws = await connect(f"{server.ws_url}/api/v1/chat/stream{query}", open_timeout=60)
    await ws.send(json.dumps(request))
    return ws


async def finish(ws: ClientConnection) -> dict[str, Any]:
    """Read to the stream's last frame (done or error) and its close."""
    async with asyncio.timeout(DEADLINE):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("done") or frame.get("error"):
                await ws.wait_closed()
                return frame


@dataclass
class Streams:
    running: list[asyncio.Task[dict[str, Any]]]  # still streaming: each ends with its last frame
    refused: list[tuple[ClientConnection, dict[str, Any]]]  # the socket and its error frame


async def sort_streams(streams: list[ClientConnection], refusals: int) -> Streams:
    """Read every stream until `refusals` of them have ended; the others are still running.

    A unit is admitted when its first frame arrives, so a refusal is an error frame
    and a close on an open socket. Ends the wait when that many streams have ended
    (or fails after DEADLINE); whatever ended is counted as refused.
    """
    tasks = {asyncio.create_task(finish(ws)): ws for ws in streams}
    refused: list[tuple[ClientConnection, dict[str, Any]]] = []
    pending = set(tasks)
    async with asyncio.timeout(DEADLINE):
        while len(refused) < refusals:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            refused.extend((tasks[task], task.result()) for task in done)
    return Streams([task for task in tasks if task in pending], refused)
