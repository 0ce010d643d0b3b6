from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from app.models import BillingTier, SubscriptionStatus


class CheckoutRequest(BaseModel):
    tier: BillingTier = Field(description="The paid tier to subscribe to: pro, power or team.")

    @field_validator("tier")
    @classmethod
    def paid_only(cls, tier: BillingTier) -> BillingTier:
        if tier == BillingTier.FREE:
            raise ValueError("checkout is for a paid tier (pro, power or team)")
        return tier


class CheckoutResponse(BaseModel):
    checkout_url: str
    session_id: str
    mode: Literal["live", "stub"]


class SubscriptionRead(BaseModel):
    tenant_id: uuid.UUID
    tier: BillingTier
    status: SubscriptionStatus
    seats: int = Field(description="Members of the tenant; the team tier is billed per seat.")
    rate_limit_per_minute: int
    current_period_end: datetime | None
    stripe_customer_id: str | None
    stripe_subscription_id: str | None
    mode: Literal["live", "stub"]


class WebhookAck(BaseModel):
    received: bool = True
    duplicate: bool = Field(description="True when this event id was already processed.")
