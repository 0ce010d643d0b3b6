"""Seed the marketplace with its first three approved plugins.

Revision ID: 002
Revises: 001
Create Date: 2026-11-22
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "002"
down_revision: str | None = "001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEED_PLUGINS = [
    {
        "id": "github-sync",
        "name": "GitHub Sync",
        "description": "Two-way sync between GitHub issues and Adiuva tasks.",
        "category": "productivity",
        "price_cents": 0,
        "permissions": ["read:tasks", "write:tasks", "read:projects"],
    },
    {
        "id": "slack-notifier",
        "name": "Slack Notifier",
        "description": "Posts task and checkpoint updates to a Slack channel.",
        "category": "communication",
        "price_cents": 499,
        "permissions": ["read:tasks", "read:checkpoints"],
    },
    {
        "id": "time-tracker",
        "name": "Time Tracker",
        "description": "Tracks time spent per task and project, with weekly reports.",
        "category": "productivity",
        "price_cents": 999,
        "permissions": ["read:tasks", "write:tasks", "read:projects", "read:calendar"],
    },
]

plugins = sa.table(
    "plugins",
    sa.column("id", sa.String),
    sa.column("name", sa.String),
    sa.column("description", sa.Text),
    sa.column("version", sa.String),
    sa.column("category", sa.String),
    sa.column("price_cents", sa.Integer),
    sa.column("currency", sa.String),
    sa.column("permissions", sa.JSON),
    sa.column("manifest", sa.JSON),
    sa.column(
        "status",
        sa.Enum("pending_review", "approved", "rejected", name="plugin_status", create_type=False),
    ),
    sa.column("install_count", sa.Integer),
    sa.column("rating_sum", sa.Integer),
    sa.column("rating_count", sa.Integer),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for plugin in SEED_PLUGINS:
        manifest = {**plugin, "version": "1.0.0", "currency": "EUR"}
        rows.append(
            {
                **plugin,
                "version": "1.0.0",
                "currency": "EUR",
                "manifest": manifest,
                "status": "approved",
                "install_count": 0,
                "rating_sum": 0,
                "rating_count": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
    op.bulk_insert(plugins, rows)


def downgrade() -> None:
    op.execute(plugins.delete().where(plugins.c.id.in_([p["id"] for p in SEED_PLUGINS])))
