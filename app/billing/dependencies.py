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
from app.kit.tasks import supervised
from app.marketplace.payouts import run_payouts


async def get_tiers(request: Request) -> TierTable:
    return request.app.state.tiers


TiersDep = Annotated[TierTable, Depends(get_tiers)]


@asynccontextmanager
async def billing_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """The Stripe gateway (live with a secret key, stub without) for billing and payouts,
    and the supervised payout job (`PAYOUT_RETRY_INTERVAL_SECONDS`; 0 turns it off)."""
    stripe = app.state.stripe = StripeGateway(settings)

    async def one_pass() -> object:
        return await run_payouts(app.state.db, stripe)

    interval = settings.PAYOUT_RETRY_INTERVAL_SECONDS if stripe.live else 0
    async with supervised("payouts", one_pass, interval) as task:
        app.state.payout_task = task
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
