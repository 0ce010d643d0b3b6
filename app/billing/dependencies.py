from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from app.billing.service import BillingService
from app.billing.stripe_client import StripeGateway
from app.billing.tiers import TierTable
from app.config import Settings
from app.db import SessionDep
from app.kit.deps import SettingsDep


async def get_tiers(request: Request) -> TierTable:
    return request.app.state.tiers


TiersDep = Annotated[TierTable, Depends(get_tiers)]


@asynccontextmanager
async def billing_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """The Stripe gateway (live with a secret key, stub without) for billing and payouts."""
    app.state.stripe = StripeGateway(settings)
    yield


async def get_stripe(request: Request) -> StripeGateway:
    return request.app.state.stripe


StripeDep = Annotated[StripeGateway, Depends(get_stripe)]


async def get_billing_service(
    request: Request, session: SessionDep, settings: SettingsDep, stripe: StripeDep, tiers: TiersDep
) -> BillingService:
    return BillingService(
        session, settings, stripe, tiers, is_sqlite=request.app.state.db.is_sqlite
    )


BillingServiceDep = Annotated[BillingService, Depends(get_billing_service)]
