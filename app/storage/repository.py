from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Row,
    String,
    Uuid,
    cast,
    delete,
    literal_column,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.repository import Repository
from app.kit.sql import upsert
from app.models import (
    BackupMetadata,
    StorageKind,
    StorageRecord,
    StorageSyncHead,
    StorageTombstone,
    StorageUsage,
)
from app.models.base import UTCDateTime, utcnow


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
        change_seq: int,
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
                change_seq=change_seq,
                updated_at=utcnow(),
            )
            .returning(StorageRecord)
        )

    async def delete_owned(
        self,
        record_id: uuid.UUID,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        *,
        checksums: Sequence[str] | None = None,
    ) -> tuple[str, int, str] | None:
        """Delete the row; its blob key, size and table, or None if nothing was deleted.

        With `checksums`, only a record holding one of them is deleted (`If-Match`).
        """
        statement = delete(StorageRecord).where(
            StorageRecord.id == record_id,
            StorageRecord.user_id == user_id,
            StorageRecord.tenant_id == tenant_id,
        )
        if checksums is not None:
            statement = statement.where(StorageRecord.checksum.in_(checksums))
        result = await self.session.execute(
            statement.returning(
                StorageRecord.blob_key, StorageRecord.size_bytes, StorageRecord.table_name
            )
        )
        row = result.one_or_none()
        return (row[0], int(row[1]), row[2]) if row is not None else None


# Row kinds of the change feed's one statement.
UPSERT, TOMBSTONE, HEAD = 0, 1, 2


class SyncRepository:
    """The per-owner change sequence, tombstones and the change feed."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def next_seq(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> int:
        """The owner's next change number.

        One `INSERT … ON CONFLICT DO UPDATE … RETURNING`: the head row stays locked
        until the caller's transaction ends, so a second writer of the same owner
        waits, and gets a higher number only after the first has committed. Call it
        first in a write transaction (before the usage and record rows) so every
        writer takes the locks in one order.
        """
        statement = upsert(self.session, StorageSyncHead).values(
            tenant_id=tenant_id, user_id=user_id, last_seq=1
        )
        statement = statement.on_conflict_do_update(
            index_elements=[StorageSyncHead.tenant_id, StorageSyncHead.user_id],
            set_={"last_seq": StorageSyncHead.last_seq + 1},
        ).returning(StorageSyncHead.last_seq)
        return int((await self.session.execute(statement)).scalar_one())

    async def add_tombstone(
        self,
        record_id: uuid.UUID,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        *,
        table: str,
        change_seq: int,
    ) -> None:
        self.session.add(
            StorageTombstone(
                id=record_id,
                tenant_id=tenant_id,
                user_id=user_id,
                table_name=table,
                change_seq=change_seq,
                deleted_at=utcnow(),
            )
        )
        await self.session.flush()

    async def changes(
        self,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        *,
        after: int,
        since: datetime | None,
        limit: int,
    ) -> list[Row[Any]]:
        """Up to `limit` live records and `limit` tombstones past `after`, and the head.

        One statement, so one snapshot on both databases: the records, the tombstones
        and the head row are seen as of the same instant. Rows carry `kind`
        (UPSERT, TOMBSTONE or HEAD); the head row's `change_seq` is the last number
        handed out.
        """
        r, t, h = StorageRecord, StorageTombstone, StorageSyncHead
        records = (
            select(
                literal_column(str(UPSERT)).label("kind"),
                r.id.label("id"),
                r.table_name.label("table_name"),
                r.change_seq.label("change_seq"),
                r.checksum.label("checksum"),
                r.size_bytes.label("size_bytes"),
                r.created_at.label("created_at"),
                r.updated_at.label("changed_at"),
            )
            .where(r.tenant_id == tenant_id, r.user_id == user_id, r.change_seq > after)
            .order_by(r.change_seq)
            .limit(limit)
        )
        tombstones = (
            select(
                literal_column(str(TOMBSTONE)).label("kind"),
                t.id,
                t.table_name,
                t.change_seq,
                cast(null(), String(64)).label("checksum"),
                cast(null(), BigInteger).label("size_bytes"),
                cast(null(), UTCDateTime()).label("created_at"),
                t.deleted_at.label("changed_at"),
            )
            .where(t.tenant_id == tenant_id, t.user_id == user_id, t.change_seq > after)
            .order_by(t.change_seq)
            .limit(limit)
        )
        if since is not None:
            records = records.where(r.updated_at >= since)
            tombstones = tombstones.where(t.deleted_at >= since)
        head = select(
            literal_column(str(HEAD)).label("kind"),
            cast(null(), Uuid).label("id"),
            cast(null(), String(64)).label("table_name"),
            h.last_seq,
            cast(null(), String(64)).label("checksum"),
            cast(null(), BigInteger).label("size_bytes"),
            cast(null(), UTCDateTime()).label("created_at"),
            cast(null(), UTCDateTime()).label("changed_at"),
        ).where(h.tenant_id == tenant_id, h.user_id == user_id)
        # Each branch is wrapped so its ORDER BY/LIMIT stay its own (SQLite's grammar).
        branches = [select(q.subquery()) for q in (records, tombstones)]
        feed = union_all(*branches, head)
        return list((await self.session.execute(feed)).all())

    async def purge_tombstones(self, before: datetime, batch: int = 1000) -> int:
        """Delete up to `batch` tombstones older than `before`; how many went."""
        oldest = (
            select(StorageTombstone.id)
            .where(StorageTombstone.deleted_at < before)
            .order_by(StorageTombstone.deleted_at)
            .limit(batch)
        )
        result = await self.session.execute(
            delete(StorageTombstone).where(StorageTombstone.id.in_(oldest.scalar_subquery()))
        )
        return int(result.rowcount or 0)


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
