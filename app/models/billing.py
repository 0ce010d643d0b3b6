from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Timestamps, UTCDateTime, UUIDPrimaryKey, enum_column, utcnow
from app.models.enums import BillingTier, SubscriptionStatus


class Subscription(UUIDPrimaryKey, Timestamps, Base):
    """One per tenant; the live source of the tenant's tier."""

    __tablename__ = "subscriptions"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    tier: Mapped[BillingTier] = mapped_column(
        enum_column(BillingTier, "billing_tier"), nullable=False, default=BillingTier.FREE
    )
    status: Mapped[SubscriptionStatus] = mapped_column(
        enum_column(SubscriptionStatus, "subscription_status"),
        nullable=False,
        default=SubscriptionStatus.ACTIVE,
    )
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(
        String(255), nullable=True, unique=True
    )
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # `created` of the newest Stripe event applied: older events never roll the row back.
    stripe_event_created: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Canceled at the end of the paid period: the tier holds until Stripe ends it.
    cancel_at_period_end: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    # The one open Checkout for a tenant without a live subscription: a conditional
    # UPDATE claims it, so concurrent checkouts never start a second subscription.
    pending_checkout_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pending_checkout_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    pending_checkout_tier: Mapped[str | None] = mapped_column(String(16), nullable=True)
    pending_checkout_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ProcessedStripeEvent(Base):
    """Stripe event ids already handled (idempotency of the webhook)."""

    __tablename__ = "processed_stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100), nullable=False)
    created: Mapped[int] = mapped_column(BigInteger, nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class ByokProviderUse(Base):
    """The LLM providers a workspace used with its own key in a month (`period`, YYYY-MM).

    A tier limited to N providers fills slots 0..N-1, one provider each: the primary
    key and the unique (tenant, period, provider) decide between concurrent requests.
    """

    __tablename__ = "byok_provider_uses"
    __table_args__ = (UniqueConstraint("tenant_id", "period", "provider"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
