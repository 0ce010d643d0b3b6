"""Vectors in Qdrant: embedded local mode by default, a Qdrant server when `QDRANT_URL` is set.

The sync `QdrantClient` runs in worker threads. In local mode the client keeps
its state in one process (and locks its directory), so calls go through a
limiter of one; deployments with several workers must use a Qdrant server.

Every point carries the caller's user and tenant in its payload; its Qdrant id
is derived from (user, tenant, client id), so two users' ids never collide, and
every search and delete filters on the owner.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from app.config import Settings

log = logging.getLogger(__name__)

_POINT_NAMESPACE = uuid.UUID("5d0c7f52-6a43-4c1b-9b0e-2f1c1a9e7d31")


class VectorStoreError(Exception):
    """Qdrant is unreachable or refused the call; the caller reports 503."""


def hash_vector(blob: bytes, dimension: int) -> list[float]:
    """A deterministic vector from SHA-256 of the (encrypted) bytes, components in [-1, 1].

    With the default dimension (32) it is exactly the 32 digest bytes; a larger
    dimension chains SHA-256 over (digest, counter). It finds identical blobs only:
    the server never sees plaintext, so it cannot embed meaning.
    """
    digest = hashlib.sha256(blob).digest()
    stream = bytearray(digest)
    counter = 1
    while len(stream) < dimension:
        stream += hashlib.sha256(digest + counter.to_bytes(4, "big")).digest()
        counter += 1
    return [byte / 127.5 - 1.0 for byte in stream[:dimension]]


def point_id(user_id: uuid.UUID, tenant_id: uuid.UUID, client_id: str) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{user_id}:{tenant_id}:{client_id}"))


def owner_filter(
    user_id: uuid.UUID, tenant_id: uuid.UUID, client_ids: list[str] | None = None
) -> models.Filter:
    must: list[Any] = [
        models.FieldCondition(key="user_id", match=models.MatchValue(value=str(user_id))),
        models.FieldCondition(key="tenant_id", match=models.MatchValue(value=str(tenant_id))),
    ]
    if client_ids is not None:
        must.append(models.FieldCondition(key="id", match=models.MatchAny(any=client_ids)))
    return models.Filter(must=must)


@dataclass(frozen=True, slots=True)
class VectorPoint:
    client_id: str
    vector: list[float]
    blob_b64: str
    checksum: str


@dataclass(frozen=True, slots=True)
class VectorHit:
    client_id: str
    score: float
    blob_b64: str
    checksum: str


class VectorIndex:
    def __init__(self, client: QdrantClient, collection: str, dimension: int, local: bool):
        self.client = client
        self.collection = collection
        self.dimension = dimension
        self.local = local
        self._limiter = anyio.CapacityLimiter(1 if local else 16)
        self._ready = False
        self._ready_lock = anyio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> VectorIndex:
        if settings.QDRANT_URL:
            client = QdrantClient(
                url=settings.QDRANT_URL, api_key=settings.QDRANT_API_KEY or None, timeout=10
            )
            return cls(client, settings.QDRANT_COLLECTION, settings.VECTOR_DIMENSION, False)
        path = Path(settings.DATA_DIR) / "qdrant"
        path.mkdir(parents=True, exist_ok=True)
        client = QdrantClient(path=str(path), force_disable_check_same_thread=True)
        return cls(client, settings.QDRANT_COLLECTION, settings.VECTOR_DIMENSION, True)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        def call() -> Any:
            return fn(*args, **kwargs)

        try:
            return await anyio.to_thread.run_sync(call, limiter=self._limiter)
        except (UnexpectedResponse, ResponseHandlingException, OSError) as exc:
            raise VectorStoreError(f"Qdrant call failed ({type(exc).__name__})") from exc

    async def _ensure_collection(self) -> None:
        # Created on first use, not at start-up, so the app starts while Qdrant is away.
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            if await self._run(self.client.collection_exists, self.collection):
                info = await self._run(self.client.get_collection, self.collection)
                size = info.config.params.vectors.size
                if size != self.dimension:
                    raise VectorStoreError(
                        f"collection {self.collection!r} has dimension {size}, "
                        f"VECTOR_DIMENSION is {self.dimension}"
                    )
            else:
                await self._run(
                    self.client.create_collection,
                    self.collection,
                    vectors_config=models.VectorParams(
                        size=self.dimension, distance=models.Distance.COSINE
                    ),
                )
                if not self.local:
                    for field in ("user_id", "tenant_id"):
                        await self._run(
                            self.client.create_payload_index,
                            self.collection,
                            field_name=field,
                            field_schema=models.PayloadSchemaType.KEYWORD,
                        )
            self._ready = True

    async def upsert(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, points: list[VectorPoint]
    ) -> None:
        await self._ensure_collection()
        structs = [
            models.PointStruct(
                id=point_id(user_id, tenant_id, p.client_id),
                vector=p.vector,
                payload={
                    "user_id": str(user_id),
                    "tenant_id": str(tenant_id),
                    "id": p.client_id,
                    "blob": p.blob_b64,
                    "checksum": p.checksum,
                },
            )
            for p in points
        ]
        await self._run(self.client.upsert, self.collection, points=structs, wait=True)

    async def search(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, vector: list[float], top_k: int
    ) -> list[VectorHit]:
        await self._ensure_collection()
        response = await self._run(
            self.client.query_points,
            self.collection,
            query=vector,
            query_filter=owner_filter(user_id, tenant_id),
            limit=top_k,
            with_payload=True,
        )
        return [
            VectorHit(
                client_id=str(point.payload["id"]),
                score=float(point.score),
                blob_b64=str(point.payload["blob"]),
                checksum=str(point.payload["checksum"]),
            )
            for point in response.points
            if point.payload is not None
        ]

    async def delete(self, user_id: uuid.UUID, tenant_id: uuid.UUID, client_ids: list[str]) -> int:
        """Delete the caller's points among `client_ids`; how many existed."""
        await self._ensure_collection()
        selector = owner_filter(user_id, tenant_id, client_ids)
        found = await self._run(
            self.client.count, self.collection, count_filter=selector, exact=True
        )
        await self._run(
            self.client.delete,
            self.collection,
            points_selector=models.FilterSelector(filter=selector),
            wait=True,
        )
        return int(found.count)

    async def delete_tenant(self, tenant_id: uuid.UUID) -> None:
        """Every point of one tenant (the clean-up of ended demo sessions uses it)."""
        await self._ensure_collection()
        tenant = models.FieldCondition(
            key="tenant_id", match=models.MatchValue(value=str(tenant_id))
        )
        await self._run(
            self.client.delete,
            self.collection,
            points_selector=models.FilterSelector(filter=models.Filter(must=[tenant])),
            wait=True,
        )

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.client.close, limiter=self._limiter)
