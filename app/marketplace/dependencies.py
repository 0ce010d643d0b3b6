from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from app.auth.dependencies import CurrentPrincipal, Principal
from app.billing.dependencies import StripeDep, TiersDep
from app.billing.tiers import Feature
from app.db import SessionDep
from app.kit.deps import SettingsDep
from app.marketplace.service import MarketplaceService


async def get_marketplace_service(
    session: SessionDep, stripe: StripeDep, settings: SettingsDep
) -> MarketplaceService:
    return MarketplaceService(session, stripe, settings.VERIFIED_EMAIL_REQUIRED_FOR)


async def require_marketplace(principal: CurrentPrincipal, tiers: TiersDep) -> Principal:
    """The caller, if the workspace's live tier includes the marketplace (Power and up)."""
    tiers.require_feature(principal.tenant.tier, Feature.MARKETPLACE)
    return principal


MarketplaceServiceDep = Annotated[MarketplaceService, Depends(get_marketplace_service)]
MarketplacePrincipal = Annotated[Principal, Depends(require_marketplace)]
PluginId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")]
