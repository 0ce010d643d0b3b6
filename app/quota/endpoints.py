from __future__ import annotations

from fastapi import APIRouter, Request

from app.errors import error_responses
from app.gateway.byok import llm_key_from_headers
from app.gateway.services import gateway_of, identity_of
from app.quota.schemas import QuotaStatus

router = APIRouter(prefix="/quota", tags=["quota"])


@router.get("/status", response_model=QuotaStatus, responses=error_responses(400, 429, 503))
async def quota_status(request: Request) -> QuotaStatus:
    """Limits, use and resets for whoever the caller resolves to (signed in or not)."""
    identity = await identity_of(request.scope)
    llm_key = llm_key_from_headers(request.scope.get("headers", []))
    return await gateway_of(request.scope).quotas.status(identity, premium=llm_key is not None)
