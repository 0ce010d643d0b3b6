from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.billing.dependencies import TiersDep
from app.db import DatabaseDep, SessionDep
from app.kit.deps import SettingsDep
from app.storage.blobs import BlobStore
from app.storage.service import RecordService, VectorService
from app.storage.vectors import VectorIndex


async def get_blob_store(request: Request) -> BlobStore:
    return request.app.state.blob_store


async def get_vector_index(request: Request) -> VectorIndex:
    return request.app.state.vector_index


BlobStoreDep = Annotated[BlobStore, Depends(get_blob_store)]
VectorIndexDep = Annotated[VectorIndex, Depends(get_vector_index)]


async def get_record_service(
    session: SessionDep,
    db: DatabaseDep,
    store: BlobStoreDep,
    tiers: TiersDep,
    settings: SettingsDep,
) -> RecordService:
    return RecordService(session, db, store, tiers, settings)


async def get_vector_service(index: VectorIndexDep, tiers: TiersDep) -> VectorService:
    return VectorService(index, tiers)


RecordServiceDep = Annotated[RecordService, Depends(get_record_service)]
VectorServiceDep = Annotated[VectorService, Depends(get_vector_service)]
