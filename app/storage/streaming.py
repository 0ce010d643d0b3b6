"""Raw-body uploads: spooled to disk while hashed and counted, never held in memory."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread
from starlette.requests import ClientDisconnect

from app.errors import BadRequest, PayloadTooLarge
from app.storage.blobs import new_staging_path

# Chunks are gathered up to this size before one threaded write: few thread hops, and
# memory stays bounded by it whatever the body's size.
WRITE_BATCH_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SpooledBody:
    path: Path
    size: int
    sha256: str

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The body is larger than the {max_bytes} bytes allowed per upload.",
        error="payload_too_large",
    )


def check_declared_length(content_length: str | None, max_bytes: int) -> None:
    """Refuse before reading anything when `Content-Length` already says too much."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError as exc:
        raise BadRequest("Content-Length is not a number.", error="bad_content_length") from exc
    if declared > max_bytes:
        raise too_large(max_bytes)


def _write(handle: BinaryIO, digest: hashlib._Hash, data: bytes) -> None:
    # hashlib releases the GIL on large buffers, so this thread does not stall the loop.
    digest.update(data)
    handle.write(data)


async def spool_body(
    chunks: AsyncIterator[bytes], staging_dir: Path, max_bytes: int
) -> SpooledBody:
    """Write the body to a staging file, hashing it on the way; 413 as soon as it is too big."""
    path = new_staging_path(staging_dir)
    digest = hashlib.sha256()
    size = 0
    pending = bytearray()
    handle = await anyio.to_thread.run_sync(path.open, "wb")
    # Held while the body streams in, so the staging sweep never takes a slow upload
    # for an orphan (the lock goes with the process if it crashes).
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            pending += chunk
            if len(pending) >= WRITE_BATCH_BYTES:
                await anyio.to_thread.run_sync(_write, handle, digest, bytes(pending))
                pending.clear()
        if pending:
            await anyio.to_thread.run_sync(_write, handle, digest, bytes(pending))
        await anyio.to_thread.run_sync(handle.close)
    except ClientDisconnect as exc:
        handle.close()
        path.unlink(missing_ok=True)
        raise BadRequest(
            "The upload ended before the whole body arrived; nothing was stored.",
            error="upload_incomplete",
        ) from exc
    except BaseException:
        handle.close()
        path.unlink(missing_ok=True)
        raise
    return SpooledBody(path, size, digest.hexdigest())


def _in_use(path: Path) -> bool:
    """Whether an upload (in any process) is still writing this staging file."""
    with path.open("rb") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def sweep_staging(staging_dir: Path, older_than_seconds: float = 24 * 3600) -> int:
    """Remove staging files a crashed process left behind; returns how many.

    Only old files go, and none an upload still holds: other workers sharing the
    directory may be mid-upload, and a file just spooled waits a moment for the store.
    """
    cutoff = time.time() - older_than_seconds
    removed = 0
    for path in staging_dir.glob("upload-*.part"):
        try:
            if path.stat().st_mtime < cutoff and not _in_use(path):
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def checksums_match(expected_hex: str, actual_hex: str) -> bool:
    return hmac.compare_digest(expected_hex.lower().encode(), actual_hex.lower().encode())


def require_checksum(body: SpooledBody, expected_hex: str) -> None:
    if not checksums_match(expected_hex, body.sha256):
        body.discard()
        raise BadRequest(
            "The body's SHA-256 does not match the checksum header; nothing was stored.",
            error="checksum_mismatch",
        )
