"""Storage sync: a change sequence per owner, tombstones of deleted records.

- `storage_records.change_seq`: the owner's (user within a tenant) sequence number
  at the record's last write; existing records are numbered in (updated_at, id)
  order per owner.
- `storage_sync_heads`: the last number handed out per owner.
- `storage_tombstones`: id, table and sequence number of each deleted record
  (metadata only), kept for `SYNC_TOMBSTONE_RETENTION_DAYS`.

Revision ID: 007
Revises: 006
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "007"
down_revision: str | None = "006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "storage_sync_heads",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_storage_sync_heads_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_storage_sync_heads_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", name=op.f("pk_storage_sync_heads")),
    )
    op.create_table(
        "storage_tombstones",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_storage_tombstones_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_storage_tombstones_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_tombstones")),
    )
    op.create_index(
        "ix_storage_tombstones_owner_seq",
        "storage_tombstones",
        ["tenant_id", "user_id", "change_seq"],
        unique=True,
    )
    op.create_index(
        op.f("ix_storage_tombstones_deleted_at"),
        "storage_tombstones",
        ["deleted_at"],
        unique=False,
    )

    with op.batch_alter_table("storage_records") as batch:
        batch.add_column(sa.Column("change_seq", sa.BigInteger(), nullable=True))
    op.execute(
        """
        UPDATE storage_records SET change_seq = numbered.seq
        FROM (
            SELECT id, row_number() OVER (
                PARTITION BY tenant_id, user_id ORDER BY updated_at, id
            ) AS seq
            FROM storage_records
        ) AS numbered
        WHERE storage_records.id = numbered.id
        """
    )
    op.execute(
        """
        INSERT INTO storage_sync_heads (tenant_id, user_id, last_seq)
        SELECT tenant_id, user_id, max(change_seq) FROM storage_records
        GROUP BY tenant_id, user_id
        """
    )
    with op.batch_alter_table("storage_records") as batch:
        batch.alter_column("change_seq", existing_type=sa.BigInteger(), nullable=False)
        batch.create_index(
            "ix_storage_records_owner_seq", ["tenant_id", "user_id", "change_seq"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("storage_records") as batch:
        batch.drop_index("ix_storage_records_owner_seq")
        batch.drop_column("change_seq")
    op.drop_index(op.f("ix_storage_tombstones_deleted_at"), table_name="storage_tombstones")
    op.drop_index("ix_storage_tombstones_owner_seq", table_name="storage_tombstones")
    op.drop_table("storage_tombstones")
    op.drop_table("storage_sync_heads")
