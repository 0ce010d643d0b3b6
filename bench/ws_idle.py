"""Idle chat WebSockets held by one worker: memory and CPU per connection.

Opens N connections (10,000 by default) to `WS /api/v1/chat/stream` and keeps
them idle — connected, no chat request sent — on two servers, one uvicorn
worker each:

- bare: a FastAPI WebSocket route that accepts and waits (`bench.apps:bare_app`);
- full: the real app served the way `adiuva serve` serves it (`app.server`), every
  middleware in front of the chat stream handler.

Both use the app's uvicorn settings (`app.server.server_limits`), so the ratio is
what the app itself adds to a socket. (Stock uvicorn also negotiates
permessage-deflate, whose zlib streams cost about 45 KiB more per socket on
either server; the app's server leaves it off.)

What the full app is configured with for the run, and why:

- every socket is signed in (`Authorization: Bearer`, USERS registered users,
  each holding N / USERS sockets). Anonymous sockets are capped per address
  (`WS_MAX_ANONYMOUS_PER_IP`) and all the clients here share 127.0.0.1; a
  signed-in socket has no such cap, as in production;
- `WS_FIRST_FRAME_TIMEOUT_SECONDS=3600`, far above the run's length: the app
  closes a socket that has sent no chat request by then (10 s by default), and
  the point is to measure sockets that stay;
- `RATE_LIMIT_FREE_PER_MINUTE` raised: each user's handshakes all come within
  seconds, and every handshake counts against the per-minute limit.

An idle socket holds no concurrency lease (a unit of work starts with its first
frame), so nothing else needs raising.

Measured on each server process, from /proc: resident memory (VmRSS) before its
sockets open and once they are all open; CPU time (utime + stime) over an idle
window with every socket of both servers open, less the server's own CPU with no
socket open (measured before, over OWN_IDLE_SECONDS, scaled to the window). The
window defaults to uvicorn's WebSocket ping interval (20 s), so the server pings
each socket exactly once in it, as in steady state. "held" counts the sockets
still open at the end of the window. Each server's figures are its own process's,
so the two can hold their sockets at the same time, which keeps the run short.

Client processes (CLIENT_PROCESSES per server) open the sockets with a light
client (websockets' sans-I/O protocol on uvloop); the open-file limit is raised
to the hard limit for them and for the servers, which inherit it. Everything is
closed at the end and the servers stopped.

    .venv/bin/python -m bench.ws_idle [--connections 10000] [--idle-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
import uvloop
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.protocol import State
from websockets.uri import parse_uri

from bench.common import ROOT, Served, free_port, goal, machine_info, ratio
from bench.gateway_overhead import bench_env, migrate, register_users

PATH = "/api/v1/chat/stream"
USERS = 10
CLIENT_PROCESSES = 2
IN_FLIGHT_PER_CLIENT = 100  # handshakes under way at once, per client process
WARM_UP_SOCKETS = 50
OWN_IDLE_SECONDS = 5.0  # the server's CPU with no socket open, scaled to the idle window


@dataclass
class Result:
    opened: int
    held: int
    kib_per_socket: float
    handshake_cpu_ms: float  # server CPU per socket opened
    idle_cpu_ms_per_1k: float  # over the idle window, less the server's own idle CPU
    open_seconds: float
    first_error: str | None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # Counted from the state (field 3): utime is field 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server(command: list[str], env: dict[str, str] | None = None) -> Iterator[Served]:
    """Start `command` (a server on the `{port}` it is given); stop it when the block ends.

    Yields at once: `ready()` waits for the server to answer.
    """
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        [arg.replace("{port}", str(port)) for arg in command],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        yield Served(f"http://127.0.0.1:{port}", process.pid)
    except BaseException:
        if process.poll() is not None:
            log.seek(0)
            print(log.read().decode()[-2000:], file=sys.stderr)
        raise
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def ready(served: Served) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            httpx.get(f"{served.base}/api/v1/health", timeout=1)
            return
        except httpx.HTTPError:
            if not Path(f"/proc/{served.pid}").exists() or time.monotonic() > deadline:
                raise RuntimeError(f"the server at {served.base} did not start") from None
            time.sleep(0.2)


# Both servers run with the app's own uvicorn settings (`app.server.server_limits`:
# no permessage-deflate, the frame cap), so the ratio is what the app adds per socket.
BARE = [
    sys.executable,
    "-c",
    "import uvicorn; from app.config import Settings; from app.server import server_limits; "
    "uvicorn.run('bench.apps:bare_app', factory=True, host='127.0.0.1', port={port}, "
    "log_level='warning', access_log=False, **server_limits(Settings()))",
]
FULL = [
    sys.executable,
    "-c",
    "from app.server import serve; serve('127.0.0.1', {port}, log_level='warning')",
]


class IdleSocket(asyncio.Protocol):
    """A client WebSocket that opens, answers the server's pings and sends nothing else.

    websockets' sans-I/O protocol on a bare transport: a tenth of the CPU of a full
    client connection, so the clients do not starve the server of the shared cores.
    Offers permessage-deflate, as browsers do.
    """

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.ws = ClientProtocol(parse_uri(url), extensions=enable_client_permessage_deflate(None))
        self.headers = headers
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        request = self.ws.connect()
        for name, value in self.headers.items():
            request.headers[name] = value
        self.ws.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        self.ws.events_received()  # the handshake response; pings are answered by the protocol
        self._flush()
        if not self.opened.done():
            if self.ws.state is State.OPEN:
                self.opened.set_result(None)
            elif self.ws.handshake_exc is not None:
                self.opened.set_exception(self.ws.handshake_exc)

    def eof_received(self) -> bool:
        self.ws.receive_eof()
        self._flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        self.lost.set_result(None)

    def _flush(self) -> None:
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    async def close(self) -> None:
        if self.ws.state is State.OPEN:
            self.ws.send_close(1000)
            self._flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.lost), 5)
        self.transport.close()


async def open_sockets(
    url: str, headers: list[dict[str, str]], count: int, offset: int = 0
) -> list[IdleSocket | BaseException]:
    """Open `count` sockets, at most IN_FLIGHT_PER_CLIENT handshakes at once."""
    loop = asyncio.get_running_loop()
    uri = parse_uri(url)
    gate = asyncio.Semaphore(IN_FLIGHT_PER_CLIENT)

    async def one(n: int) -> IdleSocket:
        sent = headers[n % len(headers)] if headers else {}
        async with gate:
            _, socket = await loop.create_connection(
                lambda: IdleSocket(url, sent), uri.host, uri.port
            )
            try:
                await asyncio.wait_for(asyncio.shield(socket.opened), 60)
            except BaseException:
                socket.transport.close()
                raise
            return socket

    return await asyncio.gather(*(one(offset + n) for n in range(count)), return_exceptions=True)


async def close_sockets(sockets: list[IdleSocket]) -> None:
    await asyncio.gather(*(socket.close() for socket in sockets))


async def _client(
    url: str, headers: list[dict[str, str]], count: int, offset: int, pipe: Connection
) -> None:
    results = await open_sockets(url, headers, count, offset)
    sockets = [r for r in results if isinstance(r, IdleSocket)]
    errors = Counter(f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException))
    pipe.send(("opened", len(sockets), errors.most_common(1)[0][0] if errors else None))
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "count and close"
    held = sum(1 for socket in sockets if socket.ws.state is State.OPEN)
    await close_sockets(sockets)
    pipe.send(("closed", held))


def client_process(
    url: str, headers: list[dict[str, str]], count: int, offset: int, pipe: Connection
) -> None:
    """One client process: open its share of the sockets, hold them until told, close them."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_client(url, headers, count, offset, pipe))


