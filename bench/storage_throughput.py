"""Storage throughput: records through the API vs the same bytes straight to the blob store.

Starts the app with uvicorn on a free loopback port (SQLite and the file blob
store in a temporary DATA_DIR), then reports:

- upload and download MB/s of a large record through the API (real HTTP) and
  writing/reading the same bytes directly with the blob store, and their ratio;
- the server's peak memory while it receives a body far larger than the
  upload chunk size (the body is streamed to disk, never held in memory).

Run: .venv/bin/python bench/storage_throughput.py [--size-mb 64] [--big-mb 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.storage.blobs import FileBlobStore, new_staging_path  # noqa: E402
from app.storage.streaming import WRITE_BATCH_BYTES  # noqa: E402

MB = 1024 * 1024
CLIENT_CHUNK = MB


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of `pid`; False where unsupported."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class PeakSampler:
    """Samples RSS while an operation runs, in case VmHWM cannot be reset."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid, "VmRSS"))
            self._stop.wait(0.005)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ENV": "dev",
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": "",
        "BLOB_STORE": "file",
        "LOG_LEVEL": "WARNING",
        "BCRYPT_ROUNDS": "4",
        # Unlimited storage for the free tier and no per-minute cap: measure bytes only.
        "STORAGE_QUOTA_FREE_BYTES": "-1",
        "MAX_UPLOAD_BYTES": str(4096 * MB),
        "RATE_LIMIT_FREE_PER_MINUTE": "100000",
    }
    python = sys.executable
    subprocess.run(
        [python, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    server = subprocess.Popen(
        [
            python,
            "-m",
            "uvicorn",
            "--factory",
            "app.main:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.terminate()
    raise RuntimeError("the server did not become healthy within 60 s")


def chunks(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(data), CLIENT_CHUNK):
        yield bytes(view[start : start + CLIENT_CHUNK])


def repeated(block: bytes, total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = block[: min(len(block), total - sent)]
        sent += len(piece)
        yield piece


def mb_per_s(size: int, seconds: float) -> float:
    return size / MB / seconds


class Api:
    """A thin stdlib HTTP client: the measurement should be the server's, not a client's."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.headers: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        body: Iterable[bytes] | bytes | None = None,
        headers: dict[str, str] | None = None,
        sink: hashlib._Hash | None = None,
    ) -> tuple[int, bytes, int]:
        """Status, body (empty when `sink` consumed it) and the byte count received."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
            response = conn.getresponse()
            if sink is None:
                content = response.read()
                return response.status, content, len(content)
            buffer = bytearray(CLIENT_CHUNK)
            view = memoryview(buffer)
            received = 0
            while n := response.readinto(buffer):
                sink.update(view[:n])
                received += n
            return response.status, b"", received
        finally:
            conn.close()

    def json(self, method: str, path: str, payload: object) -> dict:
        status, content, _ = self.request(
            method, path, json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {content[:200]!r}")
        return json.loads(content)

    def upload(self, chunks_: Iterable[bytes], size: int, checksum: str) -> str:
        status, content, _ = self.request(
            "POST",
            "/api/v1/storage/records",
            chunks_,
            {
                "X-Table": "bench",
                "X-Checksum": checksum,
                "Content-Type": "application/octet-stream",
                "Content-Length": str(size),
            },
        )
        if status != 201:
            raise RuntimeError(f"upload: {status} {content[:200]!r}")
        return json.loads(content)["id"]


def api_round(api: Api, data: bytes) -> tuple[float, float]:
    checksum = hashlib.sha256(data).hexdigest()
    started = time.perf_counter()
    record_id = api.upload(chunks(data), len(data), checksum)
    upload_s = time.perf_counter() - started

    started = time.perf_counter()
    digest = hashlib.sha256()
    status, _, received = api.request("GET", f"/api/v1/storage/records/{record_id}", sink=digest)
    download_s = time.perf_counter() - started
    assert status == 200 and received == len(data), "download failed"
    assert digest.hexdigest() == checksum, "download differs"
    status, _, _ = api.request("DELETE", f"/api/v1/storage/records/{record_id}")
    assert status == 204
    return upload_s, download_s


async def direct_round(store: FileBlobStore, data: bytes) -> tuple[float, float]:
    """The same bytes hashed and written straight to the store, then read back."""
    key = "00000000-0000-0000-0000-000000000000/bench/direct"
    started = time.perf_counter()
    path = new_staging_path(store.staging_dir)
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        for piece in chunks(data):
            digest.update(piece)
            handle.write(piece)
    await store.put_file(key, path)
    upload_s = time.perf_counter() - started

    started = time.perf_counter()
    reader = await store.open(key)
    received = 0
    async for piece in reader:
        received += len(piece)
    download_s = time.perf_counter() - started
    assert received == len(data)
    await store.delete(key)
    return upload_s, download_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=64, help="record size for throughput")
    parser.add_argument("--big-mb", type=int, default=256, help="body size for the memory test")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    data = os.urandom(args.size_mb * MB)
    with tempfile.TemporaryDirectory(prefix="adiuva-bench-") as tmp:
        port = free_port()
        server = start_server(Path(tmp) / "data", port)
        try:
            api = Api(port)
            token = api.json(
                "POST",
                "/api/v1/auth/register",
                {"email": "bench@example.com", "password": "bench password 123"},
            )["access_token"]
            api.headers = {"Authorization": f"Bearer {token}"}

            rounds = [api_round(api, data) for _ in range(args.rounds)]
            store = FileBlobStore(Path(tmp) / "direct")
            direct = [asyncio.run(direct_round(store, data)) for _ in range(args.rounds)]

            api_up = mb_per_s(len(data), statistics.median(u for u, _ in rounds))
            api_down = mb_per_s(len(data), statistics.median(d for _, d in rounds))
            direct_up = mb_per_s(len(data), statistics.median(u for u, _ in direct))
            direct_down = mb_per_s(len(data), statistics.median(d for _, d in direct))

            # Memory: one body many times the chunk size, streamed from a small block.
            big = args.big_mb * MB
            block = os.urandom(CLIENT_CHUNK)
            digest = hashlib.sha256()
            for piece in repeated(block, big):
                digest.update(piece)
            before = rss_kib(server.pid, "VmRSS")
            exact = reset_peak(server.pid)
            with PeakSampler(server.pid) as sampler:
                api.upload(repeated(block, big), big, digest.hexdigest())
            peak = max(sampler.peak, rss_kib(server.pid, "VmHWM") if exact else 0)
        finally:
            server.terminate()
            server.wait(timeout=30)

    growth_kib = max(0, peak - before)
    growth_mb = growth_kib / 1024
    print(f"record size {args.size_mb} MiB, median of {args.rounds} rounds, one uvicorn worker")
    print(f"{'':10}{'API MB/s':>12}{'direct MB/s':>14}{'ratio':>9}")
    print(f"{'upload':10}{api_up:12.1f}{direct_up:14.1f}{api_up / direct_up:9.2f}")
    print(f"{'download':10}{api_down:12.1f}{direct_down:14.1f}{api_down / direct_down:9.2f}")
    print(
        f"memory: a {args.big_mb} MiB upload (server write batch {WRITE_BATCH_BYTES // 1024} KiB) "
        f"raised the server's peak RSS by {growth_kib} KiB "
        f"({growth_mb / args.big_mb:.3f}x the body; {before / 1024:.0f} MiB before, "
        f"{peak / 1024:.0f} MiB peak, {'VmHWM' if exact else 'sampled'})"
    )


if __name__ == "__main__":
    main()
