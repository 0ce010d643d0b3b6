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
    __table_args__ = (Index("ix_storage_records_user_table", "user_id", "table_name"),)

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
