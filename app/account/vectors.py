"""The user's points in the vector index, across tenants: read page by page, or deleted."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from qdrant_client import models

from app.storage.vectors import VectorIndex

PAGE = 256


def _of_user(user_id: uuid.UUID) -> models.Filter:
    return models.Filter(
        must=[models.FieldCondition(key="user_id", match=models.MatchValue(value=str(user_id)))]
    )


async def user_points(index: VectorIndex, user_id: uuid.UUID) -> AsyncIterator[dict[str, Any]]:
    """Every point of the user, payload (the encrypted blob as stored) and vector."""
    await index._ensure_collection()
    offset: Any = None
    while True:
        points, offset = await index._run(
            index.client.scroll,
            index.collection,
            scroll_filter=_of_user(user_id),
            limit=PAGE,
            offset=offset,
            with_payload=True,
            with_vectors=True,
        )
        for point in points:
            yield {"point_id": str(point.id), "payload": point.payload, "vector": point.vector}
        if offset is None:
            return


async def count_user_points(index: VectorIndex, user_id: uuid.UUID) -> int:
    await index._ensure_collection()
    found = await index._run(
        index.client.count, index.collection, count_filter=_of_user(user_id), exact=True
    )
    return int(found.count)


async def delete_user_points(index: VectorIndex, user_id: uuid.UUID) -> None:
    await index._ensure_collection()
    await index._run(
        index.client.delete,
        index.collection,
        points_selector=models.FilterSelector(filter=_of_user(user_id)),
        wait=True,
    )
