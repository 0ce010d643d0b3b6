"""Tier quotas on stored bytes (SPEC §2): a cheap early refusal and the binding reservation.

The early check reads the usage row before the body is read, so an upload that
cannot fit is refused without being transferred. It is advisory: the binding
check is `StorageUsageRepository.try_add`, run in the same transaction as the
metadata row, so concurrent uploads can never push a user over the limit.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.tiers import TierTable
from app.errors import PaymentRequired
from app.models import BillingTier, StorageKind
from app.storage.repository import StorageUsageRepository

_WHAT = {StorageKind.RECORDS: "Cloud storage", StorageKind.BACKUPS: "Backup storage"}
_ERROR = {
    StorageKind.RECORDS: "storage_quota_exceeded",
    StorageKind.BACKUPS: "backup_quota_exceeded",
}


def tier_limit(tiers: TierTable, tier: BillingTier, kind: StorageKind) -> int | None:
    limits = tiers[tier]
    return limits.storage_bytes if kind is StorageKind.RECORDS else limits.backup_bytes


def quota_exceeded(
    tiers: TierTable, tier: BillingTier, kind: StorageKind, limit: int, used: int | None = None
) -> PaymentRequired:
    what = _WHAT[kind]
    if limit == 0:
        upgrade = next(
            (
                t
                for t in (BillingTier.PRO, BillingTier.POWER, BillingTier.TEAM)
                if tier_limit(tiers, t, kind) != 0
            ),
            BillingTier.PRO,
        )
        message = f"{what} is not included in the {tier} tier; upgrade to {upgrade} or higher."
    else:
        used_text = f"{used} of " if used is not None else ""
        message = (
            f"{what} quota of the {tier} tier exceeded ({used_text}{limit} bytes used); "
            "nothing was stored. Delete data or upgrade."
        )
    return PaymentRequired(message, error=_ERROR[kind])


async def precheck(
    session: AsyncSession,
    tiers: TierTable,
    tier: BillingTier,
    kind: StorageKind,
    user_id: uuid.UUID,
    incoming: int,
) -> int | None:
    """Refuse early if `incoming` more bytes cannot fit; returns the tier's limit."""
    limit = tier_limit(tiers, tier, kind)
    if limit is None:
        return None
    if limit == 0:
        raise quota_exceeded(tiers, tier, kind, limit)
    used = await StorageUsageRepository(session).used(user_id, kind)
    if used + incoming > limit:
        raise quota_exceeded(tiers, tier, kind, limit, used)
    return limit
