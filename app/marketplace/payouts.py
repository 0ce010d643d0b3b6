"""Developer payouts: Stripe Connect onboarding, and the developer's share of each sale
transferred only to a payable account, retried by a supervised job.

A share's state is its sale's `transfer_status`: `pending` (no payable account yet, or
waiting for the job), `created` (paid: a Stripe transfer exists), `failed` (the last
attempt failed; the job tries again later, with a growing delay), `reversed` (the sale
was refunded or disputed before it was paid), `stubbed` (stub mode). Every attempt for a
sale carries the same idempotency key and transfer group (`revenue-<sale id>`): Stripe
makes one transfer whatever the retries, and a retry after a failure first looks for a
transfer already made in that group.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.stripe_client import StripeGateway
from app.db import Database
from app.errors import AppError
from app.marketplace.schemas import ConnectResponse
from app.models import ConnectAccount, RevenueEvent, TransferStatus, User
from app.models.base import utcnow

log = logging.getLogger(__name__)

# After a failed attempt: 1 minute, 2, 4, … up to 6 hours.
RETRY_FIRST = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=6)
# A sale the job took is not taken by another worker for this long.
CLAIM = timedelta(minutes=5)
DUE = (TransferStatus.PENDING, TransferStatus.FAILED)


def retry_delay(attempts: int) -> timedelta:
    return min(RETRY_FIRST * 2 ** max(0, attempts - 1), RETRY_MAX)


def transfer_key(sale_id: uuid.UUID) -> str:
    return f"revenue-{sale_id}"


class Payouts:
    def __init__(self, session: AsyncSession, stripe: StripeGateway) -> None:
        self.session = session
        self.stripe = stripe

    # --- onboarding ----------------------------------------------------------------------

    async def connect(self, user: User, *, is_sqlite: bool) -> ConnectResponse:
        """The developer's Connect account (created once) and a fresh onboarding link."""
        row = await self._account_of(user.id)
        if row is None:
            account_id = await self.stripe.create_connect_account(user_id=user.id, email=user.email)
            insert = sqlite.insert if is_sqlite else postgresql.insert
            now = utcnow()
            await self.session.execute(
                insert(ConnectAccount)
                .values(
                    user_id=user.id,
                    stripe_account_id=account_id,
                    payable=False,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=[ConnectAccount.user_id])
            )
            row = await self._account_of(user.id)
            assert row is not None
            await self.session.execute(
                update(User)
                .where(User.id == user.id)
                .values(stripe_connect_account_id=row.stripe_account_id)
                .execution_options(synchronize_session=False)
            )
        url = await self.stripe.create_account_link(row.stripe_account_id)
        return ConnectResponse(
            account_id=row.stripe_account_id,
            onboarding_url=url,
            payable=row.payable,
            mode=self.stripe.mode,  # type: ignore[arg-type]
        )

    async def account_updated(self, obj: dict[str, Any], created: int) -> None:
        """`account.updated`: payable once payouts and the transfers capability are on."""
        account_id = obj.get("id")
        if not isinstance(account_id, str):
            return
        capabilities = obj.get("capabilities") if isinstance(obj.get("capabilities"), dict) else {}
        transfers = capabilities.get("transfers")
        payable = obj.get("payouts_enabled") is True and transfers in (None, "active")
        result = await self.session.execute(
            update(ConnectAccount)
            .where(
                ConnectAccount.stripe_account_id == account_id,
                or_(
                    ConnectAccount.stripe_event_created.is_(None),
                    ConnectAccount.stripe_event_created <= created,
                ),
            )
            .values(payable=payable, stripe_event_created=created, updated_at=utcnow())
            .returning(ConnectAccount.user_id)
            .execution_options(synchronize_session=False)
        )
        if result.first() is None:
            log.info("account.updated for %s: unknown or stale; ignored", account_id)
        else:
            log.info("connect account %s payable=%s", account_id, payable)

    async def status(self, user_id: uuid.UUID) -> ConnectAccount | None:
        return await self._account_of(user_id)

    async def _account_of(self, user_id: uuid.UUID) -> ConnectAccount | None:
        return await self.session.scalar(
            select(ConnectAccount)
            .where(ConnectAccount.user_id == user_id)
            .execution_options(populate_existing=True)
        )

    # --- transfers -----------------------------------------------------------------------

    async def pay(self, sale: RevenueEvent, now: datetime | None = None) -> None:
        """One attempt at the sale's developer share; its `transfer_status` tells the result."""
        now = now or utcnow()
        if not self.stripe.live:
            sale.transfer_status = TransferStatus.STUBBED
            return
        assert sale.developer_id is not None
        account = await self._account_of(sale.developer_id)
        if account is None or not account.payable:
            # Not an attempt: the job pays it once the developer's account is payable.
            sale.transfer_status = TransferStatus.PENDING
            sale.next_transfer_at = None
            return
        key = transfer_key(sale.id)
        try:
            made = await self.stripe.find_transfer(key) if sale.transfer_attempts else None
            if made is None:
                made = (
                    await self.stripe.create_transfer(
                        amount_cents=sale.developer_share_cents,
                        currency=sale.currency,
                        destination=account.stripe_account_id,
                        idempotency_key=key,
                        metadata={"revenue_event_id": str(sale.id), "plugin_id": sale.plugin_id},
                    )
                ).id
        except AppError as exc:
            sale.transfer_attempts += 1
            sale.transfer_status = TransferStatus.FAILED
            sale.transfer_error = exc.error[:200]
            sale.next_transfer_at = now + retry_delay(sale.transfer_attempts)
            log.warning(
                "transfer for sale %s failed (attempt %d); retried later",
                sale.id,
                sale.transfer_attempts,
            )
            return
        sale.transfer_attempts += 1
        sale.transfer_status = TransferStatus.CREATED
        sale.stripe_transfer_id = made
        sale.transfer_error = None
        sale.next_transfer_at = None


