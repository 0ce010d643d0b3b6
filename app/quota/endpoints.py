from __future__ import annotations

from fastapi import Request

from app.errors import error_responses
from app.kit.byok import LLM_KEY
from app.kit.openapi import any_caller, reads_llm_key
from app.kit.routing import DomainRouter
from app.kit.units import CallerIdentity
from app.quota.schemas import QuotaStatus
from app.quota.service import QuotaService

router = DomainRouter(prefix="/quota", tags=["quota"])


@router.get(
    "/status",
    response_model=QuotaStatus,
    summary="Get the caller's quotas and limits",
    responses=error_responses(400, 401, 429, 503),
    openapi_extra={**any_caller(), **reads_llm_key()},
)
async def quota_status(request: Request, identity: CallerIdentity) -> QuotaStatus:
    """Limits, use and resets for whoever the caller resolves to (signed in or not)."""
    quotas: QuotaService = request.app.state.quotas
    premium = request.scope["state"].get(LLM_KEY) is not None
    return await quotas.status(identity, premium=premium)
