"""Notify `adiuva_access` when a row behind the per-worker access cache changes.

Triggers on `users`, `memberships`, `subscriptions` and `tenants` call
`pg_notify` in the transaction that makes the change, so every worker hears of
it at commit and no code path can forget it (app/auth/invalidation.py). On
SQLite this migration does nothing: there the app watches its own writes.

Revision ID: 004
Revises: 003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "004"
down_revision: str | None = "003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "adiuva_access"

# Payloads: "u:<user id>", "t:<tenant id>", "m:<user id>:<tenant id>" (app/auth/cache.py).
FUNCTIONS = {
    "adiuva_access_users": f"""
        IF TG_OP = 'DELETE' THEN
            PERFORM pg_notify('{CHANNEL}', 'u:' || OLD.id);
            RETURN NULL;
        END IF;
        PERFORM pg_notify('{CHANNEL}', 'u:' || OLD.id);
        PERFORM pg_notify('{CHANNEL}', 'u:' || NEW.id);
        -- Seats count active members only.
        IF NEW.is_active IS DISTINCT FROM OLD.is_active THEN
            PERFORM pg_notify('{CHANNEL}', 't:' || m.tenant_id)
            FROM memberships AS m WHERE m.user_id = NEW.id;
        END IF;
        RETURN NULL;
    """,
    "adiuva_access_memberships": f"""
        IF TG_OP <> 'INSERT' THEN
            PERFORM pg_notify('{CHANNEL}', 'm:' || OLD.user_id || ':' || OLD.tenant_id);
            PERFORM pg_notify('{CHANNEL}', 't:' || OLD.tenant_id);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM pg_notify('{CHANNEL}', 'm:' || NEW.user_id || ':' || NEW.tenant_id);
            PERFORM pg_notify('{CHANNEL}', 't:' || NEW.tenant_id);
        END IF;
        RETURN NULL;
    """,
    "adiuva_access_subscriptions": f"""
        IF TG_OP <> 'INSERT' THEN
            PERFORM pg_notify('{CHANNEL}', 't:' || OLD.tenant_id);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM pg_notify('{CHANNEL}', 't:' || NEW.tenant_id);
        END IF;
        RETURN NULL;
    """,
    "adiuva_access_tenants": f"""
        PERFORM pg_notify('{CHANNEL}', 't:' || OLD.id);
        IF TG_OP = 'UPDATE' THEN
            PERFORM pg_notify('{CHANNEL}', 't:' || NEW.id);
        END IF;
        RETURN NULL;
    """,
}

# Only the columns the access lookup reads; a new user has nothing cached yet.
TRIGGERS = {
    "adiuva_access_users": (
        "users",
        "UPDATE OF id, email, is_admin, is_active, token_version OR DELETE",
    ),
    "adiuva_access_memberships": (
        "memberships",
        "INSERT OR UPDATE OF user_id, tenant_id, role OR DELETE",
    ),
    "adiuva_access_subscriptions": (
        "subscriptions",
        "INSERT OR UPDATE OF tenant_id, tier OR DELETE",
    ),
    "adiuva_access_tenants": ("tenants", "UPDATE OF id, kind OR DELETE"),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, body in FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} END $$"
        )
    for name, (table, events) in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} AFTER {events} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {name}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (table, _) in TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    for name in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
