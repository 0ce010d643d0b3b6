"""Metered LLM use: reserve an estimate before a call, settle to the real cost after.

1 credit = 1/CREDITS_PER_USD USD (0.001 USD by default). Each movement of a
balance is one conditional UPDATE plus a ledger row in the same transaction,
so the ledger always sums to the balance and no balance goes negative.
"""

from __future__ import annotations

import logging
import math
import uuid
from datetime import UTC, datetime

from app.billing.tiers import TierTable
from app.config import Settings
from app.credits.repository import CreditRepository
from app.db import Database
from app.errors import PaymentRequired, ServiceUnavailable
from app.kit.sql import STORE_ERRORS
from app.metrics import CREDITS_SPENT, REFUSALS
from app.models import BillingTier, CreditReason
from app.work import CreditMeter, UnitOfWork

log = logging.getLogger(__name__)


def current_period(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m")


class CreditService:
    def __init__(self, db: Database, settings: Settings, tiers: TierTable) -> None:
        self.db = db
        self.settings = settings
        self.tiers = tiers
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
            async with self.db.sessionmaker.begin() as session:
                repo = CreditRepository(session)
                await repo.ensure_account(tenant_id)
                if amount <= 0:
                    return
                balance = await repo.grant_for_period(tenant_id, amount, period)
                if balance is not None:
                    await repo.append(tenant_id, amount, CreditReason.MONTHLY_GRANT, balance)
        except STORE_ERRORS as exc:
            raise _unavailable(exc) from exc
        if amount > 0:
            # Only now is this period's grant known to be in the database. A tier without
            # a grant is not remembered: an upgrade later this month must still be granted.
            self._granted.add(tenant_id)

    async def reserve(self, unit: UnitOfWork, credits: int) -> str:
        assert unit.tenant_id is not None
        try:
            async with self.db.sessionmaker.begin() as session:
                repo = CreditRepository(session)
                balance = await repo.debit_if_covered(unit.tenant_id, credits)
                if balance is None:
                    REFUSALS.labels("insufficient_credits").inc()
                    available = await repo.balance(unit.tenant_id)
                    raise PaymentRequired(
                        f"Not enough credits for this request: {credits} needed, "
                        f"{available} available. Add credits, upgrade, or send your own key "
                        "in X-LLM-API-KEY.",
                        error="insufficient_credits",
                    )
                entry = await repo.append(
                    unit.tenant_id,
                    -credits,
                    CreditReason.RESERVE,
                    balance,
                    user_id=unit.user_id,
                    request_id=unit.request_id,
                )
                return f"{entry.id}:{credits}"
        except STORE_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def settle(self, unit: UnitOfWork, reservation: str, meter: CreditMeter) -> None:
        """Refund what the call did not use, or charge the overrun as far as the balance allows."""
        assert unit.tenant_id is not None
        reserved = int(reservation.rsplit(":", 1)[1])
        actual = self.credits_for(meter.cost_usd)
        CREDITS_SPENT.inc(actual)
        try:
            async with self.db.sessionmaker.begin() as session:
                repo = CreditRepository(session)
                if actual <= reserved:
                    refund = reserved - actual
                    reason = CreditReason.SETTLE if actual else CreditReason.RELEASE
                    balance = await repo.credit(unit.tenant_id, refund) if refund else None
                    if balance is None:
                        balance = await repo.balance(unit.tenant_id)
                    await repo.append(
                        unit.tenant_id,
                        refund,
                        reason,
                        balance,
                        user_id=unit.user_id,
                        request_id=unit.request_id,
                    )
                    return
                taken, balance = await self._charge_overrun(repo, unit.tenant_id, actual - reserved)
                if taken < actual - reserved:
                    log.warning(
                        "LLM cost exceeded the credit balance",
                        extra={
                            "tenant_id": str(unit.tenant_id),
                            "uncovered": actual - reserved - taken,
                        },
                    )
                await repo.append(
                    unit.tenant_id,
                    -taken,
                    CreditReason.SETTLE,
                    balance,
                    user_id=unit.user_id,
                    request_id=unit.request_id,
                )
        except STORE_ERRORS:
            # The reservation stays charged: the tenant is never under-billed by an outage.
            log.exception("credit settlement failed", extra={"reservation": reservation})

    @staticmethod
    async def _charge_overrun(
        repo: CreditRepository, tenant_id: uuid.UUID, extra: int
    ) -> tuple[int, int]:
        # Each attempt is a conditional debit, so a concurrent spend can only make us
        # retry with a smaller amount, never push the balance below zero.
        for _ in range(5):
            available = await repo.balance(tenant_id)
            take = min(extra, available)
            if take <= 0:
                return 0, available
            balance = await repo.debit_if_covered(tenant_id, take)
            if balance is not None:
                return take, balance
        return 0, await repo.balance(tenant_id)

    async def admin_grant(
        self, tenant_id: uuid.UUID, amount: int, admin_id: uuid.UUID, request_id: str | None
    ) -> int:
        async with self.db.sessionmaker.begin() as session:
            repo = CreditRepository(session)
            await repo.ensure_account(tenant_id)
            balance = await repo.credit(tenant_id, amount)
            assert balance is not None
            await repo.append(
                tenant_id,
                amount,
                CreditReason.ADMIN_GRANT,
                balance,
                user_id=admin_id,
                request_id=request_id,
            )
            return balance


def _unavailable(exc: Exception) -> ServiceUnavailable:
    log.error("credit store unavailable", extra={"error": type(exc).__name__})
    return ServiceUnavailable(
        "Credits are temporarily unavailable; try again shortly.", error="credits_unavailable"
    )
