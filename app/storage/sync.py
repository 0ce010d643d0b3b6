"""The change feed a syncing client reads: record changes and deletions, in order, by cursor.

Design (README "Sync"):
- Every write of a record (create, replace, delete) takes the next number of its
  owner's **change sequence** (`storage_sync_heads`, one row per user within a
  tenant). The number is allocated by an upsert that keeps the head row locked
  until the write commits, so the owner's writes commit in sequence order: a
  reader that sees number n has already been able to see every number below it.
  A change can therefore never appear later *behind* a cursor a reader was given.
- The record row carries the number of its last write; a deletion leaves a
  **tombstone** (id, table, number, time: metadata only).
- The feed reads live records and tombstones past the cursor, and the head, in
  one statement (one snapshot on SQLite and PostgreSQL), ordered by number. The
  cursor is opaque: the last number returned, when its run of pages began (the
  time of the last caught-up page, which bounds the age of every tombstone it may
  still need), and a tag of its owner.
- Tombstones are kept `SYNC_TOMBSTONE_RETENTION_DAYS` plus a day's grace, then
  purged; a cursor (or a `changed_since`) older than the retention is refused with
  410, and the client starts over with a full sync.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.errors import Gone, Unprocessable
from app.models.base import utcnow
from app.storage.repository import HEAD, TOMBSTONE, SyncRepository

log = logging.getLogger(__name__)

DEFAULT_PAGE = 100
MAX_PAGE = 500
# Tombstones outlive the cursors that may need them by this much: covers the time a
# write's transaction takes and clock differences between workers.
TOMBSTONE_GRACE = timedelta(days=1)
_CURSOR_VERSION = "1"
PURGE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Cursor:
    seq: int
    issued_at: datetime


def _owner_tag(user_id: uuid.UUID, tenant_id: uuid.UUID) -> str:
    return hashlib.sha256(f"{tenant_id}:{user_id}".encode()).hexdigest()[:12]


def encode_cursor(user_id: uuid.UUID, tenant_id: uuid.UUID, seq: int, issued_at: datetime) -> str:
    millis = int(issued_at.timestamp() * 1000)
    raw = f"{_CURSOR_VERSION}.{seq}.{millis}.{_owner_tag(user_id, tenant_id)}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def invalid_cursor(reason: str) -> Unprocessable:
    return Unprocessable(
        f"`cursor` is not a cursor this feed issued ({reason}); use the `next_cursor` of a "
        "previous answer, or leave it out for a full sync.",
        error="invalid_cursor",
    )


def decode_cursor(user_id: uuid.UUID, tenant_id: uuid.UUID, text: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        version, seq, millis, tag = raw.split(".")
        cursor = Cursor(int(seq), datetime.fromtimestamp(int(millis) / 1000, UTC))
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError) as exc:
        raise invalid_cursor("malformed") from exc
    if version != _CURSOR_VERSION or cursor.seq < 0:
        raise invalid_cursor("unknown version")
    if tag != _owner_tag(user_id, tenant_id):
        raise invalid_cursor("it belongs to another account or workspace")
    return cursor


@dataclass(frozen=True, slots=True)
class Change:
    id: uuid.UUID
    table: str
    deleted: bool
    changed_at: datetime
    checksum: str | None
    size_bytes: int | None
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class ChangePage:
    changes: list[Change]
    next_cursor: str
    has_more: bool


async def read_changes(
    session: AsyncSession,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    *,
    cursor_text: str | None,
    since: datetime | None,
    limit: int,
    retention: timedelta,
    now: datetime | None = None,
) -> ChangePage:
    """One page of the owner's changes past the cursor (from the start without one)."""
    now = now or utcnow()
    horizon = now - retention
    after = 0
    issued = now
    if cursor_text is not None:
        cursor = decode_cursor(user_id, tenant_id, cursor_text)
        if cursor.issued_at < horizon:
            raise Gone(
                f"This cursor is older than the {retention.days} days deletions are kept; "
                "start over with a full sync (no cursor).",
                error="sync_cursor_expired",
            )
        after = cursor.seq
        issued = cursor.issued_at
    if since is not None and since < horizon:
        raise Gone(
            f"`changed_since` is older than the {retention.days} days deletions are kept; "
            "start over with a full sync (no `changed_since`).",
            error="changed_since_too_old",
        )

    rows = await SyncRepository(session).changes(
        user_id, tenant_id, after=after, since=since, limit=limit + 1
    )
    head = next((int(row.change_seq) for row in rows if row.kind == HEAD), None)
    found = sorted((row for row in rows if row.kind != HEAD), key=lambda row: row.change_seq)
    has_more = len(found) > limit
    page = found[:limit]
    if has_more:
        position = int(page[-1].change_seq)
        # Mid-way, the tombstones past `position` may date from when this run of pages
        # began, not from now: the cursor keeps that age, so it expires in time.
    else:
        # Everything past the cursor in this snapshot was returned (or filtered out by
        # `changed_since`): the next read may start at the head seen in the same snapshot.
        position = max(after, head or 0, *(int(row.change_seq) for row in page))
        # Caught up: every later tombstone is newer than this snapshot.
        issued = now
    changes = [
        Change(
            id=row.id,
            table=row.table_name,
            deleted=row.kind == TOMBSTONE,
            changed_at=row.changed_at,
            checksum=row.checksum,
            size_bytes=None if row.size_bytes is None else int(row.size_bytes),
            created_at=row.created_at,
        )
        for row in page
    ]
    return ChangePage(changes, encode_cursor(user_id, tenant_id, position, issued), has_more)


async def purge_tombstones(db: Database, retention: timedelta, now: datetime | None = None) -> int:
    """Remove tombstones no valid cursor can need any more; one short transaction a batch."""
    before = (now or utcnow()) - retention - TOMBSTONE_GRACE
    total = 0
    while True:
        async with db.sessionmaker() as session, session.begin():
            removed = await SyncRepository(session).purge_tombstones(before, PURGE_BATCH)
        total += removed
        if removed < PURGE_BATCH:
            break
    if total:
        log.info("storage tombstones purged", extra={"tombstones_purged": total})
    return total
