"""Features an operator reserves for verified addresses (`VERIFIED_EMAIL_REQUIRED_FOR`)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Forbidden
from app.models import User


class VerifiedFeature(StrEnum):
    CHECKOUT = "checkout"
    PLUGIN_SUBMISSION = "plugin_submission"


FEATURE_TEXT = {
    VerifiedFeature.CHECKOUT: "buying a plan",
    VerifiedFeature.PLUGIN_SUBMISSION: "submitting a plugin",
}


async def require_verified_email(
    session: AsyncSession,
    required_for: Collection[str],
    user_id: uuid.UUID,
    feature: VerifiedFeature,
) -> None:
    """403 `email_unverified` when `feature` needs a verified address the user lacks."""
    if feature.value not in required_for:
        return
    verified_at = await session.scalar(select(User.email_verified_at).where(User.id == user_id))
    if verified_at is None:
        raise Forbidden(
            f"Verify your email address before {FEATURE_TEXT[feature]} "
            "(POST /api/v1/auth/verify/request).",
            error="email_unverified",
        )
