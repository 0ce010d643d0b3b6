"""Supervised background work: a pass repeated at an interval, retried sooner after a failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

log = logging.getLogger(__name__)

# After a failed pass the next try comes sooner than a full interval: 1 s, 2 s, 4 s, …
# up to the interval itself.
FIRST_RETRY_SECONDS = 1.0


async def periodic(
    name: str,
    work: Callable[[], Awaitable[object]],
    interval: float,
    *,
    first_retry: float = FIRST_RETRY_SECONDS,
) -> None:
    """Run `work` every `interval` seconds, forever; failures are logged and retried sooner."""
    failures = 0
    while True:
        delay = min(interval, first_retry * 2 ** (failures - 1)) if failures else interval
        await asyncio.sleep(delay)
        try:
            await work()
        except Exception:
            failures += 1
            log.exception("%s failed; retrying", name, extra={"failures": failures})
        else:
            failures = 0


@asynccontextmanager
async def supervised(
    name: str, work: Callable[[], Awaitable[object]], interval: float
) -> AsyncIterator[asyncio.Task[None] | None]:
    """A `periodic` task for the life of the block (None when `interval` is 0)."""
    if interval <= 0:
        yield None
        return
    task = asyncio.create_task(periodic(name, work, interval), name=name)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
