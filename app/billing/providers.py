"""The tier's count of LLM providers a workspace may use with its own key (BYOK).

A provider counts for the month it is first used in: a workspace on a tier limited to
N providers may use N distinct providers with `X-LLM-API-KEY` in a calendar month (UTC);
a key for another one is refused (403) before anything is counted. The month's
providers take slots 0..N-1 of `byok_provider_uses`, one row each: a conditional
insert per slot, so concurrent first uses of different providers cannot exceed N.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from app.billing.tiers import TierTable
from app.credits.service import current_period
from app.db import Database, begin_write
from app.errors import Forbidden
from app.models import BillingTier, ByokProviderUse
from app.models.base import utcnow

USES = ByokProviderUse.__table__


class ProviderAllowance:
    def __init__(self, db: Database, tiers: TierTable) -> None:
        self.db = db
        self.tiers = tiers
        self._insert = sqlite.insert if db.is_sqlite else postgresql.insert
        # (tenant, period, provider) known to be recorded: allowed for the whole month
        # on every worker (rows are never removed within their month), so no round trip.
        self._allowed: set[tuple[uuid.UUID, str, str]] = set()

    async def check(self, tenant_id: uuid.UUID, tier: BillingTier, provider: str) -> None:
        limit = self.tiers[tier].llm_providers
        if limit is None:
            return
        period = current_period()
        key = (tenant_id, period, provider)
        if key in self._allowed:
            return
        if not await self._claim(tenant_id, period, provider, limit):
            used = await self._used(tenant_id, period)
            raise Forbidden(
                f"The {tier} tier uses {limit} LLM provider{'s' if limit != 1 else ''} with "
                f"your own key a month; this workspace already used {', '.join(used)} this "
                f"month, so a key for {provider} is refused. Upgrade to use any provider.",
                error="byok_provider_limit",
            )
        if len(self._allowed) > 100_000:
            self._allowed.clear()
        self._allowed.add(key)

    async def _claim(self, tenant_id: uuid.UUID, period: str, provider: str, limit: int) -> bool:
        async with begin_write(self.db.engine) as connection:
            for slot in range(limit):
                found = await connection.scalar(
                    select(USES.c.slot).where(
                        USES.c.tenant_id == tenant_id,
                        USES.c.period == period,
                        USES.c.provider == provider,
                    )
                )
                if found is not None:
                    return True
                inserted = await connection.scalar(
                    self._insert(USES)
                    .values(
                        tenant_id=tenant_id,
                        period=period,
                        slot=slot,
                        provider=provider,
                        created_at=utcnow(),
                    )
                    .on_conflict_do_nothing()
                    .returning(USES.c.slot)
                )
                if inserted is not None:
                    return True
            # Every slot is taken, perhaps by this provider in a concurrent request.
            found = await connection.scalar(
                select(USES.c.slot).where(
                    USES.c.tenant_id == tenant_id,
                    USES.c.period == period,
                    USES.c.provider == provider,
                )
            )
            return found is not None

    async def _used(self, tenant_id: uuid.UUID, period: str) -> list[str]:
        async with self.db.engine.connect() as connection:
            rows = await connection.scalars(
                select(USES.c.provider)
                .where(USES.c.tenant_id == tenant_id, USES.c.period == period)
                .order_by(USES.c.slot)
            )
            return list(rows)
