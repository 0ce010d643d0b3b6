from __future__ import annotations

import uuid
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from app.auth.dependencies import CurrentPrincipal
from app.errors import ErrorBody, Unprocessable, error_responses
from app.kit.openapi import header_refs
from app.kit.policy import BodyKind, gateway_policy
from app.kit.routing import DomainRouter
from app.kit.timestamps import FORMATS as TIMESTAMP_FORMATS
from app.kit.timestamps import parse_client_timestamp
from app.models import StorageRecord
from app.storage.conditional import etag_of, match_checksums, none_match
from app.storage.dependencies import RecordServiceDep, VectorServiceDep
from app.storage.schemas import (
    CHECKSUM_PATTERN,
    TABLE_PATTERN,
    RecordChange,
    RecordChanges,
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
from app.storage.sync import DEFAULT_PAGE, MAX_PAGE

router = DomainRouter(prefix="/storage", tags=["storage"])

RAW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The encrypted bytes, as they are to be stored.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


RECORD_HEADERS = ("X-Checksum", "ETag", "X-Table", "Last-Modified")


def precondition_failed_response() -> dict[int | str, dict[str, Any]]:
    return {
        412: {
            "model": ErrorBody,
            "description": "`If-Match` names another version; `ETag` is the current one",
            "headers": header_refs("ETag"),
        }
    }


def bytes_response(headers: tuple[str, ...]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": "The stored (encrypted) bytes, streamed as they are stored.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "headers": header_refs(*headers, "Content-Length"),
        }
    }


def not_modified(headers: tuple[str, ...]) -> dict[int | str, dict[str, Any]]:
    return {
        304: {"description": "`If-None-Match` matched: no body.", "headers": header_refs(*headers)}
    }


IfNoneMatch = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        description="An `ETag` the client holds: 304 without a body while it is current",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="The `ETag` the change is based on: 412 if the record holds another version",
    ),
]

TableHeader = Annotated[str, Header(alias="X-Table", pattern=TABLE_PATTERN)]
ChecksumHeader = Annotated[
    str, Header(alias="X-Checksum", pattern=CHECKSUM_PATTERN, description="hex SHA-256 of the body")
]


def record_headers(record: StorageRecord) -> dict[str, str]:
    return {
        "ETag": etag_of(record.checksum),
        "X-Checksum": record.checksum,
        "X-Table": record.table_name,
        "Last-Modified": format_datetime(record.updated_at, usegmt=True),
    }


def metadata_response(code: int, description: str) -> dict[int | str, dict[str, Any]]:
    return {code: {"description": description, "headers": header_refs("ETag")}}


@router.post(
    "/records",
    status_code=status.HTTP_201_CREATED,
    response_model=RecordMetadata,
    summary="Store a new encrypted record",
    responses={
        **metadata_response(201, "Stored; the record's metadata"),
        **error_responses(400, 401, 402, 413, 422, 503),
    },
    openapi_extra=RAW_BODY,
)
@gateway_policy(body=BodyKind.UPLOAD)
async def create_record(
    request: Request,
    response: Response,
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
    response.headers["ETag"] = etag_of(record.checksum)
    return RecordMetadata.model_validate(record)


@router.get(
    "/records",
    response_model=RecordPage,
    summary="List the caller's records, newest first",
    responses=error_responses(401, 422),
)
async def list_records(
    principal: CurrentPrincipal,
    service: RecordServiceDep,
    table: Annotated[str | None, Query(pattern=TABLE_PATTERN)] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    changed_since: Annotated[str | None, Query(include_in_schema=False)] = None,
    cursor: Annotated[str | None, Query(include_in_schema=False)] = None,
) -> RecordPage:
    """The caller's records (metadata only), newest first; for sync, see `/records/changes`."""
    if changed_since is not None or cursor is not None:
        # A sync client must not silently get the plain listing (no deletions, no cursor).
        raise Unprocessable(
            "Changes since a point are read from GET /api/v1/storage/records/changes "
            "(`changed_since`, `cursor`), which also reports deletions.",
            error="use_change_feed",
        )
    records, total = await service.list(Owner.of(principal), table, page, limit)
    return RecordPage(
        items=[RecordMetadata.model_validate(r) for r in records],
        total=total,
        page=page,
        limit=limit,
    )


@router.get(
    "/records/changes",
    response_model=RecordChanges,
    summary="Read the records changed or deleted since a cursor",
    responses=error_responses(401, 410, 422),
)
async def record_changes(
    principal: CurrentPrincipal,
    service: RecordServiceDep,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="`next_cursor` of the previous page; leave out for a full sync",
        ),
    ] = None,
    changed_since: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description=f"Only changes made at or after this time: {TIMESTAMP_FORMATS}",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> RecordChanges:
    """The caller's record changes and deletions in the order they happened, by cursor.

    Page on with `next_cursor` while `has_more`; keep the last `next_cursor` and send
    it next time to get only what changed since. 410 when the cursor is older than the
    tombstone retention: start over without one.
    """
    since = (
        parse_client_timestamp(changed_since, field="changed_since")
        if changed_since is not None
        else None
    )
    page = await service.changes(Owner.of(principal), cursor, since, limit)
    return RecordChanges(
        changes=[
            RecordChange(
                id=c.id,
                table=c.table,
                deleted=c.deleted,
                changed_at=c.changed_at,
                checksum=c.checksum,
                size_bytes=c.size_bytes,
                created_at=c.created_at,
            )
            for c in page.changes
        ],
        next_cursor=page.next_cursor,
        has_more=page.has_more,
    )


