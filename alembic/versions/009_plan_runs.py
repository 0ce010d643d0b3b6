"""Plan runs: the plans handed to each tenant, and the runs executing them (metadata only).

- `issued_plans`: a plan `execution_mode: plan` returned, bound to the tenant that
  received it (template ids and `$input.…` references, no user content).
- `plan_runs`: a run's status, its steps' statuses and credits, its lease and the
  worker executing it. Step outputs are never stored (SPEC: the database holds no
  user content); they stay in the memory of that worker for a bounded time.

Revision ID: 009
Revises: 008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "009"
down_revision: str | None = "008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool, default: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.func.now() if default else None,
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "issued_plans",
        sa.Column("plan_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        _timestamp("created_at", nullable=False, default=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_issued_plans_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("plan_id", name=op.f("pk_issued_plans")),
    )
    op.create_index("ix_issued_plans_created_at", "issued_plans", ["created_at"])
    op.create_table(
        "plan_runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("plan_id", sa.String(length=64), nullable=True),
        sa.Column("playbook", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("credits_spent", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.Column("lease_id", sa.String(length=64), nullable=True),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("demo", sa.Boolean(), nullable=False),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        _timestamp("updated_at", nullable=False, default=True),
        _timestamp("created_at", nullable=False, default=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_plan_runs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_plan_runs_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_runs")),
    )
    op.create_index("ix_plan_runs_status", "plan_runs", ["status"])
    op.create_index("ix_plan_runs_tenant_id_created_at", "plan_runs", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_plan_runs_tenant_id_created_at", table_name="plan_runs")
    op.drop_index("ix_plan_runs_status", table_name="plan_runs")
    op.drop_table("plan_runs")
    op.drop_index("ix_issued_plans_created_at", table_name="issued_plans")
    op.drop_table("issued_plans")
