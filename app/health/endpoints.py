from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import text

from app import __version__
from app.db import DatabaseDep
from app.errors import ServiceUnavailable, error_responses
from app.kit.policy import gateway_policy
from app.kit.routing import DomainRouter

router = DomainRouter(tags=["health"])


class Health(BaseModel):
    status: str
    version: str


@router.get("/health", response_model=Health, summary="Liveness check")
@gateway_policy(rate_limited=False)
async def liveness() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok", version=__version__)


@router.get(
    "/health/ready",
    response_model=Health,
    summary="Readiness check (the database answers)",
    responses=error_responses(503),
)
@gateway_policy(rate_limited=False)
async def readiness(db: DatabaseDep) -> Health:
    """Readiness: the database answers too."""
    try:
        async with db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        raise ServiceUnavailable("Database unavailable.", error="database_unavailable") from exc
    return Health(status="ok", version=__version__)
