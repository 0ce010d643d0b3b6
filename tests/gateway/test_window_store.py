"""The in-process window store: limits hold, and lapsed entries are swept at a pace."""

from __future__ import annotations

import asyncio

from limits import RateLimitItemPerMinute

from app.kit.ratelimit import MovingWindow, PacedMemoryStorage, build_storage


async def test_memory_uri_builds_the_paced_store_and_limits_hold():
    storage = build_storage("memory://")
    assert isinstance(storage, PacedMemoryStorage)
    window = MovingWindow(storage)
    item = RateLimitItemPerMinute(3)
    results = [await window.hit(item, "tier", "anon:visitor") for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert results[2].remaining == 0
    assert results[3].reset_after > 0
    # Another caller has a window of its own.
    assert (await window.hit(item, "tier", "anon:other")).allowed


async def test_a_burst_of_hits_from_many_callers_starts_one_sweep():
    storage = PacedMemoryStorage()
    sweeps = 0
    original = storage._MemoryStorage__expire_events

    async def counted() -> None:
        nonlocal sweeps
        sweeps += 1
        await original()

    storage._MemoryStorage__expire_events = counted
    window = MovingWindow(storage)
    item = RateLimitItemPerMinute(100)
    for n in range(2000):
        await window.hit(item, "tier", f"anon:{n}")
        if n % 100 == 0:
            await asyncio.sleep(0)  # let a scheduled sweep run, as requests would
    assert sweeps == 1
    assert len(storage.events) == 2000  # nothing lapsed yet: every caller's entry is kept
