"""Spooling of raw bodies, without the app."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.requests import ClientDisconnect

from app.errors import BadRequest, PayloadTooLarge
from app.storage.streaming import spool_body, sweep_staging


async def body(*parts: bytes, disconnect: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if disconnect:
        raise ClientDisconnect()


async def test_spool_hashes_and_counts(tmp_path: Path) -> None:
    parts = [os.urandom(700_000) for _ in range(4)]
    spooled = await spool_body(body(*parts), tmp_path, 10**7)
    data = b"".join(parts)
    assert spooled.size == len(data)
    assert spooled.sha256 == hashlib.sha256(data).hexdigest()
    assert spooled.path.read_bytes() == data
    spooled.discard()
    assert list(tmp_path.iterdir()) == []


async def test_spool_stops_at_the_limit_and_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge):
        await spool_body(body(b"a" * 600, b"b" * 600), tmp_path, 1000)
    assert list(tmp_path.iterdir()) == []


async def test_a_disconnect_is_a_client_error_and_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(BadRequest) as caught:
        await spool_body(body(b"partial", disconnect=True), tmp_path, 1000)
    assert caught.value.error == "upload_incomplete"
    assert list(tmp_path.iterdir()) == []


def test_sweep_removes_only_old_staging_files(tmp_path: Path) -> None:
    old = tmp_path / "upload-old.part"
    fresh = tmp_path / "upload-fresh.part"
    other = tmp_path / "keep.txt"
    for path in (old, fresh, other):
        path.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    os.utime(other, (two_days_ago, two_days_ago))
    assert sweep_staging(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "upload-fresh.part"]
