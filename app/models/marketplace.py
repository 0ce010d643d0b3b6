from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import (
    Base,
    CreatedAt,
    Timestamps,
    UTCDateTime,
    UUIDPrimaryKey,
    enum_column,
    utcnow,
)
from app.models.enums import PluginStatus, ReviewDecision, TransferStatus


class PurchaseStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    DISPUTED = "disputed"


class Plugin(Timestamps, Base):
    __tablename__ = "plugins"
    __table_args__ = (
        CheckConstraint("price_cents >= 0", name="price_not_negative"),
        CheckConstraint("install_count >= 0", name="install_count_not_negative"),
        Index("ix_plugins_status_category", "status", "category"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    version: Mapped[str] = mapped_column(String(32), nullable=False)
    author_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    category: Mapped[str] = mapped_column(String(64), nullable=False)
    price_cents: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    currency: Mapped[str] = mapped_column(String(3), nullable=False, default="EUR")
    permissions: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    status: Mapped[PluginStatus] = mapped_column(
        enum_column(PluginStatus, "plugin_status"),
        nullable=False,
        default=PluginStatus.PENDING_REVIEW,
    )
    install_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # avg_rating = rating_sum / rating_count, kept as integers so it stays exact.
    rating_sum: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rating_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class PluginInstallation(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "plugin_installations"
    __table_args__ = (UniqueConstraint("plugin_id", "user_id"),)

    plugin_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("plugins.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )


class PluginReview(UUIDPrimaryKey, Base):
    """An admin's decision on a submitted plugin."""

    __tablename__ = "plugin_reviews"

    plugin_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("plugins.id", ondelete="CASCADE"), nullable=False, index=True
    )
    reviewer_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    decision: Mapped[ReviewDecision] = mapped_column(
        enum_column(ReviewDecision, "review_decision"), nullable=False
    )
    notes: Mapped[str] = mapped_column(Text, nullable=False, default="")
    reviewed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class PluginRating(UUIDPrimaryKey, Timestamps, Base):
    """A user's 1–5 rating of a plugin they installed (one per user, updatable)."""

    __tablename__ = "plugin_ratings"
    __table_args__ = (
        UniqueConstraint("plugin_id", "user_id"),
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
    )

    plugin_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("plugins.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    rating: Mapped[int] = mapped_column(Integer, nullable=False)


class RevenueEvent(UUIDPrimaryKey, CreatedAt, Base):
    """A paid plugin sale and its 70/30 split, in integer cents."""

    __tablename__ = "revenue_events"
    __table_args__ = (
        CheckConstraint(
            "developer_share_cents + platform_share_cents = amount_cents", name="split_sums"
        ),
        Index("ix_revenue_events_developer_created", "developer_id", "created_at"),
    )

    plugin_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("plugins.id", ondelete="RESTRICT"), nullable=False
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    developer_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    amount_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    developer_share_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    platform_share_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    transfer_status: Mapped[TransferStatus] = mapped_column(
        enum_column(TransferStatus, "transfer_status"), nullable=False
    )
    # The payout job's bookkeeping: attempts so far, when to try next, the last error.
    transfer_attempts: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    next_transfer_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    transfer_error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The purchase this sale came from (one sale per purchase); None for older sales.
    purchase_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("plugin_purchases.id", ondelete="SET NULL"), nullable=True, unique=True
    )
    # A reversal (refund, dispute) names the sale it reverses, once; its amounts are negative.
    reverses_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("revenue_events.id", ondelete="SET NULL"), nullable=True, unique=True
    )


class PluginPurchase(UUIDPrimaryKey, Timestamps, Base):
    """A paid plugin bought through a Stripe Checkout (payment mode) for the buyer's workspace.

    `pending` until `checkout.session.completed` arrives (then `paid`: the install and
    the sale are recorded, once); `expired` when the Checkout lapsed; `refunded` or
    `disputed` when the payment was reversed (the share is reversed, the install gone).
    One open purchase per (plugin, buyer): a unique partial index.
    """

    __tablename__ = "plugin_purchases"
    __table_args__ = (
        Index(
            "uq_plugin_purchases_open",
            "plugin_id",
            "user_id",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_plugin_purchases_payment_intent", "stripe_payment_intent_id"),
    )

    plugin_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("plugins.id", ondelete="RESTRICT"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )
    amount_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=PurchaseStatus.PENDING)
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(
        String(255), nullable=True, unique=True
    )
    checkout_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class ConnectAccount(Timestamps, Base):
    """A developer's Stripe Connect account; transfers go only to a payable one
    (`account.updated` with payouts and the transfers capability enabled)."""

    __tablename__ = "connect_accounts"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    stripe_account_id: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    payable: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    # `created` of the newest `account.updated` applied: older events never roll it back.
    stripe_event_created: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
