"""Backups (SPEC §7): the same write path as records, keyed by the backup's timestamp."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from app.backup.repository import BackupRepository
from app.billing.tiers import TierTable
from app.config import Settings
from app.db import Database
from app.errors import NotFound, ServiceUnavailable
from app.kit.timestamps import parse_client_timestamp
from app.models import BackupMetadata, StorageKind
from app.storage.blobs import BlobNotFound, BlobReader, BlobStore, BlobStoreError
from app.storage.quota import precheck, quota_exceeded
from app.storage.repository import StorageUsageRepository
from app.storage.service import (
    Owner,
    blob_unavailable,
    database_unavailable,
    declared_size,
    receive_verified,
    remove_blob_quietly,
    store_then_commit,
)
from app.storage.streaming import check_declared_length


def parse_backup_timestamp(text: str) -> datetime:
    """Unix seconds, Unix milliseconds or ISO 8601 (app/kit/timestamps.py)."""
    return parse_client_timestamp(
        text, field="X-Backup-Timestamp", error="invalid_backup_timestamp"
    )


def parse_http_date(text: str | None) -> datetime | None:
    """An `If-Modified-Since` value; an unparseable one is ignored (RFC 9110 §13.1.3)."""
    if not text:
        return None
    try:
        value = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class BackupService:
    def __init__(
        self,
        session: AsyncSession,
        db: Database,
        store: BlobStore,
        tiers: TierTable,
        settings: Settings,
    ) -> None:
        self.session = session
        self.db = db
        self.store = store
        self.tiers = tiers
        self.max_bytes = settings.MAX_UPLOAD_BYTES
        self.backups = BackupRepository(session)

    async def put(
        self,
        owner: Owner,
        version: str,
        timestamp_text: str,
        checksum: str,
        content_length: str | None,
        chunks: AsyncIterator[bytes],
    ) -> BackupMetadata:
        timestamp = parse_backup_timestamp(timestamp_text)
        check_declared_length(content_length, self.max_bytes)
        limit = await precheck(
            self.session,
            self.tiers,
            owner.tier,
            StorageKind.BACKUPS,
            owner.user_id,
            declared_size(content_length),
        )
        body = await receive_verified(self.store, chunks, checksum, self.max_bytes)
        backup_id = uuid.uuid4()
        # SPEC's `{user_id}/backups/{timestamp}`, plus the id: two uploads with one
        # timestamp must never share (and overwrite) a blob.
        stamp = timestamp.strftime("%Y%m%dT%H%M%S%fZ")
        key = f"{owner.user_id}/backups/{stamp}.{backup_id.hex}"

        async def write(session: AsyncSession) -> BackupMetadata:
            usage = StorageUsageRepository(session)
            if not await usage.try_add(owner.user_id, StorageKind.BACKUPS, body.size, limit):
                raise quota_exceeded(self.tiers, owner.tier, StorageKind.BACKUPS, limit or 0)
            backup = BackupMetadata(
                id=backup_id,
                tenant_id=owner.tenant_id,
                user_id=owner.user_id,
                blob_key=key,
                version=version,
                backup_timestamp=timestamp,
                checksum=body.sha256,
                size_bytes=body.size,
            )
            return await BackupRepository(session).add(backup)

        return await store_then_commit(self.store, self.db, key, body, write)

    async def latest(self, owner: Owner) -> BackupMetadata:
        backup = await self.backups.latest_owned(owner.user_id, owner.tenant_id)
        if backup is None:
            raise NotFound("There is no backup yet.", error="backup_not_found")
        return backup

    async def get(self, owner: Owner, backup_id: uuid.UUID) -> BackupMetadata:
        backup = await self.backups.get_owned(backup_id, owner.user_id, owner.tenant_id)
        if backup is None:
            raise NotFound("No such backup.", error="backup_not_found")
        return backup

    @staticmethod
    def not_modified_since(backup: BackupMetadata, if_modified_since: str | None) -> bool:
        since = parse_http_date(if_modified_since)
        # HTTP dates carry whole seconds.
        return since is not None and backup.backup_timestamp.replace(microsecond=0) <= since

    async def open(self, backup: BackupMetadata) -> BlobReader:
        try:
            return await self.store.open(backup.blob_key)
        except BlobNotFound as exc:
            raise ServiceUnavailable(
                "The backup changed while being read; retry.", error="backup_changed"
            ) from exc
        except BlobStoreError as exc:
            raise blob_unavailable() from exc

    async def history(
        self, owner: Owner, page: int, limit: int
    ) -> tuple[list[BackupMetadata], int]:
        return await self.backups.page_owned(owner.user_id, owner.tenant_id, page=page, limit=limit)

    async def delete(self, owner: Owner, backup_id: uuid.UUID) -> None:
        try:
            async with self.db.sessionmaker() as session, session.begin():
                gone = await BackupRepository(session).delete_owned(
                    backup_id, owner.user_id, owner.tenant_id
                )
                if gone is None:
                    raise NotFound("No such backup.", error="backup_not_found")
                await StorageUsageRepository(session).release(
                    owner.user_id, StorageKind.BACKUPS, gone[1]
                )
        except SQLAlchemyError as exc:
            raise database_unavailable() from exc
        await remove_blob_quietly(self.store, gone[0])
