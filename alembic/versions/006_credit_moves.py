"""One-statement credit movements on PostgreSQL: `credit_move()`.

A movement of a tenant's balance and its ledger row, in one call (its own
transaction): a reservation, a settlement (refund or overrun) or an admin grant is
one round trip. The modes (see app/credits/repository.py for the same steps on
SQLite):

- 'credit': add the amount (the account is created if missing);
- 'debit': take the amount only if the balance covers it, else move nothing and
  write no ledger row;
- 'debit_available': take as much of the amount as the balance covers.

Returns the ledger row's id (NULL when nothing was recorded), the signed amount
moved and the balance after it. The account row stays locked from the movement
until the commit, so the ledger's ids follow the order of the movements and each
row's balance_after is the one before it plus its delta.

Revision ID: 006
Revises: 005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "006"
down_revision: str | None = "005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CREDIT_MOVE = r"""
CREATE FUNCTION credit_move(
    p_tenant_id uuid,
    p_mode text,
    p_amount bigint,
    p_reason credit_reason,
    p_user_id uuid,
    p_request_id text,
    OUT entry_id bigint,
    OUT moved bigint,
    OUT balance_after bigint
) LANGUAGE plpgsql AS $$
DECLARE
    available bigint;
BEGIN
    IF p_mode = 'credit' THEN
        moved := p_amount;
        INSERT INTO credit_accounts AS a (tenant_id, balance) VALUES (p_tenant_id, p_amount)
        ON CONFLICT (tenant_id) DO UPDATE SET balance = a.balance + p_amount, updated_at = now()
        RETURNING a.balance INTO balance_after;
    ELSIF p_mode = 'debit' THEN
        UPDATE credit_accounts AS a SET balance = a.balance - p_amount, updated_at = now()
        WHERE a.tenant_id = p_tenant_id AND a.balance >= p_amount
        RETURNING a.balance INTO balance_after;
        IF NOT FOUND THEN
            SELECT a.balance INTO balance_after FROM credit_accounts AS a
            WHERE a.tenant_id = p_tenant_id;
            moved := 0;
            balance_after := coalesce(balance_after, 0);
            RETURN;
        END IF;
        moved := -p_amount;
    ELSIF p_mode = 'debit_available' THEN
        -- The row stays locked from this read to the commit: no concurrent movement
        -- can change what is available in between.
        SELECT a.balance INTO available FROM credit_accounts AS a
        WHERE a.tenant_id = p_tenant_id FOR UPDATE;
        moved := -least(p_amount, coalesce(available, 0));
        UPDATE credit_accounts AS a SET balance = a.balance + moved, updated_at = now()
        WHERE a.tenant_id = p_tenant_id
        RETURNING a.balance INTO balance_after;
        balance_after := coalesce(balance_after, 0);
    ELSE
        RAISE EXCEPTION 'unknown credit movement %', p_mode;
    END IF;
    INSERT INTO credit_ledger
        (tenant_id, user_id, delta, reason, balance_after, request_id, created_at)
    VALUES (p_tenant_id, p_user_id, moved, p_reason, balance_after, p_request_id, now())
    RETURNING id INTO entry_id;
END
$$;
"""
DROP_CREDIT_MOVE = "DROP FUNCTION credit_move(uuid, text, bigint, credit_reason, uuid, text)"


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _is_postgresql():
        op.execute(CREDIT_MOVE)


def downgrade() -> None:
    if _is_postgresql():
        op.execute(DROP_CREDIT_MOVE)
