from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Float, Select, case, cast, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from app.kit.repository import Repository
from app.marketplace.schemas import CatalogSort
from app.models import (
    Plugin,
    PluginInstallation,
    PluginPurchase,
    PluginRating,
    PluginReview,
    PluginStatus,
    RevenueEvent,
    TransferStatus,
)
from app.models.base import utcnow
from app.models.marketplace import PurchaseStatus


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class PluginRepository(Repository[Plugin]):
    model = Plugin

    def _insert(self, model: type[Any]) -> Any:
        bind = self.session.bind
        is_sqlite = bind is not None and bind.dialect.name == "sqlite"
        return (sqlite.insert if is_sqlite else postgresql.insert)(model)

    # --- catalog --------------------------------------------------------------------

    def catalog_statement(
        self, *, category: str | None, q: str | None, sort: CatalogSort
    ) -> Select[tuple[Plugin]]:
        statement = select(Plugin).where(Plugin.status == PluginStatus.APPROVED)
        if category:
            statement = statement.where(Plugin.category == category)
        if q:
            pattern = f"%{_escape_like(q)}%"
            statement = statement.where(
                or_(
                    Plugin.name.ilike(pattern, escape="\\"),
                    Plugin.description.ilike(pattern, escape="\\"),
                )
            )
        if sort == CatalogSort.RATING:
            average = case(
                (Plugin.rating_count > 0, cast(Plugin.rating_sum, Float) / Plugin.rating_count),
                else_=-1.0,
            )
            order = (average.desc(), Plugin.rating_count.desc(), Plugin.id)
        elif sort == CatalogSort.NEWEST:
            order = (Plugin.created_at.desc(), Plugin.id)
        else:
            order = (Plugin.install_count.desc(), Plugin.id)
        return statement.order_by(*order)

    def pending_statement(self) -> Select[tuple[Plugin]]:
        return (
            select(Plugin)
            .where(Plugin.status == PluginStatus.PENDING_REVIEW)
            .order_by(Plugin.created_at, Plugin.id)
        )

    # --- submission and review ------------------------------------------------------

    async def insert_new(self, values: dict[str, Any]) -> bool:
        """Insert a submitted plugin; False if the id is taken (also by a racing submission)."""
        now = utcnow()
        statement = (
            self._insert(Plugin)
            .values(**values, created_at=now, updated_at=now)
            .on_conflict_do_nothing(index_elements=[Plugin.id])
            .returning(Plugin.id)
        )
        return (await self.session.execute(statement)).first() is not None

    async def resubmit(self, plugin_id: str, author_id: uuid.UUID, values: dict[str, Any]) -> bool:
        """Replace the author's own not-yet-approved submission; back to the review queue."""
        result = await self.session.execute(
            update(Plugin)
            .where(
                Plugin.id == plugin_id,
                Plugin.author_id == author_id,
                Plugin.status != PluginStatus.APPROVED,
            )
            .values(**values, updated_at=utcnow())
            .returning(Plugin.id)
            .execution_options(synchronize_session=False)
        )
        return result.first() is not None

    async def decide(self, plugin_id: str, status: PluginStatus) -> bool:
        """Move a pending plugin to its decided status; False if it was not pending."""
        result = await self.session.execute(
            update(Plugin)
            .where(Plugin.id == plugin_id, Plugin.status == PluginStatus.PENDING_REVIEW)
            .values(status=status, updated_at=utcnow())
            .returning(Plugin.id)
            .execution_options(synchronize_session=False)
        )
        return result.first() is not None

    async def add_review(self, review: PluginReview) -> PluginReview:
        self.session.add(review)
        await self.session.flush()
        return review

    # --- installs ---------------------------------------------------------------------

    async def install(self, plugin_id: str, user_id: uuid.UUID, tenant_id: uuid.UUID) -> bool:
        """Insert the installation; True only if this call created it."""
        statement = (
            self._insert(PluginInstallation)
            .values(
                id=uuid.uuid4(),
                plugin_id=plugin_id,
                user_id=user_id,
                tenant_id=tenant_id,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(
                index_elements=[PluginInstallation.plugin_id, PluginInstallation.user_id]
            )
            .returning(PluginInstallation.id)
        )
        return (await self.session.execute(statement)).first() is not None

    async def uninstall(self, plugin_id: str, user_id: uuid.UUID) -> bool:
        """Delete the installation; True only if this call removed a row."""
        result = await self.session.execute(
            delete(PluginInstallation)
            .where(PluginInstallation.plugin_id == plugin_id, PluginInstallation.user_id == user_id)
            .returning(PluginInstallation.id)
            .execution_options(synchronize_session=False)
        )
        return result.first() is not None

    async def add_installs(self, plugin_id: str, delta: int) -> int:
        """Move install_count by `delta` in SQL (never read-then-write); the new count."""
        result = await self.session.execute(
            update(Plugin)
            .where(Plugin.id == plugin_id)
            .values(install_count=Plugin.install_count + delta)
            .returning(Plugin.install_count)
            .execution_options(synchronize_session=False)
        )
        return int(result.scalar_one())

    async def install_count(self, plugin_id: str) -> int:
        count = await self.session.scalar(
            select(Plugin.install_count).where(Plugin.id == plugin_id)
        )
        return int(count or 0)

    async def is_installed(self, plugin_id: str, user_id: uuid.UUID) -> bool:
        found = await self.session.scalar(
            select(PluginInstallation.id).where(
                PluginInstallation.plugin_id == plugin_id, PluginInstallation.user_id == user_id
            )
        )
        return found is not None

    # --- ratings ------------------------------------------------------------------------

    async def rating_of(self, plugin_id: str, user_id: uuid.UUID) -> int | None:
        return await self.session.scalar(
            select(PluginRating.rating).where(
                PluginRating.plugin_id == plugin_id, PluginRating.user_id == user_id
            )
        )

    async def lock_rating(self, plugin_id: str, user_id: uuid.UUID) -> int | None:
        """The user's current rating, row-locked until commit (a no-op UPDATE takes the lock).

        A plain SELECT could read a value a concurrent update is about to
        replace; the UPDATE waits for it and returns the committed value.
        """
        result = await self.session.execute(
            update(PluginRating)
            .where(PluginRating.plugin_id == plugin_id, PluginRating.user_id == user_id)
            .values(rating=PluginRating.rating)
            .returning(PluginRating.rating)
            .execution_options(synchronize_session=False)
        )
        return result.scalar_one_or_none()

    async def insert_rating(self, plugin_id: str, user_id: uuid.UUID, rating: int) -> bool:
        now = utcnow()
        statement = (
            self._insert(PluginRating)
            .values(
                id=uuid.uuid4(),
                plugin_id=plugin_id,
                user_id=user_id,
                rating=rating,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[PluginRating.plugin_id, PluginRating.user_id])
            .returning(PluginRating.id)
        )
        return (await self.session.execute(statement)).first() is not None

    async def set_rating(self, plugin_id: str, user_id: uuid.UUID, rating: int) -> None:
        await self.session.execute(
            update(PluginRating)
            .where(PluginRating.plugin_id == plugin_id, PluginRating.user_id == user_id)
            .values(rating=rating, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def add_rating_totals(
        self, plugin_id: str, sum_delta: int, count_delta: int
    ) -> tuple[int, int]:
        result = await self.session.execute(
            update(Plugin)
            .where(Plugin.id == plugin_id)
            .values(
                rating_sum=Plugin.rating_sum + sum_delta,
                rating_count=Plugin.rating_count + count_delta,
            )
            .returning(Plugin.rating_sum, Plugin.rating_count)
            .execution_options(synchronize_session=False)
        )
        rating_sum, rating_count = result.one()
        return int(rating_sum), int(rating_count)

    # --- revenue ------------------------------------------------------------------------

    async def has_sale(self, plugin_id: str, user_id: uuid.UUID) -> bool:
        """The user bought the plugin and the sale stands (not refunded or disputed)."""
        reversal = aliased(RevenueEvent)
        found = await self.session.scalar(
            select(RevenueEvent.id)
            .where(
                RevenueEvent.plugin_id == plugin_id,
                RevenueEvent.user_id == user_id,
                RevenueEvent.amount_cents > 0,
                ~exists().where(reversal.reverses_id == RevenueEvent.id),
            )
            .limit(1)
        )
        return found is not None

    # --- purchases --------------------------------------------------------------------

    async def open_purchase(self, plugin_id: str, user_id: uuid.UUID) -> PluginPurchase | None:
        return await self.session.scalar(
            select(PluginPurchase)
            .where(
                PluginPurchase.plugin_id == plugin_id,
                PluginPurchase.user_id == user_id,
                PluginPurchase.status == PurchaseStatus.PENDING,
            )
            .execution_options(populate_existing=True)
        )

    async def add_purchase(self, purchase: PluginPurchase) -> bool:
        """Insert a pending purchase; False if the buyer already has one open (the unique
        partial index decides, also between concurrent requests)."""
        try:
            async with self.session.begin_nested():
                self.session.add(purchase)
                await self.session.flush()
        except IntegrityError:
            return False
        return True

    async def set_purchase_status(
        self,
        purchase_id: uuid.UUID,
        status: str,
        from_statuses: Collection[str],
        **values: Any,
    ) -> bool:
        """One conditional UPDATE: True only for the call that moved the purchase."""
        result = await self.session.execute(
            update(PluginPurchase)
            .where(PluginPurchase.id == purchase_id, PluginPurchase.status.in_(from_statuses))
            .values(status=status, updated_at=utcnow(), **values)
            .returning(PluginPurchase.id)
            .execution_options(synchronize_session=False)
        )
        return result.first() is not None

    async def purchase_by_session(self, session_id: str) -> PluginPurchase | None:
        return await self.session.scalar(
            select(PluginPurchase).where(PluginPurchase.stripe_checkout_session_id == session_id)
        )

    async def purchase_by_payment(
        self, payment_intent_id: str | None, purchase_id: uuid.UUID | None
    ) -> PluginPurchase | None:
        if payment_intent_id:
            found = await self.session.scalar(
                select(PluginPurchase).where(
                    PluginPurchase.stripe_payment_intent_id == payment_intent_id
                )
            )
            if found is not None:
                return found
        return await self.session.get(PluginPurchase, purchase_id) if purchase_id else None

    async def sale_of_purchase(self, purchase_id: uuid.UUID) -> RevenueEvent | None:
        return await self.session.scalar(
            select(RevenueEvent).where(RevenueEvent.purchase_id == purchase_id)
        )

    async def add_revenue(self, event: RevenueEvent) -> RevenueEvent:
        self.session.add(event)
        await self.session.flush()
        return event

    async def payouts(
        self, developer_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[tuple[TransferStatus, str, int, int]]:
        """The period's sales (not their reversals) by payout state."""
        rows = await self.session.execute(
            select(
                RevenueEvent.transfer_status,
                RevenueEvent.currency,
                func.count(),
                func.sum(RevenueEvent.developer_share_cents),
            )
            .where(
                RevenueEvent.developer_id == developer_id,
                RevenueEvent.amount_cents > 0,
                RevenueEvent.created_at >= start,
                RevenueEvent.created_at < end,
            )
            .group_by(RevenueEvent.transfer_status, RevenueEvent.currency)
            .order_by(RevenueEvent.transfer_status, RevenueEvent.currency)
        )
        return [(status, currency, int(n), int(share)) for status, currency, n, share in rows]

    async def earnings(
        self, developer_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[tuple[str, str, int, int, int, int]]:
        rows = await self.session.execute(
            select(
                RevenueEvent.plugin_id,
                RevenueEvent.currency,
                # A reversal (refund, dispute) takes its sale back out of the count.
                func.sum(case((RevenueEvent.amount_cents < 0, -1), else_=1)),
                func.sum(RevenueEvent.amount_cents),
                func.sum(RevenueEvent.developer_share_cents),
                func.sum(RevenueEvent.platform_share_cents),
            )
            .where(
                RevenueEvent.developer_id == developer_id,
                RevenueEvent.created_at >= start,
                RevenueEvent.created_at < end,
            )
            .group_by(RevenueEvent.plugin_id, RevenueEvent.currency)
            .order_by(RevenueEvent.plugin_id, RevenueEvent.currency)
        )
        return [
            (plugin_id, currency, int(n), int(amount), int(developer), int(platform))
            for plugin_id, currency, n, amount, developer, platform in rows
        ]