@dataclass(slots=True)
class PayoutReport:
    attempted: int = 0
    paid: int = 0
    failed: int = 0


async def run_payouts(
    db: Database, stripe: StripeGateway, *, now: datetime | None = None, limit: int = 100
) -> PayoutReport:
    """One pass of the payout job: the due shares of payable developers, each claimed by
    a conditional UPDATE (so two workers never attempt the same sale at once) and
    attempted in its own transaction."""
    report = PayoutReport()
    if not stripe.live:
        return report
    now = now or utcnow()
    due = or_(RevenueEvent.next_transfer_at.is_(None), RevenueEvent.next_transfer_at <= now)
    async with db.sessionmaker() as session:
        ids = list(
            await session.scalars(
                select(RevenueEvent.id)
                .join(ConnectAccount, ConnectAccount.user_id == RevenueEvent.developer_id)
                .where(
                    ConnectAccount.payable.is_(True),
                    RevenueEvent.transfer_status.in_(DUE),
                    RevenueEvent.developer_share_cents > 0,
                    due,
                )
                .order_by(RevenueEvent.created_at)
                .limit(limit)
            )
        )
    for sale_id in ids:
        async with db.sessionmaker() as session, session.begin():
            claimed = await session.execute(
                update(RevenueEvent)
                .where(RevenueEvent.id == sale_id, RevenueEvent.transfer_status.in_(DUE), due)
                .values(next_transfer_at=now + CLAIM)
                .returning(RevenueEvent.id)
                .execution_options(synchronize_session=False)
            )
            if claimed.first() is None:
                continue
        async with db.sessionmaker() as session, session.begin():
            sale = await session.get(RevenueEvent, sale_id)
            if sale is None or sale.transfer_status not in DUE:
                continue
            report.attempted += 1
            await Payouts(session, stripe).pay(sale, now)
            if sale.transfer_status == TransferStatus.CREATED:
                report.paid += 1
            elif sale.transfer_status == TransferStatus.FAILED:
                report.failed += 1
    if report.attempted:
        log.info(
            "payout pass",
            extra={"attempted": report.attempted, "paid": report.paid, "failed": report.failed},
        )
    return report
