from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from app.models import PluginStatus, ReviewDecision, TransferStatus

PAGE_SIZE = 20


class CatalogSort(StrEnum):
    RATING = "rating"
    INSTALLS = "installs"
    NEWEST = "newest"


class PluginRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str
    version: str
    category: str
    price_cents: int
    currency: str
    permissions: list[str]
    status: PluginStatus
    author_id: uuid.UUID | None
    install_count: int
    rating_count: int
    rating_sum: int = Field(exclude=True)
    created_at: datetime
    updated_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def avg_rating(self) -> float | None:
        """rating_sum / rating_count; null before the first rating."""
        return self.rating_sum / self.rating_count if self.rating_count else None


class PluginDetail(PluginRead):
    installed: bool = Field(description="Whether the caller has installed this plugin.")
    my_rating: int | None = Field(description="The caller's own rating, if any.")


class PluginWithManifest(PluginRead):
    manifest: dict[str, Any]


class PluginPage(BaseModel):
    items: list[PluginRead]
    total: int
    page: int
    page_size: int
    pages: int


class PendingPage(BaseModel):
    items: list[PluginWithManifest]
    total: int
    page: int
    page_size: int
    pages: int


class ChecklistFailure(BaseModel):
    rule: str
    message: str


class RevenueRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    plugin_id: str
    amount_cents: int
    currency: str
    developer_share_cents: int
    platform_share_cents: int
    transfer_status: TransferStatus
    stripe_transfer_id: str | None
    created_at: datetime


class InstallResult(BaseModel):
    plugin_id: str
    installed: bool = Field(
        True, description="False while a paid plugin waits for its payment (HTTP 202)."
    )
    newly_installed: bool = Field(description="False when the plugin was already installed.")
    install_count: int
    revenue: RevenueRead | None = Field(
        None, description="The sale recorded for a paid plugin's first install."
    )
    checkout_url: str | None = Field(
        None,
        description="A paid plugin not yet bought: pay here (Stripe Checkout; in stub mode "
        "`POST` this path to complete the payment). The plugin is installed when the "
        "payment completes.",
    )
    purchase_id: uuid.UUID | None = None


class RatingRequest(BaseModel):
    rating: int = Field(ge=1, le=5)


class RatingResult(BaseModel):
    plugin_id: str
    rating: int
    rating_count: int
    avg_rating: float


class ReviewRequest(BaseModel):
    decision: ReviewDecision
    notes: str = Field("", max_length=4000)


class ReviewResult(BaseModel):
    plugin_id: str
    status: PluginStatus
    decision: ReviewDecision
    notes: str
    reviewer_id: uuid.UUID | None
    reviewed_at: datetime


class EarningsLine(BaseModel):
    plugin_id: str
    currency: str
    sales: int
    amount_cents: int
    developer_share_cents: int
    platform_share_cents: int


class EarningsTotal(BaseModel):
    currency: str
    sales: int
    amount_cents: int
    developer_share_cents: int
    platform_share_cents: int


class PayoutLine(BaseModel):
    status: Literal["pending", "paid", "failed", "reversed", "stubbed"] = Field(
        description="pending: waiting for a payable Connect account or the payout job; "
        "paid: transferred; failed: the last attempt failed, retried later; reversed: the "
        "sale was refunded or disputed before it was paid; stubbed: stub mode."
    )
    currency: str
    sales: int
    developer_share_cents: int


class EarningsReport(BaseModel):
    period: str
    start: datetime
    end: datetime
    totals: list[EarningsTotal] = Field(description="One line per currency.")
    plugins: list[EarningsLine]
    payouts: list[PayoutLine] = Field(
        description="The period's sales by the state of their developer share's payout."
    )
    payable: bool = Field(
        description="The developer's Stripe Connect account can receive transfers "
        "(POST /api/v1/developers/connect to onboard)."
    )


class ConnectResponse(BaseModel):
    account_id: str = Field(description="The developer's Stripe Connect account.")
    onboarding_url: str = Field(description="Stripe's hosted onboarding (a stub URL in stub mode).")
    payable: bool
    mode: Literal["live", "stub"]
