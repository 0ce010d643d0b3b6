"""Metered LLM use: reserve an estimate before a call, settle to the real cost after.

1 credit = 1/CREDITS_PER_USD USD (0.001 USD by default). Each movement of a
balance is one conditional change plus a ledger row in the same transaction (one
round trip on PostgreSQL; see app/credits/repository.py), so the ledger always
sums to the balance and no balance goes negative.
"""

from __future__ import annotations

import logging
import math
import uuid
from datetime import UTC, datetime

from app.billing.tiers import TierTable
from app.config import Settings
from app.credits.repository import CreditMove, CreditStore, Move, Movement
from app.db import Database
from app.errors import PaymentRequired, ServiceUnavailable
from app.kit.sql import STORE_ERRORS
from app.kit.tasks import finish_even_if_cancelled
from app.metrics import CREDITS_SPENT, REFUSALS
from app.models import BillingTier, CreditReason
from app.work import CreditMeter, UnitOfWork

log = logging.getLogger(__name__)


def current_period(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m")


class CreditService:
    def __init__(self, db: Database, settings: Settings, tiers: TierTable) -> None:
        self.settings = settings
        self.tiers = tiers
        self.store = CreditStore.for_database(db)
        # Tenants this process has seen granted for `_granted_period`: their grant is
        # in the database, so admission needs no round trip for it until next month.
        self._granted_period: str | None = None
        self._granted: set[uuid.UUID] = set()

    def credits_for(self, cost_usd: float) -> int:
        return math.ceil(round(cost_usd * self.settings.CREDITS_PER_USD, 6))

    async def ensure_monthly_grant(self, tenant_id: uuid.UUID, tier: BillingTier) -> None:
        """Create the account if needed and add this month's grant once (idempotent).

        The database grants each period once, whichever worker asks; this process asks
        once per tenant and month (after a grant-bearing tier's check succeeded), so a
        metered admission costs no round trip for it on most calls.
        """
        period = current_period()
        if period != self._granted_period:
            self._granted_period, self._granted = period, set()
        if tenant_id in self._granted:
            return
        amount = self.tiers[tier].monthly_credits
        try:
            await self.store.grant_for_period(tenant_id, amount, period)
        except STORE_ERRORS as exc:
            raise _unavailable(exc) from exc
        if amount > 0:
            # Only now is this period's grant known to be in the database. A tier without
            # a grant is not remembered: an upgrade later this month must still be granted.
            self._granted.add(tenant_id)

    async def reserve(self, unit: UnitOfWork, credits: int) -> str:
        assert unit.tenant_id is not None
        try:
            movement = await self._move(unit, Move.DEBIT, credits, CreditReason.RESERVE)
        except STORE_ERRORS as exc:
            raise _unavailable(exc) from exc
        if movement.entry_id is None:
            REFUSALS.labels("insufficient_credits").inc()
            raise PaymentRequired(
                f"Not enough credits for this request: {credits} needed, "
                f"{movement.balance} available. Add credits, upgrade, or send your own key "
                "in X-LLM-API-KEY.",
                error="insufficient_credits",
            )
        return f"{movement.entry_id}:{credits}"

    async def settle(self, unit: UnitOfWork, reservation: str, meter: CreditMeter) -> None:
        """Refund what the call did not use, or charge the overrun as far as the balance allows."""
        assert unit.tenant_id is not None
        reserved = int(reservation.rsplit(":", 1)[1])
        actual = self.credits_for(meter.cost_usd)
        CREDITS_SPENT.inc(actual)
        if actual <= reserved:
            mode, amount = Move.CREDIT, reserved - actual
            reason = CreditReason.SETTLE if actual else CreditReason.RELEASE
        else:
            mode, amount, reason = Move.DEBIT_AVAILABLE, actual - reserved, CreditReason.SETTLE
        try:
            movement = await self._move(unit, mode, amount, reason)
        except STORE_ERRORS:
            # The reservation stays charged: the tenant is never under-billed by an outage.
            log.exception("credit settlement failed", extra={"reservation": reservation})
            return
        if mode is Move.DEBIT_AVAILABLE and -movement.moved < amount:
            log.warning(
                "LLM cost exceeded the credit balance",
                extra={"tenant_id": str(unit.tenant_id), "uncovered": amount + movement.moved},
            )

    async def _move(
        self, unit: UnitOfWork, mode: Move, amount: int, reason: CreditReason
    ) -> Movement:
        assert unit.tenant_id is not None
        # A movement is its own transaction: cancelled once sent, it may commit unseen.
        # It runs to its end instead: a settlement still refunds what the call did not
        # use, and a reservation whose caller is gone is released whole.
        request = CreditMove(unit.tenant_id, mode, amount, reason, unit.user_id, unit.request_id)

        async def release(movement: Movement) -> None:
            if mode is Move.DEBIT and movement.entry_id is not None:
                back = CreditMove(
                    unit.tenant_id, Move.CREDIT, -movement.moved, CreditReason.RELEASE
                )
                await self.store.move(back)

        return await finish_even_if_cancelled(self.store.move(request), undo=release)

    async def admin_grant(
        self, tenant_id: uuid.UUID, amount: int, admin_id: uuid.UUID, request_id: str | None
    ) -> int:
        grant = CreditMove(
            tenant_id, Move.CREDIT, amount, CreditReason.ADMIN_GRANT, admin_id, request_id
        )
        return (await self.store.move(grant)).balance


def _unavailable(exc: Exception) -> ServiceUnavailable:
    log.error("credit store unavailable", extra={"error": type(exc).__name__})
    return ServiceUnavailable(
        "Credits are temporarily unavailable; try again shortly.", error="credits_unavailable"
    )
