from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAt, Timestamps, UTCDateTime, enum_column
from app.models.enums import CreditReason, QuotaKind


class QuotaCounter(Base):
    """Units of work used by one subject (identity or IP) on one UTC day."""

    __tablename__ = "quota_counters"

    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[QuotaKind] = mapped_column(enum_column(QuotaKind, "quota_kind"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    used: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class ConcurrencyLease(Base):
    """A unit of work's hold on one concurrency scope, until released or lapsed.

    A unit takes one row per scope it counts against (the caller's and the system's),
    all under one lease id. A lease is live until `expires_at`; renewals move it on.
    """

    __tablename__ = "concurrency_leases"
    __table_args__ = (
        Index("ix_concurrency_leases_scope_expires_at", "scope", "expires_at"),
        Index("ix_concurrency_leases_expires_at", "expires_at"),
    )

    lease_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class ConcurrencyScope(Base):
    """How many leases a scope holds: live ones, and lapsed ones not yet deleted.

    Admission takes a slot with one conditional upsert on this row (`in_use < limit`),
    so concurrent workers never hold more than the limit, whatever its size. A lapsed
    lease keeps its slot until its row is deleted — by the next admission that finds
    the scope full, or by maintenance — and the count goes down with it.
    """

    __tablename__ = "concurrency_scopes"

    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    in_use: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class CreditAccount(Timestamps, Base):
    """A tenant's credit balance (1 credit = 1/CREDITS_PER_USD USD of LLM cost)."""

    __tablename__ = "credit_accounts"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_not_negative"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    balance: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # "YYYY-MM" of the last monthly grant, so each month is granted once.
    last_grant_period: Mapped[str | None] = mapped_column(String(7), nullable=True)
    # The largest grant given for `last_grant_period`: an upgrade tops up to the new
    # tier's grant by the difference, never twice, and a downgrade takes nothing back.
    period_granted: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default="0"
    )


class CreditLedgerEntry(CreatedAt, Base):
    """Append-only record of every credit movement."""

    __tablename__ = "credit_ledger"
    __table_args__ = (Index("ix_credit_ledger_tenant_id_id", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    delta: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reason: Mapped[CreditReason] = mapped_column(
        enum_column(CreditReason, "credit_reason"), nullable=False
    )
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    balance_after: Mapped[int] = mapped_column(BigInteger, nullable=False)
