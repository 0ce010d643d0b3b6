"""Accounts: verified addresses, mailed single-use tokens, session details.

- `users.email_verified_at`: when the user proved the address (ADMIN_EMAILS and the
  features of VERIFIED_EMAIL_REQUIRED_FOR wait for it).
- `account_tokens`: verification and password-reset tokens, as SHA-256 hashes.
- `refresh_tokens.user_agent` / `ip_address`: the client of each token, for the
  sessions list.
- The access lookup reads `email_verified_at`: the users trigger of migration 004
  notifies its changes too (PostgreSQL).

Revision ID: 008
Revises: 007
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "008"
down_revision: str | None = "007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


USERS_TRIGGER = "adiuva_access_users"
USERS_EVENTS = "UPDATE OF id, email, is_admin, is_active, token_version{} OR DELETE"


def _users_trigger(events: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP TRIGGER {USERS_TRIGGER} ON users")
    op.execute(
        f"CREATE TRIGGER {USERS_TRIGGER} AFTER {events} ON users "
        f"FOR EACH ROW EXECUTE FUNCTION {USERS_TRIGGER}()"
    )


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.add_column(sa.Column("user_agent", sa.String(512), nullable=True))
        batch.add_column(sa.Column("ip_address", sa.String(64), nullable=True))
    op.create_table(
        "account_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_account_tokens_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_account_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_account_tokens_token_hash"),
    )
    op.create_index("ix_account_tokens_user_purpose", "account_tokens", ["user_id", "purpose"])
    _users_trigger(USERS_EVENTS.format(", email_verified_at"))


def downgrade() -> None:
    _users_trigger(USERS_EVENTS.format(""))
    op.drop_index("ix_account_tokens_user_purpose", table_name="account_tokens")
    op.drop_table("account_tokens")
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_column("ip_address")
        batch.drop_column("user_agent")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email_verified_at")
