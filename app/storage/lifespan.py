"""Opens the blob store and the vector index for the app's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import anyio.to_thread
import boto3
from botocore.config import Config
from fastapi import FastAPI

from app.config import Settings
from app.demo.cleanup import register_cleanup_hook
from app.kit.tasks import supervised
from app.storage.blobs import BlobStore, FileBlobStore, S3BlobStore
from app.storage.cleanup import DemoStorageCleanup
from app.storage.streaming import sweep_staging
from app.storage.sync import purge_tombstones
from app.storage.vectors import VectorIndex


def _s3_client(settings: Settings) -> object:
    return boto3.session.Session().client(
        "s3",
        region_name=settings.S3_REGION,
        endpoint_url=settings.S3_ENDPOINT_URL or None,
        aws_access_key_id=settings.AWS_ACCESS_KEY_ID or None,
        aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY or None,
        config=Config(signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"}),
    )


async def build_blob_store(settings: Settings) -> BlobStore:
    data_dir = Path(settings.DATA_DIR)
    if settings.BLOB_STORE == "s3":
        if not settings.S3_BUCKET:
            raise RuntimeError("BLOB_STORE=s3 needs S3_BUCKET")
        # Creating a boto3 client reads files and builds models: not on the event loop.
        client = await anyio.to_thread.run_sync(_s3_client, settings)
        return S3BlobStore(client, settings.S3_BUCKET, data_dir / "staging")
    return FileBlobStore(data_dir / "blobs")


@asynccontextmanager
async def storage_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    settings.ensure_data_dir()
    blob_store = await build_blob_store(settings)
    await anyio.to_thread.run_sync(sweep_staging, blob_store.staging_dir)
    vector_index = await anyio.to_thread.run_sync(VectorIndex.from_settings, settings)
    app.state.blob_store = blob_store
    app.state.vector_index = vector_index
    register_cleanup_hook(app, DemoStorageCleanup(app.state.db, blob_store, vector_index))
    retention = timedelta(days=settings.SYNC_TOMBSTONE_RETENTION_DAYS)

    async def purge() -> int:
        return await purge_tombstones(app.state.db, retention)

    try:
        # Idempotent, so every worker may run it; it rides the maintenance interval.
        async with supervised(
            "tombstone purge", purge, settings.MAINTENANCE_INTERVAL_SECONDS
        ) as task:
            app.state.tombstone_purge_task = task
            yield
    finally:
        await vector_index.aclose()
        await blob_store.aclose()
