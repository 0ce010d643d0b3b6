from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAt, Timestamps, UTCDateTime, UUIDPrimaryKey, enum_column
from app.models.enums import StorageKind


class StorageRecord(UUIDPrimaryKey, Timestamps, Base):
    """Metadata of one encrypted blob; the bytes live in the blob store."""

    __tablename__ = "storage_records"
    __table_args__ = (
        Index("ix_storage_records_user_table", "user_id", "table_name"),
        Index("ix_storage_records_owner_seq", "tenant_id", "user_id", "change_seq", unique=True),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    table_name: Mapped[str] = mapped_column(String(64), nullable=False)
    blob_key: Mapped[str] = mapped_column(String(300), nullable=False)
    checksum: Mapped[str] = mapped_column(String(64), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The owner's change sequence at the record's last write (app/storage/sync.py).
    change_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)


class StorageTombstone(Base):
    """A deleted record's id and table, so an offline client learns of the deletion."""

    __tablename__ = "storage_tombstones"
    __table_args__ = (
        Index("ix_storage_tombstones_owner_seq", "tenant_id", "user_id", "change_seq", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    table_name: Mapped[str] = mapped_column(String(64), nullable=False)
    change_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)


class StorageSyncHead(Base):
    """The last change sequence number handed out per owner (user within a tenant).

    Allocated with an upsert that keeps the row locked until the writer commits, so
    an owner's changes commit in sequence order.
    """

    __tablename__ = "storage_sync_heads"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)


class BackupMetadata(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "backup_metadata"
    __table_args__ = (Index("ix_backup_metadata_user_timestamp", "user_id", "backup_timestamp"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    blob_key: Mapped[str] = mapped_column(String(300), nullable=False)
    version: Mapped[str] = mapped_column(String(64), nullable=False)
    backup_timestamp: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    checksum: Mapped[str] = mapped_column(String(64), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)


class StorageUsage(Base):
    """Bytes a user holds per kind, moved by single conditional UPDATEs (quota accounting)."""

    __tablename__ = "storage_usage"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[StorageKind] = mapped_column(
        enum_column(StorageKind, "storage_kind"), primary_key=True
    )
    used_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
