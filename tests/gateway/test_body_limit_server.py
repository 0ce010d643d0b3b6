"""The caps over a real socket: a 50 MiB body and a 1 MiB header against `adiuva serve`.

The server refuses both (413, 431, in the error shape) without reading them
whole, and its resident memory stays where it was.
"""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.databases import SQLiteTemplate
from tests.support.servers import DEADLINE, ServerProcess, base_env, start_single

MiB = 1024 * 1024
PIECE = 64 * 1024
# What the server may keep of a refused request: far below the body it was offered.
RSS_GROWTH_ALLOWED = 8 * MiB


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    database_url = SQLiteTemplate(tmp_path).clone(tmp_path)
    process = start_single(base_env(database_url, tmp_path / "data"), tmp_path / "server")
    try:
        yield process
    finally:
        process.stop()


def _answered(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    try:
        while chunk := sock.recv(PIECE):
            data += chunk
    except ConnectionResetError:
        pass  # the server closed on a body it would not read; what it said came first
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def exchange(server: ServerProcess, pieces: Iterable[bytes]) -> tuple[int, dict[str, str], bytes]:
    """Send the request piece by piece until the server answers (or hangs up); the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        for piece in pieces:
            if _answered(sock):
                break
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
        return _read_response(sock)


def request_head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    return ("\r\n".join([*lines, *headers]) + "\r\n\r\n").encode()


def spaces(total: int, chunked: bool = False) -> Iterator[bytes]:
    """`total` bytes of JSON whitespace, plain or in chunked transfer encoding."""
    sent = 0
    while sent < total:
        size = min(PIECE, total - sent)
        sent += size
        yield (b"%x\r\n" % size + b" " * size + b"\r\n") if chunked else b" " * size
    if chunked:
        yield b"0\r\n\r\n"


def big_body(total: int, chunked: bool) -> Iterator[bytes]:
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    yield request_head("/api/v1/chat", framing)
    yield from spaces(total, chunked)


def big_header(total: int) -> Iterator[bytes]:
    head = b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "
    yield head
    yield from (b"a" * PIECE for _ in range(total // PIECE))
    yield b"\r\nContent-Length: 2\r\n\r\n{}"


def rss(server: ServerProcess) -> int:
    return psutil.Process(server.pid).memory_info().rss


def assert_refusal(answer: tuple[int, dict[str, str], bytes], status: int, error: str) -> None:
    code, headers, body = answer
    assert code == status, (code, body[:200])
    payload = json.loads(body)
    assert payload["error"] == error and payload["message"] and payload["request_id"]
    assert headers["connection"] == "close"


def test_a_50_mib_body_and_a_1_mib_header_are_refused_without_memory(
    server: ServerProcess,
) -> None:
    # The same refusals once, small, so that what they allocate on first use is counted
    # in the baseline and not as growth.
    assert_refusal(exchange(server, big_body(2 * MiB, chunked=False)), 413, "payload_too_large")
    assert_refusal(exchange(server, big_body(2 * MiB, chunked=True)), 413, "payload_too_large")
    assert_refusal(exchange(server, big_header(64 * 1024)), 431, "request_headers_too_large")
    before = rss(server)

    for chunked in (False, True):
        answer = exchange(server, big_body(50 * MiB, chunked))
        assert_refusal(answer, 413, "payload_too_large")
    assert_refusal(exchange(server, big_header(MiB)), 431, "request_headers_too_large")

    growth = rss(server) - before
    assert growth < RSS_GROWTH_ALLOWED, f"server RSS grew by {growth / MiB:.1f} MiB"
    # Still serving.
    ok = exchange(server, [request_head("/api/v1/auth/login", "Content-Length: 2") + b"{}"])
    assert ok[0] == 422
