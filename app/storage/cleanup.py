"""Removes an ended demo session's blobs and vectors before its rows are purged."""

from __future__ import annotations

from app.db import Database
from app.demo.cleanup import EndedDemoSession
from app.storage.blobs import BlobStore
from app.storage.repository import tenant_blob_keys
from app.storage.vectors import VectorIndex


class DemoStorageCleanup:
    """A demo-cleanup hook; idempotent (missing blobs and points are not errors)."""

    def __init__(self, db: Database, store: BlobStore, index: VectorIndex) -> None:
        self.db = db
        self.store = store
        self.index = index

    async def __call__(self, session: EndedDemoSession) -> None:
        async with self.db.sessionmaker() as db_session:
            keys = await tenant_blob_keys(db_session, session.tenant_id)
        # A failure propagates: the session's rows are kept and the next pass retries.
        for key in keys:
            await self.store.delete(key)
        await self.index.delete_tenant(session.tenant_id)
