from __future__ import annotations

import uuid
from email.utils import format_datetime
from typing import Annotated

from fastapi import Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from app.auth.dependencies import CurrentPrincipal
from app.backup.dependencies import BackupServiceDep
from app.backup.schemas import BackupHistory, BackupInfo
from app.errors import error_responses
from app.kit.policy import BodyKind, gateway_policy
from app.kit.routing import DomainRouter
from app.kit.timestamps import FORMATS as TIMESTAMP_FORMATS
from app.models import BackupMetadata
from app.storage.conditional import etag_of, none_match
from app.storage.endpoints import (
    RAW_BODY,
    IfNoneMatch,
    bytes_response,
    not_modified,
)
from app.storage.schemas import CHECKSUM_PATTERN
from app.storage.service import Owner

router = DomainRouter(prefix="/backup", tags=["backup"])

BACKUP_HEADERS = (
    "X-Checksum",
    "ETag",
    "Last-Modified",
    "X-Backup-Id",
    "X-Backup-Version",
    "X-Backup-Timestamp",
)


def _headers(backup: BackupMetadata) -> dict[str, str]:
    return {
        "Last-Modified": format_datetime(backup.backup_timestamp, usegmt=True),
        "ETag": etag_of(backup.checksum),
        "X-Checksum": backup.checksum,
        "X-Backup-Id": str(backup.id),
        "X-Backup-Version": backup.version,
        "X-Backup-Timestamp": backup.backup_timestamp.isoformat(),
    }


async def _download(
    service: BackupServiceDep, backup: BackupMetadata, not_modified_now: bool
) -> Response:
    headers = _headers(backup)
    if not_modified_now:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    reader = await service.open(backup)
    headers["Content-Length"] = str(reader.size)
    return StreamingResponse(reader, media_type="application/octet-stream", headers=headers)


@router.put(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BackupInfo,
    summary="Upload an encrypted backup",
    responses=error_responses(400, 401, 402, 413, 422, 503),
    openapi_extra=RAW_BODY,
)
@gateway_policy(body=BodyKind.UPLOAD)
async def put_backup(
    request: Request,
    principal: CurrentPrincipal,
    service: BackupServiceDep,
    x_backup_version: Annotated[str, Header(alias="X-Backup-Version", min_length=1, max_length=64)],
    x_backup_timestamp: Annotated[
        str,
        Header(
            alias="X-Backup-Timestamp",
            min_length=1,
            max_length=64,
            description=f"When the backup was taken: {TIMESTAMP_FORMATS}",
        ),
    ],
    x_backup_checksum: Annotated[str, Header(alias="X-Backup-Checksum", pattern=CHECKSUM_PATTERN)],
) -> BackupInfo:
    """Upload an encrypted backup; its SHA-256 must equal `X-Backup-Checksum`."""
    backup = await service.put(
        Owner.of(principal),
        x_backup_version,
        x_backup_timestamp,
        x_backup_checksum,
        request.headers.get("content-length"),
        request.stream(),
    )
    return BackupInfo.model_validate(backup)


@router.get(
    "",
    response_class=StreamingResponse,
    summary="Download the newest backup",
    responses={
        **bytes_response(BACKUP_HEADERS),
        **not_modified(BACKUP_HEADERS),
        **error_responses(401, 404, 503),
    },
)
async def get_latest_backup(
    principal: CurrentPrincipal,
    service: BackupServiceDep,
    if_modified_since: Annotated[
        str | None,
        Header(
            alias="If-Modified-Since",
            description="HTTP date: 304 while the newest backup is not newer",
        ),
    ] = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The newest backup's bytes, with `Last-Modified` and `X-Checksum`."""
    backup = await service.latest(Owner.of(principal))
    # RFC 9110 §13.2.2: If-None-Match, when present, decides instead of If-Modified-Since.
    current = (
        none_match(if_none_match, etag_of(backup.checksum))
        if if_none_match is not None
        else service.not_modified_since(backup, if_modified_since)
    )
    return await _download(service, backup, current)


@router.get(
    "/history",
    response_model=BackupHistory,
    summary="List the caller's backups, newest first",
    responses=error_responses(401, 422),
)
async def backup_history(
    principal: CurrentPrincipal,
    service: BackupServiceDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> BackupHistory:
    """The caller's backups (metadata), newest first."""
    backups, total = await service.history(Owner.of(principal), page, limit)
    return BackupHistory(
        items=[BackupInfo.model_validate(b) for b in backups], total=total, page=page, limit=limit
    )


@router.get(
    "/{backup_id}",
    response_class=StreamingResponse,
    summary="Download one backup by id, to restore that version",
    responses={
        **bytes_response(BACKUP_HEADERS),
        **not_modified(BACKUP_HEADERS),
        **error_responses(401, 404, 422, 503),
    },
)
async def get_backup(
    backup_id: uuid.UUID,
    principal: CurrentPrincipal,
    service: BackupServiceDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The backup's encrypted bytes as stored, streamed, with its checksum and metadata."""
    backup = await service.get(Owner.of(principal), backup_id)
    return await _download(service, backup, none_match(if_none_match, etag_of(backup.checksum)))


@router.delete(
    "/{backup_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete one backup and its bytes",
    responses=error_responses(401, 404, 422, 503),
)
async def delete_backup(
    backup_id: uuid.UUID, principal: CurrentPrincipal, service: BackupServiceDep
) -> None:
    """Delete one backup and its blob."""
    await service.delete(Owner.of(principal), backup_id)
