from __future__ import annotations

import uuid

from sqlalchemy import Select, delete, select

from app.kit.repository import Repository
from app.models import BackupMetadata


class BackupRepository(Repository[BackupMetadata]):
    model = BackupMetadata

    def _owned(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> Select[tuple[BackupMetadata]]:
        return (
            select(BackupMetadata)
            .where(BackupMetadata.user_id == user_id, BackupMetadata.tenant_id == tenant_id)
            .order_by(
                BackupMetadata.backup_timestamp.desc(),
                BackupMetadata.created_at.desc(),
                BackupMetadata.id,
            )
        )

    async def get_owned(
        self, backup_id: uuid.UUID, user_id: uuid.UUID, tenant_id: uuid.UUID
    ) -> BackupMetadata | None:
        return await self.get_one_or_none(
            self._owned(user_id, tenant_id).where(BackupMetadata.id == backup_id)
        )

    async def latest_owned(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> BackupMetadata | None:
        return await self.get_one_or_none(self._owned(user_id, tenant_id).limit(1))

    async def page_owned(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, *, page: int, limit: int
    ) -> tuple[list[BackupMetadata], int]:
        return await self.paginate(self._owned(user_id, tenant_id), page=page, limit=limit)

    async def delete_owned(
        self, backup_id: uuid.UUID, user_id: uuid.UUID, tenant_id: uuid.UUID
    ) -> tuple[str, int] | None:
        """Delete the row; its blob key and size, or None if it was not the caller's."""
        result = await self.session.execute(
            delete(BackupMetadata)
            .where(
                BackupMetadata.id == backup_id,
                BackupMetadata.user_id == user_id,
                BackupMetadata.tenant_id == tenant_id,
            )
            .returning(BackupMetadata.blob_key, BackupMetadata.size_bytes)
        )
        row = result.one_or_none()
        return (row[0], int(row[1])) if row is not None else None
