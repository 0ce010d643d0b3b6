"""Moving-window limiters from the `limits` package, over memory or Redis storage."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

log = logging.getLogger(__name__)


def async_storage_uri(uri: str) -> str:
    """`memory://` / `redis://…` → the async flavour `limits` expects."""
    return uri if uri.startswith("async+") else f"async+{uri}"


# What a failing window store raises: storages are built with `wrap_exceptions`, so
# their own errors (a Redis connection refused, a timeout) arrive as StorageError.
WINDOW_STORE_ERRORS: tuple[type[BaseException], ...] = (StorageError,)


class PacedMemoryStorage(MemoryStorage):
    """`limits`' in-process storage, sweeping lapsed entries every few seconds.

    The library starts a sweep of every key (one thread hop per key) whenever a hit
    finds the previous sweep finished, so under load sweeps ran back to back: with a
    few thousand callers in the window, they cost more than the requests. Lapsed
    entries never count (every check compares timestamps); the sweep only frees
    their memory, so once per `SWEEP_SECONDS` is enough.
    """

    SWEEP_SECONDS = 5.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._next_sweep = 0.0

    # Replaces the library's private scheduler (name-mangled), called before every hit.
    async def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep or (self.timer is not None and not self.timer.done()):
            return
        self._next_sweep = now + self.SWEEP_SECONDS
        self.timer = asyncio.create_task(self._MemoryStorage__expire_events())


def build_storage(uri: str) -> Storage:
    if uri.removeprefix("async+").startswith(("redis", "rediss")):
        # redis-py's asyncio client (already a dependency) rather than coredis.
        return storage_from_string(
            async_storage_uri(uri), implementation="redispy", wrap_exceptions=True
        )
    if async_storage_uri(uri).startswith("async+memory://"):
        return PacedMemoryStorage(async_storage_uri(uri), wrap_exceptions=True)
    return storage_from_string(async_storage_uri(uri), wrap_exceptions=True)


@dataclass(frozen=True, slots=True)
class LimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # seconds until the window frees a request


class MovingWindow:
    """`hit` a named item for some identifiers; say whether it fits and when it resets."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.strategy = MovingWindowRateLimiter(storage)

    async def hit(self, item: RateLimitItem, *identifiers: str) -> LimitResult:
        allowed = await self.strategy.hit(item, *identifiers)
        stats = await self.strategy.get_window_stats(item, *identifiers)
        reset_after = max(0, math.ceil(stats.reset_time - time.time()))
        return LimitResult(allowed, item.amount, max(0, stats.remaining), reset_after)

    async def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        await self.strategy.clear(item, *identifiers)


def parse_limit(text: str) -> RateLimitItem:
    return parse(text)
