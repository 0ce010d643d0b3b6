from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from app.auth.dependencies import CurrentPrincipal
from app.errors import error_responses
from app.kit.openapi import header_refs
from app.kit.policy import BodyKind, gateway_policy
from app.kit.routing import DomainRouter
from app.storage.dependencies import RecordServiceDep, VectorServiceDep
from app.storage.schemas import (
    CHECKSUM_PATTERN,
    TABLE_PATTERN,
    RecordMetadata,
    RecordPage,
    VectorDeleteRequest,
    VectorDeleteResult,
    VectorHitOut,
    VectorSearchRequest,
    VectorSearchResult,
    VectorUpsertRequest,
    VectorUpsertResult,
)
from app.storage.service import Owner

router = DomainRouter(prefix="/storage", tags=["storage"])

RAW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The encrypted bytes, as they are to be stored.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
BYTES_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The stored bytes; `X-Checksum` carries their SHA-256.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "headers": header_refs("X-Checksum", "X-Table"),
    }
}

TableHeader = Annotated[str, Header(alias="X-Table", pattern=TABLE_PATTERN)]
ChecksumHeader = Annotated[
    str, Header(alias="X-Checksum", pattern=CHECKSUM_PATTERN, description="hex SHA-256 of the body")
]


@router.post(
    "/records",
    status_code=status.HTTP_201_CREATED,
    response_model=RecordMetadata,
    responses=error_responses(400, 401, 402, 413, 422, 503),
    openapi_extra=RAW_BODY,
)
@gateway_policy(body=BodyKind.UPLOAD)
async def create_record(
    request: Request,
    principal: CurrentPrincipal,
    service: RecordServiceDep,
    x_table: TableHeader,
    x_checksum: ChecksumHeader,
) -> RecordMetadata:
    """Store an encrypted record; the body's SHA-256 must equal `X-Checksum`."""
    record = await service.create(
        Owner.of(principal),
        x_table,
        x_checksum,
        request.headers.get("content-length"),
        request.stream(),
    )
    return RecordMetadata.model_validate(record)


@router.get("/records", response_model=RecordPage, responses=error_responses(401, 422))
async def list_records(
    principal: CurrentPrincipal,
    service: RecordServiceDep,
    table: Annotated[str | None, Query(pattern=TABLE_PATTERN)] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> RecordPage:
    """The caller's records (metadata only), newest first."""
    records, total = await service.list(Owner.of(principal), table, page, limit)
    return RecordPage(
        items=[RecordMetadata.model_validate(r) for r in records],
        total=total,
        page=page,
        limit=limit,
    )


@router.get(
    "/records/{record_id}",
    response_class=StreamingResponse,
    responses={**BYTES_RESPONSE, **error_responses(401, 404, 422, 503)},
)
async def get_record(
    record_id: uuid.UUID, principal: CurrentPrincipal, service: RecordServiceDep
) -> StreamingResponse:
    """The record's encrypted bytes, with `X-Checksum`."""
    record, reader = await service.open(Owner.of(principal), record_id)
    return StreamingResponse(
        reader,
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(reader.size),
            "X-Checksum": record.checksum,
            "X-Table": record.table_name,
        },
    )


@router.put(
    "/records/{record_id}",
    response_model=RecordMetadata,
    responses=error_responses(400, 401, 402, 404, 409, 413, 422, 503),
    openapi_extra=RAW_BODY,
)
@gateway_policy(body=BodyKind.UPLOAD)
async def replace_record(
    record_id: uuid.UUID,
    request: Request,
    principal: CurrentPrincipal,
    service: RecordServiceDep,
    x_checksum: ChecksumHeader,
    x_table: Annotated[str | None, Header(alias="X-Table", pattern=TABLE_PATTERN)] = None,
) -> RecordMetadata:
    """Replace the record's bytes; the old version stays until the new one is stored."""
    record = await service.replace(
        Owner.of(principal),
        record_id,
        x_table,
        x_checksum,
        request.headers.get("content-length"),
        request.stream(),
    )
    return RecordMetadata.model_validate(record)


@router.delete(
    "/records/{record_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(401, 404, 422, 503),
)
async def delete_record(
    record_id: uuid.UUID, principal: CurrentPrincipal, service: RecordServiceDep
) -> None:
    """Delete the record and its blob."""
    await service.delete(Owner.of(principal), record_id)


@router.post(
    "/vectors/upsert",
    response_model=VectorUpsertResult,
    responses=error_responses(400, 401, 402, 422, 503),
)
async def upsert_vectors(
    body: VectorUpsertRequest, principal: CurrentPrincipal, service: VectorServiceDep
) -> VectorUpsertResult:
    """Insert or replace vectors; without `vector`, one is derived from the blob's SHA-256."""
    ids = await service.upsert(Owner.of(principal), body.items)
    return VectorUpsertResult(upserted=len(ids), ids=ids)


@router.post(
    "/vectors/search", response_model=VectorSearchResult, responses=error_responses(401, 422, 503)
)
async def search_vectors(
    body: VectorSearchRequest, principal: CurrentPrincipal, service: VectorServiceDep
) -> VectorSearchResult:
    """The caller's nearest vectors to `vector` (or to `blob`'s hash vector), best first."""
    hits = await service.search(Owner.of(principal), body)
    return VectorSearchResult(
        results=[
            VectorHitOut(id=h.client_id, score=h.score, blob=h.blob_b64, checksum=h.checksum)
            for h in hits
        ]
    )


@router.delete(
    "/vectors", response_model=VectorDeleteResult, responses=error_responses(401, 422, 503)
)
async def delete_vectors(
    body: VectorDeleteRequest, principal: CurrentPrincipal, service: VectorServiceDep
) -> VectorDeleteResult:
    """Delete the caller's vectors with these ids; other users' ids are left alone."""
    return VectorDeleteResult(deleted=await service.delete(Owner.of(principal), body.ids))
