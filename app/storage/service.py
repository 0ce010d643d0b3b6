"""Records and vectors: the logic between the routes, the blob store, Qdrant and the database.

Consistency of a write (SPEC §6): the body is spooled and its checksum verified
first; the blob is stored under a key no row points at yet; then one short
transaction reserves the bytes (atomic quota) and writes the row. If the blob
write fails there is no row; if the transaction fails the new blob is removed;
a replaced or deleted blob is removed only after the commit that stopped
pointing at it. These transactions are the service's own, not the request's,
so a failed commit is seen here and compensated.

Every record write also takes the owner's next change number first
(app/storage/sync.py), so all writers of one owner take their locks in one order
(change head, usage, record) and commit in number order; a delete leaves a
tombstone in the same transaction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import anyio
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.dependencies import Principal
from app.billing.tiers import TierTable
from app.config import Settings
from app.db import Database
from app.errors import BadRequest, Conflict, NotFound, ServiceUnavailable, Unprocessable
from app.models import BillingTier, StorageKind, StorageRecord
from app.storage.blobs import BlobNotFound, BlobReader, BlobStore, BlobStoreError
from app.storage.conditional import etag_of, precondition_failed
from app.storage.quota import precheck, quota_exceeded, tier_limit
from app.storage.repository import (
    StorageRecordRepository,
    StorageUsageRepository,
    SyncRepository,
)
from app.storage.schemas import VectorItem, VectorSearchRequest
from app.storage.streaming import (
    SpooledBody,
    check_declared_length,
    checksums_match,
    require_checksum,
    spool_body,
)
from app.storage.sync import ChangePage, read_changes
from app.storage.vectors import VectorHit, VectorIndex, VectorPoint, VectorStoreError, hash_vector

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Owner:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    tier: BillingTier

    @classmethod
    def of(cls, principal: Principal) -> Owner:
        return cls(principal.user.id, principal.tenant.id, principal.tenant.tier)


def blob_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The storage backend is unavailable; nothing was stored. Retry later.",
        error="blob_store_unavailable",
    )


def database_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The upload could not be recorded; nothing was stored. Retry later.",
        error="storage_unavailable",
    )


async def remove_blob_quietly(store: BlobStore, key: str) -> None:
    """Remove a blob no row points at; a failure leaves an orphan, logged for clean-up."""
    with anyio.CancelScope(shield=True):
        try:
            await store.delete(key)
        except BlobStoreError:
            log.error("orphan blob left after a failed removal", extra={"blob_key": key})


async def store_then_commit(
    store: BlobStore,
    db: Database,
    key: str,
    body: SpooledBody,
    write: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    """Store the verified body under `key`, then run `write` in its own transaction.

    Whatever fails after the blob is stored (quota refusal, a database error, a
    cancelled request), the blob is removed again before the error propagates.
    """
    try:
        await store.put_file(key, body.path)
    except BaseException as exc:
        # A failed or cancelled write may still have left the object behind (a worker
        # thread cannot be interrupted), and no row will ever point at it.
        await remove_blob_quietly(store, key)
        if isinstance(exc, BlobStoreError):
            log.warning("blob write failed: %s", exc)
            raise blob_unavailable() from exc
        raise
    finally:
        body.discard()
    try:
        async with db.sessionmaker() as session, session.begin():
            return await write(session)
    except BaseException as exc:
        await remove_blob_quietly(store, key)
        if isinstance(exc, SQLAlchemyError):
            log.warning("storage metadata write failed: %s", type(exc).__name__)
            raise database_unavailable() from exc
        raise


async def receive_verified(
    store: BlobStore,
    chunks: AsyncIterator[bytes],
    checksum: str,
    max_bytes: int,
) -> SpooledBody:
    try:
        body = await spool_body(chunks, store.staging_dir, max_bytes)
    except OSError as exc:
        raise blob_unavailable() from exc
    require_checksum(body, checksum)
    return body


def declared_size(content_length: str | None) -> int:
    try:
        return max(0, int(content_length)) if content_length is not None else 0
    except ValueError:
        return 0


class RecordService:
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
        self.tombstone_retention = timedelta(days=settings.SYNC_TOMBSTONE_RETENTION_DAYS)
        self.records = StorageRecordRepository(session)

    async def get(self, owner: Owner, record_id: uuid.UUID) -> StorageRecord:
        record = await self.records.get_owned(record_id, owner.user_id, owner.tenant_id)
        if record is None:
            raise NotFound("No such record.", error="record_not_found")
        return record

    async def create(
        self,
        owner: Owner,
        table: str,
        checksum: str,
        content_length: str | None,
        chunks: AsyncIterator[bytes],
    ) -> StorageRecord:
        check_declared_length(content_length, self.max_bytes)
        limit = await precheck(
            self.session,
            self.tiers,
            owner.tier,
            StorageKind.RECORDS,
            owner.user_id,
            declared_size(content_length),
        )
        body = await receive_verified(self.store, chunks, checksum, self.max_bytes)
        record_id = uuid.uuid4()
        key = f"{owner.user_id}/{table}/{record_id}"

        async def write(session: AsyncSession) -> StorageRecord:
            seq = await SyncRepository(session).next_seq(owner.user_id, owner.tenant_id)
            usage = StorageUsageRepository(session)
            if not await usage.try_add(owner.user_id, StorageKind.RECORDS, body.size, limit):
                raise quota_exceeded(self.tiers, owner.tier, StorageKind.RECORDS, limit or 0)
            record = StorageRecord(
                id=record_id,
                tenant_id=owner.tenant_id,
                user_id=owner.user_id,
                table_name=table,
                blob_key=key,
                checksum=body.sha256,
                size_bytes=body.size,
                change_seq=seq,
            )
            return await StorageRecordRepository(session).add(record)

        return await store_then_commit(self.store, self.db, key, body, write)

    async def list(
        self, owner: Owner, table: str | None, page: int, limit: int
    ) -> tuple[list[StorageRecord], int]:
        return await self.records.page_owned(
            owner.user_id, owner.tenant_id, table, page=page, limit=limit
        )

    async def changes(
        self,
        owner: Owner,
        cursor: str | None,
        since: datetime | None,
        limit: int,
    ) -> ChangePage:
        return await read_changes(
            self.session,
            owner.user_id,
            owner.tenant_id,
            cursor_text=cursor,
            since=since,
            limit=limit,
            retention=self.tombstone_retention,
        )

    async def open(self, record: StorageRecord) -> BlobReader:
        try:
            return await self.store.open(record.blob_key)
        except BlobNotFound as exc:
            # Only a replace or delete racing this read gets here.
            raise ServiceUnavailable(
                "The record changed while being read; retry.", error="record_changed"
            ) from exc
        except BlobStoreError as exc:
            raise blob_unavailable() from exc

    async def replace(
        self,
        owner: Owner,
        record_id: uuid.UUID,
        table: str | None,
        checksum: str,
        content_length: str | None,
        chunks: AsyncIterator[bytes],
        if_match: list[str] | None = None,
    ) -> StorageRecord:
        """Replace the bytes; with `if_match`, only while the record holds one of those."""
        check_declared_length(content_length, self.max_bytes)
        current = await self.get(owner, record_id)
        if if_match is not None and current.checksum.lower() not in if_match:
            raise precondition_failed("record", etag_of(current.checksum))
        old_key, old_size = current.blob_key, current.size_bytes
        table = table or current.table_name
        limit = await precheck(
            self.session,
            self.tiers,
            owner.tier,
            StorageKind.RECORDS,
            owner.user_id,
            declared_size(content_length) - old_size,
        )
        body = await receive_verified(self.store, chunks, checksum, self.max_bytes)
        # A fresh key: the old blob stays intact until the row points at the new one.
        new_key = f"{owner.user_id}/{table}/{record_id}.{uuid.uuid4().hex[:16]}"

        async def write(session: AsyncSession) -> StorageRecord:
            seq = await SyncRepository(session).next_seq(owner.user_id, owner.tenant_id)
            usage = StorageUsageRepository(session)
            delta = body.size - old_size
            if delta > 0:
                if not await usage.try_add(owner.user_id, StorageKind.RECORDS, delta, limit):
                    raise quota_exceeded(self.tiers, owner.tier, StorageKind.RECORDS, limit or 0)
            else:
                await usage.release(owner.user_id, StorageKind.RECORDS, -delta)
            records = StorageRecordRepository(session)
            updated = await records.swap_blob(
                record_id,
                old_key,
                table=table,
                blob_key=new_key,
                checksum=body.sha256,
                size_bytes=body.size,
                change_seq=seq,
            )
            if updated is None:
                latest = await records.get(record_id)
                if latest is None:
                    raise NotFound("No such record.", error="record_not_found")
                if if_match is not None:
                    # Replaced by another request since the precondition was checked.
                    raise precondition_failed("record", etag_of(latest.checksum))
                raise Conflict(
                    "The record was replaced by another request meanwhile; retry.",
                    error="record_changed",
                )
            return updated

        updated = await store_then_commit(self.store, self.db, new_key, body, write)
        await remove_blob_quietly(self.store, old_key)
        return updated

    async def delete(
        self, owner: Owner, record_id: uuid.UUID, if_match: list[str] | None = None
    ) -> None:
        """Delete the row (leaving a tombstone), then the blob.

        With `if_match`, only while the record holds one of those checksums.
        """
        try:
            async with self.db.sessionmaker() as session, session.begin():
                sync = SyncRepository(session)
                seq = await sync.next_seq(owner.user_id, owner.tenant_id)
                records = StorageRecordRepository(session)
                gone = await records.delete_owned(
                    record_id, owner.user_id, owner.tenant_id, checksums=if_match
                )
                if gone is None:
                    current = await records.get_owned(record_id, owner.user_id, owner.tenant_id)
                    if current is None:
                        raise NotFound("No such record.", error="record_not_found")
                    raise precondition_failed("record", etag_of(current.checksum))
                blob_key, size, table = gone
                await StorageUsageRepository(session).release(
                    owner.user_id, StorageKind.RECORDS, size
                )
                await sync.add_tombstone(
                    record_id, owner.user_id, owner.tenant_id, table=table, change_seq=seq
                )
        except SQLAlchemyError as exc:
            raise database_unavailable() from exc
        await remove_blob_quietly(self.store, blob_key)


# --- vectors ------------------------------------------------------------------------


def _decode_blob(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Unprocessable(f"`{field}` is not valid base64.", error="invalid_base64") from exc


def _check_dimension(vector: list[float], dimension: int) -> list[float]:
    if len(vector) != dimension:
        raise Unprocessable(
            f"The vector has {len(vector)} dimensions; this collection has {dimension}.",
            error="vector_dimension_mismatch",
        )
    if not any(vector) or not all(math.isfinite(v) for v in vector):
        raise Unprocessable("The vector must be finite and not all zeros.", error="invalid_vector")
    return vector


def vector_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The vector store is unavailable right now. Retry later.", error="vector_store_unavailable"
    )


class VectorService:
    def __init__(self, index: VectorIndex, tiers: TierTable) -> None:
        self.index = index
        self.tiers = tiers

    async def upsert(self, owner: Owner, items: list[VectorItem]) -> list[str]:
        if tier_limit(self.tiers, owner.tier, StorageKind.RECORDS) == 0:
            raise quota_exceeded(self.tiers, owner.tier, StorageKind.RECORDS, 0)
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            raise Unprocessable(
                "Vector ids must be unique within one request.", error="duplicate_id"
            )
        points = []
        for index, item in enumerate(items):
            blob = _decode_blob(item.blob, f"items.{index}.blob")
            if not checksums_match(item.checksum, hashlib.sha256(blob).hexdigest()):
                raise BadRequest(
                    f"items.{index}: the blob's SHA-256 does not match its checksum; "
                    "nothing was stored.",
                    error="checksum_mismatch",
                )
            vector = (
                _check_dimension(item.vector, self.index.dimension)
                if item.vector is not None
                else hash_vector(blob, self.index.dimension)
            )
            points.append(VectorPoint(item.id, vector, item.blob, item.checksum.lower()))
        try:
            await self.index.upsert(owner.user_id, owner.tenant_id, points)
        except VectorStoreError as exc:
            raise vector_unavailable() from exc
        return ids

    async def search(self, owner: Owner, query: VectorSearchRequest) -> list[VectorHit]:
        if query.vector is not None:
            vector = _check_dimension(query.vector, self.index.dimension)
        else:
            vector = hash_vector(_decode_blob(query.blob or "", "blob"), self.index.dimension)
        try:
            return await self.index.search(owner.user_id, owner.tenant_id, vector, query.top_k)
        except VectorStoreError as exc:
            raise vector_unavailable() from exc

    async def delete(self, owner: Owner, ids: list[str]) -> int:
        try:
            return await self.index.delete(owner.user_id, owner.tenant_id, list(dict.fromkeys(ids)))
        except VectorStoreError as exc:
            raise vector_unavailable() from exc
