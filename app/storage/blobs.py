"""Blob stores: opaque encrypted bytes by key, on the local filesystem or in S3.

Uploads are first spooled to a staging file (hashed and size-checked while
streaming), then handed to the store with `put_file`; nothing reaches a key
before its checksum has been verified. Every blocking call runs in a worker
thread.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

READ_CHUNK_BYTES = 1024 * 1024
# Multipart parts are held in memory while in flight: 4 parts of 8 MiB at most per upload.
S3_TRANSFER = TransferConfig(
    multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024, max_concurrency=4
)
# Keys are built by the server from UUIDs and validated table names only.
_KEY_PATTERN = re.compile(r"^[0-9a-f-]{36}(/[A-Za-z0-9_.-]{1,100}){1,3}$")


class BlobStoreError(Exception):
    """The backend failed (disk, network, credentials); the caller reports 503."""


class BlobNotFound(BlobStoreError):
    pass


def check_key(key: str) -> str:
    if not _KEY_PATTERN.fullmatch(key) or ".." in key:
        raise ValueError(f"invalid blob key {key!r}")
    return key


class BlobReader(Protocol):
    size: int

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class BlobStore(Protocol):
    # Where uploads are spooled before `put_file` (same filesystem as the blobs for
    # the file backend, so storing is a rename).
    staging_dir: Path

    async def put_file(self, key: str, path: Path) -> None:
        """Store the file's bytes under `key` (atomically); may consume `path`."""

    async def open(self, key: str) -> BlobReader:
        """A reader over the blob's bytes; `BlobNotFound` if there is none."""

    async def delete(self, key: str) -> None:
        """Remove the blob; removing a missing blob is not an error."""

    async def exists(self, key: str) -> bool: ...

    async def aclose(self) -> None: ...


def new_staging_path(staging_dir: Path) -> Path:
    return staging_dir / f"upload-{uuid.uuid4().hex}.part"


# --- local filesystem ----------------------------------------------------------------


class _FileReader:
    def __init__(self, handle: Any, size: int) -> None:
        self._handle = handle
        self.size = size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while True:
                chunk = await anyio.to_thread.run_sync(self._handle.read, READ_CHUNK_BYTES)
                if not chunk:
                    return
                yield chunk
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if not self._handle.closed:
            await anyio.to_thread.run_sync(self._handle.close)


class FileBlobStore:
    """Blobs as files under `root`; a write is a rename, so readers never see half a blob."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.staging_dir = self.root / ".staging"
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root) or path.is_relative_to(self.staging_dir):
            raise ValueError(f"invalid blob key {key!r}")
        return path

    def _put(self, key: str, source: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.parent != self.staging_dir:
            # Not on our filesystem: copy into staging first so the final step is a rename.
            staged = new_staging_path(self.staging_dir)
            with source.open("rb") as src, staged.open("wb") as dst:
                while chunk := src.read(READ_CHUNK_BYTES):
                    dst.write(chunk)
            source = staged
        try:
            with source.open("rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(source, target)
            directory = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except BaseException:
            source.unlink(missing_ok=True)
            raise

    async def put_file(self, key: str, path: Path) -> None:
        try:
            await anyio.to_thread.run_sync(self._put, key, path)
        except OSError as exc:
            raise BlobStoreError(f"file store write failed: {exc.strerror or exc}") from exc

    def _open(self, key: str) -> _FileReader:
        handle = self._path(key).open("rb")
        return _FileReader(handle, os.fstat(handle.fileno()).st_size)

    async def open(self, key: str) -> BlobReader:
        try:
            return await anyio.to_thread.run_sync(self._open, key)
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
        except OSError as exc:
            raise BlobStoreError(f"file store read failed: {exc.strerror or exc}") from exc

    def _delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Drop directories left empty, up to the root.
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break

    async def delete(self, key: str) -> None:
        try:
            await anyio.to_thread.run_sync(self._delete, key)
        except OSError as exc:
            raise BlobStoreError(f"file store delete failed: {exc.strerror or exc}") from exc

    async def exists(self, key: str) -> bool:
        return await anyio.to_thread.run_sync(self._path(key).is_file)

    def keys(self) -> list[str]:
        """Every stored key (tests and operators use it to look for orphans)."""
        return sorted(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if p.is_file() and not p.is_relative_to(self.staging_dir)
        )

    async def aclose(self) -> None:
        return None


# --- S3 -------------------------------------------------------------------------------


def _s3_error(exc: Exception, action: str) -> BlobStoreError:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"NoSuchKey", "404", "NotFound"}:
            return BlobNotFound(action)
        return BlobStoreError(f"S3 {action} failed ({code or 'error'})")
    return BlobStoreError(f"S3 {action} failed ({type(exc).__name__})")


class _S3Reader:
    def __init__(self, body: Any, size: int) -> None:
        self._body = body
        self.size = size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    chunk = await anyio.to_thread.run_sync(self._body.read, READ_CHUNK_BYTES)
                except (BotoCoreError, OSError) as exc:
                    raise _s3_error(exc, "read") from exc
                if not chunk:
                    return
                yield chunk
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._body.close)


class S3BlobStore:
    """Blobs as S3 objects, encrypted at rest with SSE-S3; boto3 runs in worker threads."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        staging_dir: Path,
        transfer_config: TransferConfig = S3_TRANSFER,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.transfer_config = transfer_config
        self.staging_dir = staging_dir
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    async def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            return fn(*args, **kwargs)

        try:
            return await anyio.to_thread.run_sync(run)
        # upload_file wraps failures in boto3's own S3UploadFailedError.
        except (ClientError, BotoCoreError, Boto3Error) as exc:
            raise _s3_error(exc, action) from exc

    async def put_file(self, key: str, path: Path) -> None:
        # upload_file switches to a multipart upload for large files and never loads
        # the whole body into memory.
        await self._call(
            "upload",
            self.client.upload_file,
            str(path),
            self.bucket,
            check_key(key),
            ExtraArgs={"ServerSideEncryption": "AES256"},
            Config=self.transfer_config,
        )

    async def open(self, key: str) -> BlobReader:
        response = await self._call(
            "download", self.client.get_object, Bucket=self.bucket, Key=check_key(key)
        )
        return _S3Reader(response["Body"], int(response["ContentLength"]))

    async def delete(self, key: str) -> None:
        await self._call(
            "delete", self.client.delete_object, Bucket=self.bucket, Key=check_key(key)
        )

    async def exists(self, key: str) -> bool:
        try:
            await self._call(
                "head", self.client.head_object, Bucket=self.bucket, Key=check_key(key)
            )
        except BlobNotFound:
            return False
        return True

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.client.close)
