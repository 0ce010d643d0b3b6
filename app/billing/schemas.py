from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.models import BillingTier, SubscriptionStatus


class CheckoutRequest(BaseModel):
    tier: BillingTier = Field(description="The paid tier to subscribe to: pro, power or team.")

    @field_validator("tier")
    @classmethod
    def paid_only(cls, tier: BillingTier) -> BillingTier:
        if tier == BillingTier.FREE:
            raise ValueError("checkout is for a paid tier (pro, power or team)")
        return tier


class SubscriptionRead(BaseModel):
    tenant_id: uuid.UUID
    tier: BillingTier
    status: SubscriptionStatus
    seats: int = Field(description="Members of the tenant; the team tier is billed per seat.")
    rate_limit_per_minute: int
    features: list[str] = Field(
        description="The tier's features: batch_builder, plugin_marketplace, sso (a flag "
        "only), cloud_storage, backup."
    )
    cancel_at_period_end: bool = Field(
        description="Canceled at the end of the paid period: the tier holds until then."
    )
    current_period_end: datetime | None
    stripe_customer_id: str | None
    stripe_subscription_id: str | None
    mode: Literal["live", "stub"]


class CheckoutResponse(BaseModel):
    action: Literal["checkout", "upgraded", "downgraded", "resumed"] = Field(
        description="`checkout`: pay at `checkout_url` (no live subscription yet). "
        "Otherwise the live subscription was changed in place: `upgraded` (prorated and "
        "invoiced now), `downgraded` (prorated as a credit on the next invoice) or "
        "`resumed` (a cancellation at period end withdrawn); see `subscription`."
    )
    checkout_url: str | None
    session_id: str | None
    mode: Literal["live", "stub"]
    subscription: SubscriptionRead | None = None


class PortalResponse(BaseModel):
    url: str = Field(
        description="Stripe's customer portal for this workspace (a stub URL in stub mode)."
    )
    mode: Literal["live", "stub"]


class WebhookAck(BaseModel):
    received: bool = True
    duplicate: bool = Field(description="True when this event id was already processed.")


class StripeEventData(BaseModel):
    model_config = ConfigDict(extra="allow")

    object: dict[str, Any] = Field(
        description="The Stripe object the event is about (a Checkout Session, a Subscription…)."
    )


class StripeEvent(BaseModel):
    """A Stripe event object (https://docs.stripe.com/api/events/object); other fields kept."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(max_length=255, examples=["evt_1QkBm2LzUe8ZJmKq7Rb2Yx4c"])
    object: Literal["event"] = "event"
    type: str = Field(
        description="The event type. Acted on: checkout.session.completed, "
        "customer.subscription.updated, customer.subscription.deleted, invoice.payment_failed; "
        "others are acknowledged.",
        examples=["checkout.session.completed"],
    )
    created: int = Field(description="Unix seconds.", examples=[1740821400])
    livemode: bool = False
    api_version: str | None = Field(default=None, examples=["2025-01-27.acacia"])
    data: StripeEventData
