"""Supervised background work: a pass repeated at an interval, retried sooner after a failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

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


# Work that outlived the request that started it, kept referenced until it ends (the
# event loop holds tasks weakly).
_OUTLIVING: set[asyncio.Future] = set()


def _keep(future: asyncio.Future) -> None:
    _OUTLIVING.add(future)
    future.add_done_callback(_OUTLIVING.discard)


async def finish_even_if_cancelled(
    work: Awaitable[T], *, undo: Callable[[T], Awaitable[object]] | None = None
) -> T:
    """Await `work` to its end even if the caller is cancelled meanwhile.

    A statement the database has received commits whether or not its caller still
    waits. If the caller is cancelled (by a cancel scope or a task's cancel(), which
    a shielded cancel scope would not stop), `work` goes on in a task of its own;
    `undo(result)`, if given, then runs to give back what it took, and the
    cancellation goes on.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        _keep(asyncio.ensure_future(_finish(task, undo)))
        raise


async def _finish(task: asyncio.Future[T], undo: Callable[[T], Awaitable[object]] | None) -> None:
    try:
        result = await task
        if undo is not None:
            await undo(result)
    except Exception:
        log.exception("work left by a cancelled request failed")
