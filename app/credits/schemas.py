from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.models import CreditReason


class LedgerEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    delta: int
    reason: CreditReason
    balance_after: int
    request_id: str | None
    user_id: uuid.UUID | None
    created_at: datetime


class CreditsOverview(BaseModel):
    tenant_id: uuid.UUID
    balance: int
    credits_per_usd: int
    monthly_grant: int
    entries: list[LedgerEntry]
    page: int
    limit: int
    total: int


class CreditGrantRequest(BaseModel):
    amount: int = Field(gt=0, le=100_000_000, description="credits to add")


class CreditGrantResult(BaseModel):
    tenant_id: uuid.UUID
    balance: int
