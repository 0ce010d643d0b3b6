from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.repository import Repository
from app.models import BackupMetadata, StorageKind, StorageRecord, StorageUsage
from app.models.base import utcnow


class StorageRecordRepository(Repository[StorageRecord]):
    model = StorageRecord

    def _owned(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> Any:
        return select(StorageRecord).where(
            StorageRecord.user_id == user_id, StorageRecord.tenant_id == tenant_id
        )

    async def get_owned(
        self, record_id: uuid.UUID, user_id: uuid.UUID, tenant_id: uuid.UUID
    ) -> StorageRecord | None:
        return await self.get_one_or_none(
            self._owned(user_id, tenant_id).where(StorageRecord.id == record_id)
        )

    async def page_owned(
        self,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        table: str | None,
        *,
        page: int,
        limit: int,
    ) -> tuple[list[StorageRecord], int]:
        statement = self._owned(user_id, tenant_id)
        if table is not None:
            statement = statement.where(StorageRecord.table_name == table)
        statement = statement.order_by(StorageRecord.created_at.desc(), StorageRecord.id)
        return await self.paginate(statement, page=page, limit=limit)

    async def swap_blob(
        self,
        record_id: uuid.UUID,
        expected_key: str,
        *,
        table: str,
        blob_key: str,
        checksum: str,
        size_bytes: int,
    ) -> StorageRecord | None:
        """Point the record at a new blob, only if it still points at `expected_key`.

        The condition makes two concurrent replaces of one record safe: the loser
        changes nothing and removes its own new blob.
        """
        return await self.session.scalar(
            update(StorageRecord)
            .where(StorageRecord.id == record_id, StorageRecord.blob_key == expected_key)
            .values(
                table_name=table,
                blob_key=blob_key,
                checksum=checksum,
                size_bytes=size_bytes,
                updated_at=utcnow(),
            )
            .returning(StorageRecord)
        )

    async def delete_owned(
        self, record_id: uuid.UUID, user_id: uuid.UUID, tenant_id: uuid.UUID
    ) -> tuple[str, int] | None:
        """Delete the row; its blob key and size, or None if it was not the caller's."""
        result = await self.session.execute(
            delete(StorageRecord)
            .where(
                StorageRecord.id == record_id,
                StorageRecord.user_id == user_id,
                StorageRecord.tenant_id == tenant_id,
            )
            .returning(StorageRecord.blob_key, StorageRecord.size_bytes)
        )
        row = result.one_or_none()
        return (row[0], int(row[1])) if row is not None else None


async def tenant_blob_keys(session: AsyncSession, tenant_id: uuid.UUID) -> list[str]:
    """Blob keys of every record and backup of a tenant."""
    records = await session.scalars(
        select(StorageRecord.blob_key).where(StorageRecord.tenant_id == tenant_id)
    )
    backups = await session.scalars(
        select(BackupMetadata.blob_key).where(BackupMetadata.tenant_id == tenant_id)
    )
    return [*records, *backups]


class StorageUsageRepository:
    """Used bytes per user and kind, only ever moved by single atomic statements."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def used(self, user_id: uuid.UUID, kind: StorageKind) -> int:
        value = await self.session.scalar(
            select(StorageUsage.used_bytes).where(
                StorageUsage.user_id == user_id, StorageUsage.kind == kind
            )
        )
        return int(value or 0)

    async def try_add(
        self, user_id: uuid.UUID, kind: StorageKind, delta: int, limit: int | None
    ) -> bool:
        """Add `delta` bytes (> 0) if the total stays within `limit` (None: no limit).

        One `INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING`: concurrent uploads
        serialise on the row, and each sees the others' committed bytes.
        """
        if limit is not None and delta > limit:
            return False
        dialect = self.session.bind.dialect.name if self.session.bind else "sqlite"
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(StorageUsage).values(user_id=user_id, kind=kind, used_bytes=delta)
        new_total = StorageUsage.used_bytes + statement.excluded.used_bytes
        statement = statement.on_conflict_do_update(
            index_elements=[StorageUsage.user_id, StorageUsage.kind],
            set_={"used_bytes": new_total},
            where=(new_total <= limit) if limit is not None else None,
        ).returning(StorageUsage.used_bytes)
        result = await self.session.execute(statement)
        return result.scalar_one_or_none() is not None

    async def release(self, user_id: uuid.UUID, kind: StorageKind, delta: int) -> None:
        if delta <= 0:
            return
        await self.session.execute(
            update(StorageUsage)
            .where(StorageUsage.user_id == user_id, StorageUsage.kind == kind)
            .values(used_bytes=StorageUsage.used_bytes - delta)
        )
