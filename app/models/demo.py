from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAt, Timestamps, UTCDateTime, enum_column
from app.models.enums import DemoSessionStatus


class DemoSession(CreatedAt, Base):
    """A short-lived virtual tenant cloned from a demo template workspace."""

    __tablename__ = "demo_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    account_type: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[DemoSessionStatus] = mapped_column(
        enum_column(DemoSessionStatus, "demo_session_status"),
        nullable=False,
        default=DemoSessionStatus.ACTIVE,
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    extension_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The session's own copy of the template workspace (our sample data, not a user's).
    workspace: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


class DemoExample(Timestamps, Base):
    """One canned example conversation per agent: the demo fallback's answers."""

    __tablename__ = "demo_examples"

    agent: Mapped[str] = mapped_column(String(64), primary_key=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    response: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
