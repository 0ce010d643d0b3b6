"""Concurrency leases keyed by lease id with a slot count per scope; one-statement admission.

- `concurrency_leases` loses its slot numbers: a unit's lease is one row per scope under
  one lease id, found by index on (scope, expires_at).
- `concurrency_scopes` counts the leases each scope holds; taking a slot is a
  conditional upsert on that row, so its cost does not depend on the limit.
- On PostgreSQL, `quota_admit()` takes the caller's slot, the system slot and every
  daily counter in one statement, and `quota_release()` gives back the slots and the
  counts a unit returns (see app/quota/repository.py for the same steps on SQLite).

Leases held when the migration runs are kept, and counted.

Revision ID: 005
Revises: 004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "005"
down_revision: str | None = "004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Lock order, everywhere: the caller's scope row, then the system's (admission takes
# them in that order; release sorts them, and "subject:…" sorts before "system"),
# then the daily counters in the order admission takes them. Deleting lapsed leases
# skips rows a release or renewal holds, so it never waits on a lease row.
FUNCTIONS = [
    r"""
CREATE FUNCTION quota_take_slot(p_scope text, p_limit integer, p_now timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    taken integer;
    lapsed integer;
    held integer;
BEGIN
    IF p_limit <= 0 THEN
        RETURN false;
    END IF;
    INSERT INTO concurrency_scopes AS s (scope, in_use) VALUES (p_scope, 1)
    ON CONFLICT (scope) DO UPDATE SET in_use = s.in_use + 1 WHERE s.in_use < p_limit
    RETURNING s.in_use INTO taken;
    IF taken IS NOT NULL THEN
        RETURN true;
    END IF;
    -- Full, and the scope's row is locked by the upsert: free the slots of lapsed
    -- leases (a crashed worker's), then look again.
    DELETE FROM concurrency_leases
    WHERE (lease_id, scope) IN (
        SELECT l.lease_id, l.scope FROM concurrency_leases AS l
        WHERE l.scope = p_scope AND l.expires_at <= p_now
        FOR UPDATE SKIP LOCKED
    );
    GET DIAGNOSTICS lapsed = ROW_COUNT;
    IF lapsed = 0 THEN
        RETURN false;
    END IF;
    UPDATE concurrency_scopes SET in_use = greatest(in_use - lapsed, 0)
    WHERE scope = p_scope RETURNING in_use INTO held;
    IF held >= p_limit THEN
        RETURN false;
    END IF;
    UPDATE concurrency_scopes SET in_use = in_use + 1 WHERE scope = p_scope;
    RETURN true;
END
$$;
""",
    r"""
CREATE FUNCTION quota_free_slot(p_scope text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE concurrency_scopes SET in_use = in_use - 1 WHERE scope = p_scope AND in_use > 0;
END
$$;
""",
    r"""
CREATE FUNCTION quota_count(p_subject text, p_kind quota_kind, p_day date, p_limit integer)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    used integer;
BEGIN
    IF p_limit <= 0 THEN
        RETURN false;
    END IF;
    INSERT INTO quota_counters AS c (subject, kind, day, used) VALUES (p_subject, p_kind, p_day, 1)
    ON CONFLICT (subject, kind, day) DO UPDATE SET used = c.used + 1 WHERE c.used < p_limit
    RETURNING c.used INTO used;
    RETURN used IS NOT NULL;
END
$$;
""",
    r"""
CREATE FUNCTION quota_uncount(p_subject text, p_kind quota_kind, p_day date)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE quota_counters SET used = used - 1
    WHERE subject = p_subject AND kind = p_kind AND day = p_day AND used > 0;
END
$$;
""",
    r"""
-- One unit's admission, atomically: the caller's slot, the system slot, the daily
-- totals (a refusal gives back what it took), the lease rows, then the LLM counts (a
-- refusal there is the demo fallback and gives back the address's LLM count). Returns
-- 'ok', a refusal ('concurrency_limit', 'at_capacity', 'daily_quota', 'ip_quota') or
-- a fallback reason ('ip_llm_quota_exhausted', 'llm_quota_exhausted'). A NULL per-address
-- limit means no such counter; a NULL LLM limit means LLM use is not counted.
CREATE FUNCTION quota_admit(
    p_lease_id text,
    p_scope text,
    p_limit integer,
    p_system_scope text,
    p_system_limit integer,
    p_now timestamptz,
    p_expires_at timestamptz,
    p_day date,
    p_subject text,
    p_daily_total integer,
    p_ip_subject text,
    p_daily_per_ip integer,
    p_daily_llm integer,
    p_daily_llm_per_ip integer,
    p_synchronous_commit boolean
) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF NOT p_synchronous_commit THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    IF NOT quota_take_slot(p_scope, p_limit, p_now) THEN
        RETURN 'concurrency_limit';
    END IF;
    IF NOT quota_take_slot(p_system_scope, p_system_limit, p_now) THEN
        PERFORM quota_free_slot(p_scope);
        RETURN 'at_capacity';
    END IF;
    IF NOT quota_count(p_subject, 'total', p_day, p_daily_total) THEN
        PERFORM quota_free_slot(p_scope);
        PERFORM quota_free_slot(p_system_scope);
        RETURN 'daily_quota';
    END IF;
    IF p_daily_per_ip IS NOT NULL AND NOT quota_count(p_ip_subject, 'total', p_day, p_daily_per_ip)
    THEN
        PERFORM quota_free_slot(p_scope);
        PERFORM quota_free_slot(p_system_scope);
        PERFORM quota_uncount(p_subject, 'total', p_day);
        RETURN 'ip_quota';
    END IF;
    INSERT INTO concurrency_leases (lease_id, scope, expires_at)
    VALUES (p_lease_id, p_scope, p_expires_at), (p_lease_id, p_system_scope, p_expires_at);
    IF p_daily_llm IS NULL THEN
        RETURN 'ok';
    END IF;
    IF p_daily_llm_per_ip IS NOT NULL
        AND NOT quota_count(p_ip_subject, 'llm', p_day, p_daily_llm_per_ip)
    THEN
        RETURN 'ip_llm_quota_exhausted';
    END IF;
    IF NOT quota_count(p_subject, 'llm', p_day, p_daily_llm) THEN
        IF p_daily_llm_per_ip IS NOT NULL THEN
            PERFORM quota_uncount(p_ip_subject, 'llm', p_day);
        END IF;
        RETURN 'llm_quota_exhausted';
    END IF;
    RETURN 'ok';
END
$$;
""",
    r"""
-- The end of a unit: its lease rows go and their slots come back (a lease already
-- deleted as lapsed gave its slots back then), and the given counts of `p_day` are
-- given back, in the order admission took them.
CREATE FUNCTION quota_release(
    p_lease_id text,
    p_day date,
    p_subjects text[],
    p_kinds text[],
    p_synchronous_commit boolean
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    scopes text[];
    freed text;
BEGIN
    IF NOT p_synchronous_commit THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    WITH gone AS (
        DELETE FROM concurrency_leases WHERE lease_id = p_lease_id RETURNING scope
    )
    SELECT array_agg(scope ORDER BY scope) INTO scopes FROM gone;
    IF scopes IS NOT NULL THEN
        FOREACH freed IN ARRAY scopes LOOP
            PERFORM quota_free_slot(freed);
        END LOOP;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_subjects, 1), 0) LOOP
        PERFORM quota_uncount(p_subjects[i], p_kinds[i]::quota_kind, p_day);
    END LOOP;
END
$$;
""",
]
DROP_FUNCTIONS = [
    "DROP FUNCTION quota_release(text, date, text[], text[], boolean)",
    "DROP FUNCTION quota_admit(text, text, integer, text, integer, timestamptz, timestamptz, "
    "date, text, integer, text, integer, integer, integer, boolean)",
    "DROP FUNCTION quota_uncount(text, quota_kind, date)",
    "DROP FUNCTION quota_count(text, quota_kind, date, integer)",
    "DROP FUNCTION quota_free_slot(text)",
    "DROP FUNCTION quota_take_slot(text, integer, timestamptz)",
]


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "concurrency_scopes",
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("in_use", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_concurrency_scopes")),
    )
    op.execute(
        "INSERT INTO concurrency_scopes (scope, in_use) "
        "SELECT scope, count(*) FROM concurrency_leases GROUP BY scope"
    )
    with op.batch_alter_table("concurrency_leases") as batch:
        batch.drop_constraint("pk_concurrency_leases", type_="primary")
        batch.drop_column("slot")
        batch.create_primary_key("pk_concurrency_leases", ["lease_id", "scope"])
        batch.create_index(
            "ix_concurrency_leases_scope_expires_at", ["scope", "expires_at"], unique=False
        )
    if _is_postgresql():
        for statement in FUNCTIONS:
            op.execute(statement)


def downgrade() -> None:
    if _is_postgresql():
        for statement in DROP_FUNCTIONS:
            op.execute(statement)
    # Slot numbers come back in expiry order within each scope.
    with op.batch_alter_table("concurrency_leases") as batch:
        batch.add_column(sa.Column("slot", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE concurrency_leases SET slot = ("
        "SELECT count(*) FROM concurrency_leases AS earlier "
        "WHERE earlier.scope = concurrency_leases.scope AND ("
        "earlier.expires_at < concurrency_leases.expires_at OR ("
        "earlier.expires_at = concurrency_leases.expires_at "
        "AND earlier.lease_id < concurrency_leases.lease_id)))"
    )
    with op.batch_alter_table("concurrency_leases") as batch:
        batch.drop_index("ix_concurrency_leases_scope_expires_at")
        batch.drop_constraint("pk_concurrency_leases", type_="primary")
        batch.alter_column("slot", existing_type=sa.Integer(), nullable=False)
        batch.create_primary_key("pk_concurrency_leases", ["scope", "slot"])
    op.drop_table("concurrency_scopes")
