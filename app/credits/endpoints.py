from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, Request

from app.auth.dependencies import AdminUser, CurrentTenant
from app.billing.dependencies import TiersDep
from app.credits.repository import CreditRepository
from app.credits.schemas import CreditGrantRequest, CreditGrantResult, CreditsOverview, LedgerEntry
from app.db import SessionDep
from app.errors import NotFound, error_responses
from app.kit.deps import SettingsDep
from app.kit.routing import DomainRouter
from app.models import Tenant

router = DomainRouter(tags=["credits"])


@router.get(
    "/credits",
    response_model=CreditsOverview,
    summary="Get the credit balance and ledger",
    responses=error_responses(401, 422),
)
async def credits_overview(
    request: Request,
    tenant: CurrentTenant,
    session: SessionDep,
    settings: SettingsDep,
    tiers: TiersDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> CreditsOverview:
    """The tenant's credit balance and its ledger, newest first."""
    await request.app.state.credits.ensure_monthly_grant(tenant.id, tenant.tier)
    repo = CreditRepository(session)
    entries, total = await repo.entries(tenant.id, page=page, limit=limit)
    return CreditsOverview(
        tenant_id=tenant.id,
        balance=await repo.balance(tenant.id),
        credits_per_usd=settings.CREDITS_PER_USD,
        monthly_grant=tiers[tenant.tier].monthly_credits,
        entries=[LedgerEntry.model_validate(entry) for entry in entries],
        page=page,
        limit=limit,
        total=total,
    )


@router.post(
    "/admin/tenants/{tenant_id}/credits",
    response_model=CreditGrantResult,
    summary="Grant credits to a tenant (admin)",
    responses=error_responses(401, 403, 404, 422),
)
async def grant_credits(
    tenant_id: uuid.UUID,
    body: CreditGrantRequest,
    request: Request,
    admin: AdminUser,
    session: SessionDep,
) -> CreditGrantResult:
    """Add credits to a tenant (admins only)."""
    if await session.get(Tenant, tenant_id) is None:
        raise NotFound("No such tenant.")
    balance = await request.app.state.credits.admin_grant(
        tenant_id, body.amount, admin.id, request.scope.get("state", {}).get("request_id")
    )
    return CreditGrantResult(tenant_id=tenant_id, balance=balance)
