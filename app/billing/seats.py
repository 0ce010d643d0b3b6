"""The team tier is billed per seat: keep the Stripe subscription's quantity at the seat count.

Seats are the tenant's active members. When a member joins, leaves or is removed,
the team routes call `SeatSync.changed` once the change is committed; a supervised
task of the worker then runs `sync_seat_quantity` off the request path:

- it locks the tenant's subscription row (so workers syncing the same tenant take
  turns and the last one writes the latest count), counts the seats, reads the
  live subscription from Stripe and, when its item's quantity differs, sets it to
  the seat count with `proration_behavior=create_prorations`;
- the quantity is an absolute value: running it twice, or late, sets the same
  number, so it needs no idempotency key and any later run repairs an earlier miss;
- a tenant without a live team subscription at Stripe (free, pro, power; stub mode,
  where nothing exists at Stripe; a subscription not yet linked by its checkout)
  has nothing to update: the checkout itself is made with the seat count.

A failed Stripe call is logged and retried with a growing delay (`RETRY_DELAYS`);
after the last try the next membership change of the tenant tries again. Changes
still queued when the worker stops are lost until that next change.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any

import anyio
import stripe
from fastapi import FastAPI
from sqlalchemy import select

from app.config import Settings
from app.db import Database
from app.models import BillingTier, Subscription, SubscriptionStatus
from app.tenants.repository import TenantRepository

log = logging.getLogger(__name__)

RETRY_DELAYS = (1.0, 5.0, 30.0, 120.0)
_LIVE = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING, SubscriptionStatus.PAST_DUE)


def stripe_client(settings: Settings) -> stripe.StripeClient | None:
    """A client as app/billing/stripe_client.py makes one; None in stub mode."""
    if not settings.STRIPE_SECRET_KEY:
        return None
    base: dict[str, str] = {}
    if settings.STRIPE_API_BASE:
        base["api"] = settings.STRIPE_API_BASE.rstrip("/")
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses=base,  # type: ignore[arg-type]
        max_network_retries=1,
    )


async def _call(method: Any, *args: Any) -> Any:
    return await anyio.to_thread.run_sync(partial(method, *args))


async def sync_seat_quantity(
    db: Database, client: stripe.StripeClient | None, tenant_id: uuid.UUID
) -> int | None:
    """Set the tenant's Stripe subscription quantity to its seats; the quantity, or None.

    None: nothing to update (no live team subscription at Stripe, or stub mode).
    Raises the Stripe error when the call fails (the caller retries).
    """
    async with db.sessionmaker() as session, session.begin():
        subscription = await session.scalar(
            select(Subscription).where(Subscription.tenant_id == tenant_id).with_for_update()
        )
        if (
            subscription is None
            or subscription.tier != BillingTier.TEAM
            or subscription.status not in _LIVE
            or not subscription.stripe_subscription_id
            or client is None
        ):
            return None
        seats = max(1, await TenantRepository(session).seat_count(tenant_id))
        live = await _call(client.v1.subscriptions.retrieve, subscription.stripe_subscription_id)
        items = live.to_dict().get("items", {}).get("data") or []
        if not items:
            log.warning("team subscription has no item", extra={"tenant_id": str(tenant_id)})
            return None
        item = items[0]
        if item.get("quantity") != seats:
            await _call(
                client.v1.subscription_items.update,
                item["id"],
                {"quantity": seats, "proration_behavior": "create_prorations"},
            )
            log.info("team seats billed", extra={"tenant_id": str(tenant_id), "seats": seats})
        return seats


class SeatSync:
    """One supervised task per worker that syncs the tenants whose members changed."""

    def __init__(self, db: Database, client: stripe.StripeClient | None) -> None:
        self.db = db
        self.client = client
        self._queue: asyncio.Queue[uuid.UUID] = asyncio.Queue()
        self._queued: set[uuid.UUID] = set()
        self._attempts: dict[uuid.UUID, int] = {}
        self._retries: set[asyncio.TimerHandle] = set()

    def changed(self, tenant_id: uuid.UUID) -> None:
        """The tenant's members changed (committed): sync it soon. Never blocks."""
        self._attempts.pop(tenant_id, None)
        self._enqueue(tenant_id)

    def _enqueue(self, tenant_id: uuid.UUID) -> None:
        if tenant_id not in self._queued:  # one pending sync reads the latest count anyway
            self._queued.add(tenant_id)
            self._queue.put_nowait(tenant_id)

    async def join(self) -> None:
        """Wait until every sync queued so far has run (tests, shutdown)."""
        await self._queue.join()

    async def run(self) -> None:
        while True:
            tenant_id = await self._queue.get()
            self._queued.discard(tenant_id)
            try:
                await sync_seat_quantity(self.db, self.client, tenant_id)
                self._attempts.pop(tenant_id, None)
            except Exception:
                self._retry_later(tenant_id)
            finally:
                self._queue.task_done()

    def _retry_later(self, tenant_id: uuid.UUID) -> None:
        attempt = self._attempts.get(tenant_id, 0)
        if attempt >= len(RETRY_DELAYS):
            self._attempts.pop(tenant_id, None)
            log.error(
                "team seats not billed; the next membership change tries again",
                exc_info=True,
                extra={"tenant_id": str(tenant_id)},
            )
            return
        self._attempts[tenant_id] = attempt + 1
        log.warning(
            "team seats not billed; retrying",
            exc_info=True,
            extra={"tenant_id": str(tenant_id), "retry_in": RETRY_DELAYS[attempt]},
        )
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._retries.discard(handle)
            self._enqueue(tenant_id)

        handle = loop.call_later(RETRY_DELAYS[attempt], fire)
        self._retries.add(handle)

    def stop(self) -> None:
        for handle in self._retries:
            handle.cancel()
        self._retries.clear()


@asynccontextmanager
async def seats_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    sync = app.state.seat_sync = SeatSync(app.state.db, stripe_client(settings))
    task = asyncio.create_task(sync.run(), name="seat-sync")
    try:
        yield
    finally:
        sync.stop()
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