@router.get(
    "/records/{record_id}",
    response_class=StreamingResponse,
    summary="Download a record's encrypted bytes",
    responses={
        **bytes_response(RECORD_HEADERS),
        **not_modified(RECORD_HEADERS),
        **error_responses(401, 404, 422, 503),
    },
)
async def get_record(
    record_id: uuid.UUID,
    principal: CurrentPrincipal,
    service: RecordServiceDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The record's encrypted bytes, `ETag`, `X-Checksum`; 304 if `If-None-Match` is current."""
    record = await service.get(Owner.of(principal), record_id)
    headers = record_headers(record)
    if none_match(if_none_match, headers["ETag"]):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    reader = await service.open(record)
    headers["Content-Length"] = str(reader.size)
    return StreamingResponse(reader, media_type="application/octet-stream", headers=headers)


@router.put(
    "/records/{record_id}",
    response_model=RecordMetadata,
    summary="Replace a record's encrypted bytes",
    responses={
        **metadata_response(200, "Replaced; the record's new metadata"),
        **precondition_failed_response(),
        **error_responses(400, 401, 402, 404, 409, 413, 422, 503),
    },
    openapi_extra=RAW_BODY,
)
@gateway_policy(body=BodyKind.UPLOAD)
async def replace_record(
    record_id: uuid.UUID,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    service: RecordServiceDep,
    x_checksum: ChecksumHeader,
    x_table: Annotated[str | None, Header(alias="X-Table", pattern=TABLE_PATTERN)] = None,
    if_match: IfMatch = None,
) -> RecordMetadata:
    """Replace the record's bytes; the old version stays until the new one is stored."""
    record = await service.replace(
        Owner.of(principal),
        record_id,
        x_table,
        x_checksum,
        request.headers.get("content-length"),
        request.stream(),
        if_match=match_checksums(if_match),
    )
    response.headers["ETag"] = etag_of(record.checksum)
    return RecordMetadata.model_validate(record)


@router.delete(
    "/records/{record_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a record and its bytes",
    responses={**precondition_failed_response(), **error_responses(401, 404, 422, 503)},
)
async def delete_record(
    record_id: uuid.UUID,
    principal: CurrentPrincipal,
    service: RecordServiceDep,
    if_match: IfMatch = None,
) -> None:
    """Delete the record and its blob; the change feed reports the deletion."""
    await service.delete(Owner.of(principal), record_id, if_match=match_checksums(if_match))


@router.post(
    "/vectors/upsert",
    response_model=VectorUpsertResult,
    summary="Insert or replace encrypted vectors",
    responses=error_responses(400, 401, 402, 422, 503),
)
async def upsert_vectors(
    body: VectorUpsertRequest, principal: CurrentPrincipal, service: VectorServiceDep
) -> VectorUpsertResult:
    """Insert or replace vectors; without `vector`, one is derived from the blob's SHA-256."""
    ids = await service.upsert(Owner.of(principal), body.items)
    return VectorUpsertResult(upserted=len(ids), ids=ids)


@router.post(
    "/vectors/search",
    response_model=VectorSearchResult,
    summary="Find the caller's nearest vectors",
    responses=error_responses(401, 422, 503),
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
    "/vectors",
    response_model=VectorDeleteResult,
    summary="Delete the caller's vectors by id",
    responses=error_responses(401, 422, 503),
)
async def delete_vectors(
    body: VectorDeleteRequest, principal: CurrentPrincipal, service: VectorServiceDep
) -> VectorDeleteResult:
    """Delete the caller's vectors with these ids; other users' ids are left alone."""
    return VectorDeleteResult(deleted=await service.delete(Owner.of(principal), body.ids))
