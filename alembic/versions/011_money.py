"""Money flows: plan changes in place, credits that follow the plan.

- `subscriptions`: `cancel_at_period_end`, and the one open Checkout of a tenant
  without a live subscription (`pending_checkout_*`), claimed by a conditional
  UPDATE so that concurrent checkouts never start a second Stripe subscription.
- `credit_accounts.period_granted`: the largest grant given this period; an
  upgrade tops the balance up by the difference to the new tier's grant, once.
- `credit_reason` gains `plan_upgrade` (the ledger row of such a top-up).

Revision ID: 011
Revises: 009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "011"
down_revision: str | None = "009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(
            sa.Column(
                "cancel_at_period_end", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.add_column(sa.Column("pending_checkout_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("pending_checkout_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("pending_checkout_tier", sa.String(length=16), nullable=True))
        batch.add_column(
            sa.Column("pending_checkout_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("credit_accounts") as batch:
        batch.add_column(
            sa.Column("period_granted", sa.BigInteger(), nullable=False, server_default="0")
        )
    if _is_postgresql():
        # Usable once this migration's transaction commits; nothing here uses it.
        op.execute("ALTER TYPE credit_reason ADD VALUE IF NOT EXISTS 'plan_upgrade'")
    # The last grant given counts as granted (no double grant on upgrade).
    op.execute(
        "UPDATE credit_accounts SET period_granted = coalesce(("
        "SELECT l.delta FROM credit_ledger AS l "
        "WHERE l.tenant_id = credit_accounts.tenant_id AND l.reason = 'monthly_grant' "
        "ORDER BY l.id DESC LIMIT 1"
        "), 0) WHERE last_grant_period IS NOT NULL"
    )


def downgrade() -> None:
    # PostgreSQL cannot drop an enum value; 'plan_upgrade' stays in `credit_reason`.
    with op.batch_alter_table("credit_accounts") as batch:
        batch.drop_column("period_granted")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("pending_checkout_expires_at")
        batch.drop_column("pending_checkout_tier")
        batch.drop_column("pending_checkout_url")
        batch.drop_column("pending_checkout_id")
        batch.drop_column("cancel_at_period_end")
