"""Enumerations shared by models, schemas and services (names as SPEC gives them)."""

from __future__ import annotations

from enum import StrEnum


class BillingTier(StrEnum):
    FREE = "free"
    PRO = "pro"
    POWER = "power"
    TEAM = "team"


class TenantKind(StrEnum):
    PERSONAL = "personal"
    TEAM = "team"
    DEMO = "demo"


class MembershipRole(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    TRIALING = "trialing"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    INCOMPLETE = "incomplete"


class PluginStatus(StrEnum):
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    REJECTED = "rejected"


class ReviewDecision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class TransferStatus(StrEnum):
    """The developer share's payout: `created` is paid (a Stripe transfer exists)."""

    PENDING = "pending"  # waiting for the developer's payable Connect account or the job
    STUBBED = "stubbed"
    CREATED = "created"
    FAILED = "failed"
    NOT_REQUIRED = "not_required"
    REVERSED = "reversed"  # the sale was refunded or disputed before its share was paid


class QuotaKind(StrEnum):
    TOTAL = "total"
    LLM = "llm"


class StorageKind(StrEnum):
    RECORDS = "records"
    BACKUPS = "backups"


class CreditReason(StrEnum):
    MONTHLY_GRANT = "monthly_grant"
    ADMIN_GRANT = "admin_grant"
    RESERVE = "reserve"
    SETTLE = "settle"
    RELEASE = "release"
    PLAN_UPGRADE = "plan_upgrade"


class DemoSessionStatus(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    DELETED = "deleted"
