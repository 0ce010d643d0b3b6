"""Plans handed to a tenant, and the runs that execute them (metadata only).

Neither table holds user content: an issued plan is a skeleton of template ids and
`$input.…` references, and a run row keeps statuses, credits and timestamps. What
the steps produced (text and action descriptors) stays in the memory of the worker
that ran them, for `PLAN_RUN_OUTPUT_TTL_SECONDS` (see app/plans/service.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAt, Timestamps, UTCDateTime


class IssuedPlan(CreatedAt, Base):
    """A plan `execution_mode: plan` returned to a tenant; only that tenant may run it."""

    __tablename__ = "issued_plans"
    __table_args__ = (Index("ix_issued_plans_created_at", "created_at"),)

    plan_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )
    # The ExecutionPlan as JSON: agents, template ids, `$input.…` references.
    plan: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


class PlanRun(Timestamps, Base):
    """One execution of a plan or playbook: its status, its steps' statuses and credits."""

    __tablename__ = "plan_runs"
    __table_args__ = (
        Index("ix_plan_runs_tenant_id_created_at", "tenant_id", "created_at"),
        Index("ix_plan_runs_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    plan_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    playbook: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # queued | running | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    # [{"id", "kind", "status", "credits", "started_at", "finished_at", "error"}]
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    credits_spent: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The run's batch/system lease (released by whichever worker ends or cancels it).
    lease_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The worker process that executes it: step outputs live in its memory.
    worker: Mapped[str] = mapped_column(String(64), nullable=False)
    demo: Mapped[bool] = mapped_column(nullable=False, default=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
