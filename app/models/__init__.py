"""All ORM models; importing this module registers every table on `Base.metadata`."""

from app.models.auth import AccountToken, AccountTokenPurpose, RefreshToken
from app.models.base import Base
from app.models.billing import ByokProviderUse, ProcessedStripeEvent, Subscription
from app.models.demo import DemoExample, DemoSession
from app.models.enums import (
    BillingTier,
    CreditReason,
    DemoSessionStatus,
    MembershipRole,
    PluginStatus,
    QuotaKind,
    ReviewDecision,
    StorageKind,
    SubscriptionStatus,
    TenantKind,
    TransferStatus,
)
from app.models.marketplace import (
    ConnectAccount,
    Plugin,
    PluginInstallation,
    PluginPurchase,
    PluginRating,
    PluginReview,
    RevenueEvent,
)
from app.models.plans import IssuedPlan, PlanRun
from app.models.quota import ConcurrencyLease, CreditAccount, CreditLedgerEntry, QuotaCounter
from app.models.storage import (
    BackupMetadata,
    StorageRecord,
    StorageSyncHead,
    StorageTombstone,
    StorageUsage,
)
from app.models.tenancy import Membership, Tenant, User

__all__ = [
    "AccountToken",
    "AccountTokenPurpose",
    "BackupMetadata",
    "Base",
    "BillingTier",
    "ByokProviderUse",
    "ConcurrencyLease",
    "ConnectAccount",
    "CreditAccount",
    "CreditLedgerEntry",
    "CreditReason",
    "DemoExample",
    "DemoSession",
    "DemoSessionStatus",
    "IssuedPlan",
    "Membership",
    "MembershipRole",
    "PlanRun",
    "Plugin",
    "PluginInstallation",
    "PluginPurchase",
    "PluginRating",
    "PluginReview",
    "PluginStatus",
    "ProcessedStripeEvent",
    "QuotaCounter",
    "QuotaKind",
    "RefreshToken",
    "RevenueEvent",
    "ReviewDecision",
    "StorageKind",
    "StorageRecord",
    "StorageSyncHead",
    "StorageTombstone",
    "StorageUsage",
    "Subscription",
    "SubscriptionStatus",
    "Tenant",
    "TenantKind",
    "TransferStatus",
    "User",
]
