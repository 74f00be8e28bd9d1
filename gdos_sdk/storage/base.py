"""The storage protocol every package back end implements.

Keys are ``/``-separated relative paths (``packages/<sha256>.zip``); a back
end rejects anything else. Objects are written whole or not at all: a reader
never sees half an object, and a failed write leaves nothing behind.

Example::

    storage = LocalStorage(Path("data/storage"))
    await storage.put_file("packages/abc.zip", tmp_path)
    async for chunk in storage.iter_bytes("packages/abc.zip"):
        ...
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

from gdos_sdk.display import displayed
from gdos_sdk.errors import ValidationError

__all__ = ["ObjectInfo", "Storage", "check_key"]

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


@displayed
@attrs.frozen
class ObjectInfo:
    """What a back end knows about one stored object."""

    key: str
    size: int
    modified: float


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise ValidationError."""
    parts = key.split("/")
    if not _KEY.match(key) or any(p in {".", ".."} for p in parts):
        raise ValidationError(f"invalid storage key {key!r}")
    return key


@runtime_checkable
class Storage(Protocol):
    """A place to keep packages (and later recordings and backups)."""

    name: str

    async def put_file(self, key: str, source: Path) -> ObjectInfo:
        """Store the file at ``source`` under ``key``, replacing any object there."""
        ...

    async def stat(self, key: str) -> ObjectInfo:
        """Size and time of ``key``; NotFoundError if absent."""
        ...

    def iter_bytes(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """Stream the object's bytes; NotFoundError if absent."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are not an error."""
        ...

    async def list_objects(self, prefix: str = "") -> list[ObjectInfo]:
        """Objects whose key starts with ``prefix``, sorted by key."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A file path for ``key`` when the back end is a local disk, else None."""
        ...

    def presigned_url(self, key: str) -> str | None:
        """A time-limited URL that fetches ``key`` without GDOS credentials, or None.

        None means the back end hands out no such URLs (a local disk, or MinIO
        with ``storage.worker_fetch: master``): clients fetch through the master.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
