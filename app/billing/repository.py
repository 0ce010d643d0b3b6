from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.kit.repository import Repository
from app.models import ProcessedStripeEvent, Subscription
from app.models.base import utcnow


class SubscriptionRepository(Repository[Subscription]):
    model = Subscription

    async def for_tenant(self, tenant_id: uuid.UUID) -> Subscription | None:
        return await self.get_one_or_none(
            select(Subscription).where(Subscription.tenant_id == tenant_id)
        )

    async def tenant_for_stripe(
        self, subscription_id: str | None, customer_id: str | None
    ) -> uuid.UUID | None:
        """The tenant owning a Stripe subscription (or, failing that, a Stripe customer)."""
        for column, value in (
            (Subscription.stripe_subscription_id, subscription_id),
            (Subscription.stripe_customer_id, customer_id),
        ):
            if value:
                tenant_id = await self.session.scalar(
                    select(Subscription.tenant_id).where(column == value).limit(1)
                )
                if tenant_id is not None:
                    return tenant_id
        return None

    async def apply_event(
        self,
        tenant_id: uuid.UUID,
        event_created: int,
        values: dict[str, Any],
        *,
        subscription_id: str | None = None,
    ) -> bool:
        """Apply a Stripe event's changes unless a newer event was already applied.

        One conditional UPDATE, so an older event arriving late (or racing a
        newer one) can never roll the row back. With `subscription_id`, an event
        about a subscription the tenant no longer holds changes nothing either.
        """
        conditions = [
            Subscription.tenant_id == tenant_id,
            or_(
                Subscription.stripe_event_created.is_(None),
                Subscription.stripe_event_created <= event_created,
            ),
        ]
        if subscription_id is not None:
            conditions.append(
                or_(
                    Subscription.stripe_subscription_id.is_(None),
                    Subscription.stripe_subscription_id == subscription_id,
                )
            )
        result = await self.session.execute(
            update(Subscription)
            .where(*conditions)
            .values(**values, stripe_event_created=event_created, updated_at=utcnow())
            .returning(Subscription.id)
            .execution_options(synchronize_session=False)
        )
        return result.first() is not None

    async def release_subscription_id(self, subscription_id: str, tenant_id: uuid.UUID) -> None:
        """A Stripe subscription id is unique: detach it from any other tenant first."""
        await self.session.execute(
            update(Subscription)
            .where(
                Subscription.stripe_subscription_id == subscription_id,
                Subscription.tenant_id != tenant_id,
            )
            .values(stripe_subscription_id=None)
            .execution_options(synchronize_session=False)
        )

    async def cancel_locally(self, tenant_id: uuid.UUID, values: dict[str, Any], at: int) -> None:
        # The cancellation counts as the newest change: events created before it
        # (a late `customer.subscription.updated`) must not undo it.
        await self.session.execute(
            update(Subscription)
            .where(Subscription.tenant_id == tenant_id)
            .values(**values, stripe_event_created=at, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def ensure(self, tenant_id: uuid.UUID, *, is_sqlite: bool) -> None:
        """The tenant's (free) subscription row, if it has none yet."""
        dialect_insert = sqlite.insert if is_sqlite else postgresql.insert
        now = utcnow()
        await self.session.execute(
            dialect_insert(Subscription)
            .values(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                tier="free",
                status="active",
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[Subscription.tenant_id])
        )

    async def claim_checkout(
        self, tenant_id: uuid.UUID, claim: str, tier: str, expires_at: datetime
    ) -> bool:
        """Claim the tenant's one open Checkout; False if it has a live subscription
        or another Checkout still open.

        One conditional UPDATE: of concurrent checkouts exactly one matches (on
        PostgreSQL the others wait for its commit and then find the claim), so a
        tenant never has two Checkouts able to start a subscription.
        """
        now = utcnow()
        result = await self.session.execute(
            update(Subscription)
            .where(
                Subscription.tenant_id == tenant_id,
                Subscription.stripe_subscription_id.is_(None),
                or_(
                    Subscription.pending_checkout_expires_at.is_(None),
                    Subscription.pending_checkout_expires_at <= now,
                ),
            )
            .values(
                pending_checkout_id=claim,
                pending_checkout_url=None,
                pending_checkout_tier=tier,
                pending_checkout_expires_at=expires_at,
                updated_at=now,
            )
            .returning(Subscription.id)
            .execution_options(synchronize_session=False)
        )
        return result.first() is not None

    async def record_checkout(
        self, tenant_id: uuid.UUID, claim: str, session_id: str, url: str
    ) -> None:
        await self.session.execute(
            update(Subscription)
            .where(Subscription.tenant_id == tenant_id, Subscription.pending_checkout_id == claim)
            .values(pending_checkout_id=session_id, pending_checkout_url=url)
            .execution_options(synchronize_session=False)
        )

    async def release_checkout(self, session_id: str) -> None:
        """An expired Checkout frees the tenant's claim at once."""
        await self.session.execute(
            update(Subscription)
            .where(Subscription.pending_checkout_id == session_id)
            .values(
                pending_checkout_id=None,
                pending_checkout_url=None,
                pending_checkout_tier=None,
                pending_checkout_expires_at=None,
            )
            .execution_options(synchronize_session=False)
        )

    async def set_cancel_at_period_end(self, tenant_id: uuid.UUID, value: bool) -> None:
        await self.session.execute(
            update(Subscription)
            .where(Subscription.tenant_id == tenant_id)
            .values(cancel_at_period_end=value, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )


class ProcessedEventRepository(Repository[ProcessedStripeEvent]):
    model = ProcessedStripeEvent

    async def claim(self, event_id: str, event_type: str, created: int, *, is_sqlite: bool) -> bool:
        """Record the event id; True only for the transaction that inserted it.

        A second copy (sequential or simultaneous) conflicts on the primary key
        and inserts nothing; on PostgreSQL it waits for the first copy's
        transaction and then sees the row.
        """
        dialect_insert = sqlite.insert if is_sqlite else postgresql.insert
        statement = (
            dialect_insert(ProcessedStripeEvent)
            .values(id=event_id, type=event_type, created=created, received_at=utcnow())
            .on_conflict_do_nothing(index_elements=[ProcessedStripeEvent.id])
            .returning(ProcessedStripeEvent.id)
        )
        result = await self.session.execute(statement)
        return result.first() is not None
