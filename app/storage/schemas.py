from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

TABLE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
CHECKSUM_PATTERN = r"^[0-9a-fA-F]{64}$"
# Vector blobs travel inside JSON and live in Qdrant payloads: keep them small.
MAX_VECTOR_BLOB_B64 = 96 * 1024
MAX_VECTOR_ITEMS = 100
MAX_VECTOR_DIMENSION = 4096

TableName = Annotated[str, Field(pattern=TABLE_PATTERN, description="`^[a-z][a-z0-9_]{0,63}$`")]
Checksum = Annotated[str, Field(pattern=CHECKSUM_PATTERN, description="hex SHA-256")]
VectorId = Annotated[str, Field(min_length=1, max_length=128)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class RecordMetadata(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    table: str = Field(validation_alias="table_name")
    checksum: str
    size_bytes: int
    created_at: datetime
    updated_at: datetime


class RecordPage(BaseModel):
    items: list[RecordMetadata]
    total: int
    page: int
    limit: int


class RecordChange(BaseModel):
    """One entry of the change feed: a record as it is now, or the fact it was deleted."""

    id: uuid.UUID
    table: str
    deleted: bool = Field(description="True for a deletion (a tombstone: id and table only)")
    changed_at: datetime = Field(description="When the record was last written or deleted")
    checksum: str | None = Field(
        description="hex SHA-256 of the current bytes (their `ETag`, unquoted); null if deleted"
    )
    size_bytes: int | None = Field(description="Size of the current bytes; null if deleted")
    created_at: datetime | None = Field(description="When the record was created; null if deleted")


class RecordChanges(BaseModel):
    """A page of the change feed, oldest change first."""

    changes: list[RecordChange]
    next_cursor: str = Field(
        description="Opaque; send it as `cursor` for the next page, or to resume later"
    )
    has_more: bool = Field(description="True if more changes follow at once: read on")


class VectorItem(BaseModel):
    id: VectorId
    blob: str = Field(max_length=MAX_VECTOR_BLOB_B64, description="base64 of the encrypted bytes")
    checksum: Checksum
    vector: list[FiniteFloat] | None = Field(default=None, max_length=MAX_VECTOR_DIMENSION)


class VectorUpsertRequest(BaseModel):
    items: list[VectorItem] = Field(min_length=1, max_length=MAX_VECTOR_ITEMS)


class VectorUpsertResult(BaseModel):
    upserted: int
    ids: list[str]


class VectorSearchRequest(BaseModel):
    vector: list[FiniteFloat] | None = Field(default=None, max_length=MAX_VECTOR_DIMENSION)
    blob: str | None = Field(default=None, max_length=MAX_VECTOR_BLOB_B64)
    top_k: int = Field(default=10, ge=1, le=100)

    @model_validator(mode="after")
    def _one_query(self) -> VectorSearchRequest:
        if (self.vector is None) == (self.blob is None):
            raise ValueError("give exactly one of `vector` or `blob`")
        return self


class VectorHitOut(BaseModel):
    id: str
    score: float
    blob: str
    checksum: str


class VectorSearchResult(BaseModel):
    results: list[VectorHitOut]


class VectorDeleteRequest(BaseModel):
    ids: list[VectorId] = Field(min_length=1, max_length=MAX_VECTOR_ITEMS)


class VectorDeleteResult(BaseModel):
    deleted: int
