"""Concurrency leases at the repository level: slots, expiry, races."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from app.quota.repository import LeaseRepository

pytestmark = pytest.mark.usefixtures("backend")


async def _acquire(app, scope: str, limit: int, now: datetime, ttl: int = 60):
    async with app.state.db.sessionmaker.begin() as session:
        return await LeaseRepository(session).acquire(
            scope, limit, now, now + timedelta(seconds=ttl)
        )


async def test_every_slot_once_then_none(app):
    now = datetime.now(UTC)
    leases = [await _acquire(app, "scope:a", 50, now) for _ in range(50)]
    assert sorted(lease.slot for lease in leases) == list(range(50))
    assert await _acquire(app, "scope:a", 50, now) is None
    async with app.state.db.sessionmaker.begin() as session:
        await LeaseRepository(session).release(leases[17])
    again = await _acquire(app, "scope:a", 50, now)
    assert again is not None and again.slot == 17


async def test_expired_slots_are_reused_and_scopes_are_separate(app):
    now = datetime.now(UTC)
    first = await _acquire(app, "scope:b", 1, now, ttl=1)
    assert await _acquire(app, "scope:b", 1, now) is None
    assert await _acquire(app, "scope:c", 1, now) is not None
    later = now + timedelta(seconds=2)
    taken_over = await _acquire(app, "scope:b", 1, later)
    assert taken_over is not None and taken_over.lease_id != first.lease_id
    # The crashed holder's release no longer touches the new lease.
    async with app.state.db.sessionmaker.begin() as session:
        await LeaseRepository(session).release(first)
        assert await LeaseRepository(session).in_use("scope:b", later) == 1


async def test_concurrent_acquires_never_exceed_the_limit(app):
    now = datetime.now(UTC)
    results = await asyncio.gather(*(_acquire(app, "scope:d", 7, now) for _ in range(25)))
    taken = [lease for lease in results if lease is not None]
    assert len(taken) == 7
    assert len({lease.slot for lease in taken}) == 7
