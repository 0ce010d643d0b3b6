"""The tier matrix of SPEC §2 as one table in code, overridable from settings.

Everything that differs by tier (agents, features, quotas, rate limits,
concurrency, daily units, credits) is read from `TierTable`; nothing else
hard-codes a tier.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import Forbidden
from app.models import BillingTier
from app.tenants.repository import TenantRepository

TIER_ORDER = (BillingTier.FREE, BillingTier.PRO, BillingTier.POWER, BillingTier.TEAM)


class AgentTiers(Protocol):
    """Where agent availability comes from: each agent declares its minimum tier
    (`app.chat.agents.registry` is the one in use)."""

    def minimum_tiers(self) -> Mapping[str, BillingTier]: ...


def _registered_agents() -> AgentTiers:
    # The agents are declared in chat, which reads this table: imported when first used.
    from app.chat.agents import registry

    return registry


class Feature(StrEnum):
    BATCH_BUILDER = "batch_builder"
    MARKETPLACE = "plugin_marketplace"
    SSO = "sso"
    CLOUD_STORAGE = "cloud_storage"
    BACKUP = "backup"


FEATURE_NAMES = {
    Feature.BATCH_BUILDER: "The batch builder (plan mode)",
    Feature.MARKETPLACE: "The plugin marketplace",
    Feature.SSO: "Single sign-on",
    Feature.CLOUD_STORAGE: "Cloud storage",
    Feature.BACKUP: "Cloud backup",
}


@dataclass(frozen=True, slots=True)
class TierLimits:
    tier: BillingTier
    agent_tiers: AgentTiers
    features: frozenset[Feature]
    batch_jobs_active: int | None  # None: unlimited
    storage_bytes: int | None
    backup_bytes: int | None
    llm_providers: int | None
    rate_per_minute: int
    rate_per_seat: bool  # team: the rate limit scales with the tenant's members
    daily_units: int
    daily_llm_units: int | None  # None: LLM use is metered by credits instead
    concurrent: int
    monthly_credits: int

    def has(self, feature: Feature) -> bool:
        return feature in self.features

    @property
    def agents(self) -> frozenset[str]:
        """The agents whose minimum tier is this tier or a lower one."""
        rank = TIER_ORDER.index(self.tier)
        return frozenset(
            name
            for name, minimum in self.agent_tiers.minimum_tiers().items()
            if TIER_ORDER.index(minimum) <= rank
        )


def _bytes(value: int) -> int | None:
    return None if value < 0 else value


class TierTable:
    def __init__(self, settings: Settings, agents: AgentTiers | None = None) -> None:
        s = settings
        agents = _registered_agents() if agents is None else agents
        paid = frozenset({Feature.CLOUD_STORAGE, Feature.BACKUP})
        power = paid | {Feature.BATCH_BUILDER, Feature.MARKETPLACE}
        self._limits = {
            BillingTier.FREE: TierLimits(
                BillingTier.FREE,
                agents,
                frozenset(),
                s.BATCH_JOBS_FREE,
                _bytes(s.STORAGE_QUOTA_FREE_BYTES),
                _bytes(s.BACKUP_QUOTA_FREE_BYTES),
                1,
                s.RATE_LIMIT_FREE_PER_MINUTE,
                False,
                s.RATE_LIMIT_DAILY_FREE,
                s.RATE_LIMIT_DAILY_LLM_FREE,
                s.MAX_CONCURRENT_FREE,
                s.CREDIT_MONTHLY_GRANT_FREE,
            ),
            BillingTier.PRO: TierLimits(
                BillingTier.PRO,
                agents,
                paid,
                s.BATCH_JOBS_PRO,
                _bytes(s.STORAGE_QUOTA_PRO_BYTES),
                _bytes(s.BACKUP_QUOTA_PRO_BYTES),
                None,
                s.RATE_LIMIT_PRO_PER_MINUTE,
                False,
                s.RATE_LIMIT_DAILY_PAID,
                None,
                s.MAX_CONCURRENT_PRO,
                s.CREDIT_MONTHLY_GRANT_PRO,
            ),
            BillingTier.POWER: TierLimits(
                BillingTier.POWER,
                agents,
                power,
                None,
                _bytes(s.STORAGE_QUOTA_POWER_BYTES),
                _bytes(s.BACKUP_QUOTA_POWER_BYTES),
                None,
                s.RATE_LIMIT_POWER_PER_MINUTE,
                False,
                s.RATE_LIMIT_DAILY_PAID,
                None,
                s.MAX_CONCURRENT_POWER,
                s.CREDIT_MONTHLY_GRANT_POWER,
            ),
            BillingTier.TEAM: TierLimits(
                BillingTier.TEAM,
                agents,
                power | {Feature.SSO},
                None,
                _bytes(s.STORAGE_QUOTA_TEAM_BYTES),
                _bytes(s.BACKUP_QUOTA_TEAM_BYTES),
                None,
                s.RATE_LIMIT_TEAM_PER_MINUTE_PER_SEAT,
                True,
                s.RATE_LIMIT_DAILY_PAID,
                None,
                s.MAX_CONCURRENT_TEAM,
                s.CREDIT_MONTHLY_GRANT_TEAM,
            ),
        }

        # Storage and backup are features exactly where their quota is not zero: the
        # quota enforces them (402 over it), and the feature list says the same.
        for tier, limits in list(self._limits.items()):
            features = set(limits.features) - {Feature.CLOUD_STORAGE, Feature.BACKUP}
            if limits.storage_bytes != 0:
                features.add(Feature.CLOUD_STORAGE)
            if limits.backup_bytes != 0:
                features.add(Feature.BACKUP)
            self._limits[tier] = replace(limits, features=frozenset(features))

    def __getitem__(self, tier: BillingTier) -> TierLimits:
        return self._limits[tier]

    def lowest_tier_with(self, feature: Feature) -> BillingTier | None:
        return next((t for t in TIER_ORDER if self._limits[t].has(feature)), None)

    def check_feature(self, tier: BillingTier, feature: Feature) -> bool:
        return self._limits[tier].has(feature)

    def require_feature(self, tier: BillingTier, feature: Feature) -> None:
        """403 naming the feature and the lowest tier that has it."""
        if self.check_feature(tier, feature):
            return
        needed = self.lowest_tier_with(feature)
        raise Forbidden(
            f"{FEATURE_NAMES[feature]} needs the {needed} tier or higher "
            f"(this workspace is on {tier}).",
            error="feature_not_available",
        )

    def require_agent(self, tier: BillingTier, agent: str) -> None:
        limits = self._limits[tier]
        if agent in limits.agents:
            return
        needed = limits.agent_tiers.minimum_tiers().get(agent)
        raise Forbidden(
            f"The {agent} agent needs the {needed} tier or higher (this workspace is on {tier})."
            if needed is not None
            else f"There is no {agent} agent.",
            error="agent_not_available",
        )

    def rate_per_minute(self, tier: BillingTier, seats: int = 1) -> int:
        limits = self._limits[tier]
        return (
            limits.rate_per_minute * max(1, seats)
            if limits.rate_per_seat
            else limits.rate_per_minute
        )


async def get_tier(session: AsyncSession, tenant_id: uuid.UUID) -> BillingTier:
    """The tenant's tier, read live from its subscription row."""
    return await TenantRepository(session).tier_of(tenant_id)
