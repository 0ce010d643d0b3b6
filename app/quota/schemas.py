from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.models import BillingTier


class Allowance(BaseModel):
    limit: int
    used: int
    remaining: int


class LLMAllowance(BaseModel):
    limit: int | None = Field(description="None when LLM use is metered by credits instead")
    used: int
    remaining: int | None
    metered_by_credits: bool


class Concurrency(BaseModel):
    limit: int
    in_use: int
    system_limit: int
    system_in_use: int


class QuotaStatus(BaseModel):
    identity: str = Field(description="user, demo or anonymous")
    tier: BillingTier
    premium: bool = Field(description="a valid X-LLM-API-KEY came with the request (BYOK)")
    demo: bool = Field(description="the caller is an anonymous visitor or a demo session")
    fallback_active: bool = Field(description="the next unit of work will get demo answers")
    daily: Allowance
    llm: LLMAllowance
    per_ip: Allowance | None = Field(description="units per client address (anonymous callers)")
    per_ip_llm: Allowance | None = Field(
        description="LLM answers per client address (anonymous callers without their own key)"
    )
    concurrency: Concurrency
    rate_limit_per_minute: int
    reset_at: datetime = Field(description="when the daily counters reset (next UTC midnight)")
