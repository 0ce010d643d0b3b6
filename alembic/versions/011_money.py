"""Money flows: plan changes in place, credits that follow the plan.

- `subscriptions`: `cancel_at_period_end`, and the one open Checkout of a tenant
  without a live subscription (`pending_checkout_*`), claimed by a conditional
  UPDATE so that concurrent checkouts never start a second Stripe subscription.
- `credit_accounts.period_granted`: the largest grant given this period; an
  upgrade tops the balance up by the difference to the new tier's grant, once.
- `credit_reason` gains `plan_upgrade` (the ledger row of such a top-up).
- `plugin_purchases`: a paid plugin bought through a Stripe Checkout (payment mode);
  one open purchase per (plugin, buyer) by a unique partial index.
- `revenue_events.purchase_id` (one sale per purchase) and `reverses_id` (a refund's
  or dispute's negative row, once per sale); `transfer_status` gains `reversed`.
- Payouts: `connect_accounts` (a developer's Stripe Connect account and whether it is
  payable), the retry bookkeeping of `revenue_events` (`transfer_attempts`,
  `next_transfer_at`, `transfer_error`), and `transfer_status` gains `pending`.
- `byok_provider_uses`: the providers a workspace used with its own key each month
  (the tier's provider count).

Revision ID: 011
Revises: 010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "011"
down_revision: str | None = "010"
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
    op.create_table(
        "plugin_purchases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("plugin_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stripe_checkout_session_id", sa.String(length=255), nullable=True),
        sa.Column("checkout_url", sa.Text(), nullable=True),
        sa.Column("stripe_payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["plugin_id"],
            ["plugins.id"],
            name="fk_plugin_purchases_plugin_id_plugins",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_plugin_purchases_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_plugin_purchases_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_plugin_purchases"),
        sa.UniqueConstraint(
            "stripe_checkout_session_id", name="uq_plugin_purchases_stripe_checkout_session_id"
        ),
    )
    op.create_index(
        "uq_plugin_purchases_open",
        "plugin_purchases",
        ["plugin_id", "user_id"],
        unique=True,
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_plugin_purchases_payment_intent", "plugin_purchases", ["stripe_payment_intent_id"]
    )
    with op.batch_alter_table("revenue_events") as batch:
        batch.add_column(sa.Column("purchase_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("reverses_id", sa.Uuid(), nullable=True))
        batch.create_unique_constraint("uq_revenue_events_purchase_id", ["purchase_id"])
        batch.create_unique_constraint("uq_revenue_events_reverses_id", ["reverses_id"])
        batch.create_foreign_key(
            "fk_revenue_events_purchase_id_plugin_purchases",
            "plugin_purchases",
            ["purchase_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            "fk_revenue_events_reverses_id_revenue_events",
            "revenue_events",
            ["reverses_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_table(
        "byok_provider_uses",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_byok_provider_uses_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "period", "slot", name="pk_byok_provider_uses"),
        sa.UniqueConstraint(
            "tenant_id",
            "period",
            "provider",
            name="uq_byok_provider_uses_tenant_id_period_provider",
        ),
    )
    op.create_table(
        "connect_accounts",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("stripe_account_id", sa.String(length=255), nullable=False),
        sa.Column("payable", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("stripe_event_created", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_connect_accounts_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_connect_accounts"),
        sa.UniqueConstraint("stripe_account_id", name="uq_connect_accounts_stripe_account_id"),
    )
    with op.batch_alter_table("revenue_events") as batch:
        batch.add_column(
            sa.Column("transfer_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("next_transfer_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("transfer_error", sa.String(length=200), nullable=True))
    if _is_postgresql():
        op.execute("ALTER TYPE transfer_status ADD VALUE IF NOT EXISTS 'reversed'")
        op.execute("ALTER TYPE transfer_status ADD VALUE IF NOT EXISTS 'pending'")
    # The last grant given counts as granted (no double grant on upgrade).
    op.execute(
        "UPDATE credit_accounts SET period_granted = coalesce(("
        "SELECT l.delta FROM credit_ledger AS l "
        "WHERE l.tenant_id = credit_accounts.tenant_id AND l.reason = 'monthly_grant' "
        "ORDER BY l.id DESC LIMIT 1"
        "), 0) WHERE last_grant_period IS NOT NULL"
    )


def downgrade() -> None:
    # PostgreSQL cannot drop an enum value: 'plan_upgrade', 'reversed', 'pending' stay.
    op.drop_table("byok_provider_uses")
    with op.batch_alter_table("revenue_events") as batch:
        batch.drop_column("transfer_error")
        batch.drop_column("next_transfer_at")
        batch.drop_column("transfer_attempts")
    op.drop_table("connect_accounts")
    with op.batch_alter_table("revenue_events") as batch:
        batch.drop_constraint("fk_revenue_events_reverses_id_revenue_events", type_="foreignkey")
        batch.drop_constraint("fk_revenue_events_purchase_id_plugin_purchases", type_="foreignkey")
        batch.drop_constraint("uq_revenue_events_reverses_id", type_="unique")
        batch.drop_constraint("uq_revenue_events_purchase_id", type_="unique")
        batch.drop_column("reverses_id")
        batch.drop_column("purchase_id")
    op.drop_index("ix_plugin_purchases_payment_intent", table_name="plugin_purchases")
    op.drop_index("uq_plugin_purchases_open", table_name="plugin_purchases")
    op.drop_table("plugin_purchases")
    with op.batch_alter_table("credit_accounts") as batch:
        batch.drop_column("period_granted")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("pending_checkout_expires_at")
        batch.drop_column("pending_checkout_tier")
        batch.drop_column("pending_checkout_url")
        batch.drop_column("pending_checkout_id")
        batch.drop_column("cancel_at_period_end")
