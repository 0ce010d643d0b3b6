"""The gateway's clients, opened by the lifespan and shared by the middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.types import Scope

from app.billing.tiers import TierTable
from app.config import Settings
from app.credits.service import CreditService
from app.gateway.identity import IdentityResolver
from app.kit.ratelimit import MovingWindow
from app.kit.units import IDENTITY
from app.quota.service import QuotaService
from app.work import Identity


@dataclass(slots=True)
class Gateway:
    settings: Settings
    tiers: TierTable
    identities: IdentityResolver
    window: MovingWindow
    quotas: QuotaService
    credits: CreditService


@asynccontextmanager
async def gateway_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """Needs `core_lifespan` first (database, token codec, limiter storage)."""
    tiers: TierTable = app.state.tiers
    credits = CreditService(app.state.db, settings, tiers)
    quotas = QuotaService(app.state.db, settings, tiers, credits)
    # The quota and credit routes use the same services as the gate.
    app.state.quotas, app.state.credits = quotas, credits
    app.state.gateway = Gateway(
        settings=settings,
        tiers=tiers,
        identities=IdentityResolver(
            settings,
            app.state.token_codec,
            app.state.db,
            app.state.trusted_proxies,
            access=app.state.access_lookup,
        ),
        window=MovingWindow(app.state.limiter_storage),
        quotas=quotas,
        credits=credits,
    )
    yield


def gateway_of(scope: Scope) -> Gateway:
    return scope["app"].state.gateway


async def identity_of(scope: Scope) -> Identity:
    """Resolve the caller once per request; the limiter and the gate share the result."""
    state = scope.setdefault("state", {})
    identity = state.get(IDENTITY)
    if identity is None:
        identity = await gateway_of(scope).identities.resolve(scope)
        state[IDENTITY] = identity
    return identity