def _answers(pipes: list[Connection], timeout: float) -> list[tuple]:
    deadline = time.monotonic() + timeout
    answers = []
    for pipe in pipes:
        if not pipe.poll(max(0.0, deadline - time.monotonic())):
            raise RuntimeError("a client process did not answer in time")
        answers.append(pipe.recv())
    return answers


def warm_up(served: Served, headers: list[dict[str, str]]) -> None:
    """A few sockets opened and closed: what the server sets up once is no per-socket cost."""
    url = served.base.replace("http://", "ws://") + PATH

    async def run() -> None:
        results = await open_sockets(url, headers, WARM_UP_SOCKETS)
        failed = [r for r in results if isinstance(r, BaseException)]
        await close_sockets([r for r in results if isinstance(r, IdleSocket)])
        if failed:
            raise RuntimeError(f"warm-up sockets refused: {failed[0]!r}")

    asyncio.run(run())


@dataclass
class Clients:
    """The client processes holding one server's sockets open, and what opening cost."""

    served: Served
    processes: list[multiprocessing.Process] = field(default_factory=list)
    pipes: list[Connection] = field(default_factory=list)
    rss_before: int = 0
    cpu_before: float = 0.0
    started: float = 0.0
    opened: int = 0
    first_error: str | None = None
    open_seconds: float = 0.0
    handshake_cpu_ms: float = 0.0  # server CPU per socket opened

    def stop(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
            process.join()


def start_clients(served: Served, count: int, headers: list[dict[str, str]]) -> Clients:
    """Client processes that open `count` idle sockets, and hold them until `close_held`."""
    url = served.base.replace("http://", "ws://") + PATH
    context = multiprocessing.get_context("fork")
    clients = Clients(served, rss_before=served.rss_kib(), cpu_before=cpu_seconds(served.pid))
    clients.started = time.monotonic()
    try:
        offset = 0
        for n in range(CLIENT_PROCESSES):
            share = count // CLIENT_PROCESSES + (n < count % CLIENT_PROCESSES)
            ours, theirs = context.Pipe()
            process = context.Process(
                target=client_process, args=(url, headers, share, offset, theirs), daemon=True
            )
            process.start()
            clients.processes.append(process)
            clients.pipes.append(ours)
            offset += share
    except BaseException:
        clients.stop()
        raise
    return clients


def wait_open(clients: Clients) -> None:
    """Wait until every client process has opened its sockets (or failed to)."""
    answers = _answers(clients.pipes, timeout=120)
    clients.open_seconds = time.monotonic() - clients.started
    clients.opened = sum(answer[1] for answer in answers)
    clients.first_error = next((answer[2] for answer in answers if answer[2]), None)
    spent = cpu_seconds(clients.served.pid) - clients.cpu_before
    clients.handshake_cpu_ms = spent * 1000 / max(1, clients.opened)


def close_held(clients: Clients) -> int:
    """Close every socket; how many were still open."""
    try:
        for pipe in clients.pipes:
            pipe.send("close")
        return sum(answer[1] for answer in _answers(clients.pipes, timeout=60))
    finally:
        clients.stop()


def own_idle_cpu(servers: list[Served], idle_seconds: float) -> list[float]:
    """Each server's CPU with no socket open, over `idle_seconds` (measured over a shorter
    window and scaled: it is the app's own timers, at a steady rate)."""
    before = [cpu_seconds(served.pid) for served in servers]
    time.sleep(OWN_IDLE_SECONDS)
    scale = idle_seconds / OWN_IDLE_SECONDS
    return [(cpu_seconds(s.pid) - b) * scale for s, b in zip(servers, before, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=20.0,
        help="idle window for the CPU figure (default: uvicorn's ping interval)",
    )
    args = parser.parse_args()
    # One descriptor per socket, and some to spare; the servers and clients inherit it.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.connections + 1000:
        raise SystemExit(f"the open-file limit ({hard}) is too low for {args.connections} sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"machine: {machine_info()}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as data_dir:
        env = bench_env(
            data_dir,
            RATE_LIMIT_FREE_PER_MINUTE="1000000",
            WS_FIRST_FRAME_TIMEOUT_SECONDS="3600",
        )
        # Both servers start at once (the full app takes longest to import) and hold
        # their sockets at the same time: each one's figures are its own process's.
        with server(BARE, env) as bare:
            migrate(env)
            with server(FULL, env) as full:
                ready(bare)
                ready(full)
                tokens = register_users(full.base, USERS)
                headers = [{"Authorization": token} for token in tokens]
                warm_up(bare, [])
                warm_up(full, headers)
                bare_own, full_own = own_idle_cpu([bare, full], args.idle_seconds)
                setup_seconds = time.monotonic() - started
                held: list[Clients] = []
                try:
                    held.append(start_clients(bare, args.connections, []))
                    held.append(start_clients(full, args.connections, headers))
                    for clients in held:
                        wait_open(clients)
                    time.sleep(1)  # let the servers settle their buffers before reading RSS
                    kib = [(c.served.rss_kib() - c.rss_before) / max(1, c.opened) for c in held]
                    before = [cpu_seconds(served.pid) for served in (bare, full)]
                    time.sleep(args.idle_seconds)
                    idle = [
                        cpu_seconds(s.pid) - b for s, b in zip((bare, full), before, strict=True)
                    ]
                finally:
                    closing = time.monotonic()
                    still_open = [close_held(clients) for clients in held]
                    close_seconds = time.monotonic() - closing
    bare_result, full_result = (
        Result(
            opened=clients.opened,
            held=count,
            kib_per_socket=memory,
            handshake_cpu_ms=clients.handshake_cpu_ms,
            idle_cpu_ms_per_1k=max(0.0, cpu - own) * 1e6 / max(1, clients.opened),
            open_seconds=clients.open_seconds,
            first_error=clients.first_error,
        )
        for clients, count, memory, cpu, own in zip(
            held, still_open, kib, idle, (bare_own, full_own), strict=True
        )
    )
    rows = [
        ("bare FastAPI WebSocket route", bare_result),
        ("full app, WS /chat/stream (signed in)", full_result),
    ]
    print(
        f"idle WebSockets, {args.connections} opened per server, one uvicorn worker; "
        f"idle CPU over {args.idle_seconds:g} s, per 1,000 sockets"
    )
    print(f"{'':40}{'held':>7}{'KiB/socket':>12}{'handshake CPU ms':>18}{'idle CPU ms/1k':>16}")
    for name, result in rows:
        print(
            f"{name:40}{result.held:>7}{result.kib_per_socket:>12.1f}"
            f"{result.handshake_cpu_ms:>18.2f}{result.idle_cpu_ms_per_1k:>16.1f}"
        )
        if result.first_error:
            print(f"  {result.opened} opened; first refusal: {result.first_error}")
    cpu_ratio = (
        ratio(full_result.idle_cpu_ms_per_1k, bare_result.idle_cpu_ms_per_1k)
        if bare_result.idle_cpu_ms_per_1k >= 0.1
        else "n/a (the bare server's is below the clock's resolution)"
    )
    print(
        f"\nfull app vs bare: sockets held {ratio(full_result.held, bare_result.held)}, "
        f"memory per socket {ratio(full_result.kib_per_socket, bare_result.kib_per_socket)}, "
        f"handshake CPU {ratio(full_result.handshake_cpu_ms, bare_result.handshake_cpu_ms)}, "
        f"idle CPU per socket {cpu_ratio}"
    )
    goal(
        "idle WebSockets held by one worker",
        f"{full_result.held:,} of {args.connections:,}",
        f"{args.connections:,}",
        full_result.held == args.connections,
    )
    memory_ratio = full_result.kib_per_socket / bare_result.kib_per_socket
    goal(
        "memory per idle WebSocket vs bare (same uvicorn settings)",
        f"{full_result.kib_per_socket:.0f} KiB ({memory_ratio:.2f}×)",
        "below the 114 KiB (1.72×) of a leased socket",
        full_result.kib_per_socket < 114,
    )
    opening = max(bare_result.open_seconds, full_result.open_seconds)
    print(
        f"(setup {setup_seconds:.0f} s, sockets open after {opening:.0f} s, "
        f"closed in {close_seconds:.0f} s; whole run {time.monotonic() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
