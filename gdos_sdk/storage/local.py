"""Package storage on the local file system.

Writes go to a temporary file in the same folder, are flushed to disk, then
renamed over the key: a crash leaves either the old object or the new one,
never half of one. Blocking file work runs in a worker thread so the event
loop keeps serving heartbeats while a large package is stored.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread

from gdos_sdk.errors import NotFoundError, StorageError
from gdos_sdk.filemodes import private_dir
from gdos_sdk.storage.base import ObjectInfo, check_key

__all__ = ["LocalStorage"]


class LocalStorage:
    """Objects as files under ``root``.

    Example::

        storage = LocalStorage(Path("/var/lib/gdos/storage"))
        info = await storage.put_file("packages/x.zip", Path("/tmp/upload"))
    """

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = private_dir(Path(root))

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def presigned_url(self, key: str) -> str | None:
        return None  # a local disk has no URL of its own: clients go through the master

    def _put(self, key: str, source: Path) -> ObjectInfo:
        target = self._path(key)
        if not target.parent.is_dir():
            private_dir(target.parent)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, target)
        except OSError as exc:
            Path(tmp_name).unlink(missing_ok=True)
            raise StorageError(f"cannot store {key}: {exc.strerror or exc}") from exc
        return self._stat(key)

    async def put_file(self, key: str, source: Path) -> ObjectInfo:
        return await anyio.to_thread.run_sync(self._put, key, source)

    def _stat(self, key: str) -> ObjectInfo:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            raise NotFoundError(f"no stored object {key!r}") from None
        except OSError as exc:
            raise StorageError(f"cannot stat {key}: {exc.strerror or exc}") from exc
        return ObjectInfo(key=key, size=st.st_size, modified=st.st_mtime)

    async def stat(self, key: str) -> ObjectInfo:
        return self._stat(key)

    async def iter_bytes(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed in finally, across awaits
        except FileNotFoundError:
            raise NotFoundError(f"no stored object {key!r}") from None
        try:
            while True:
                chunk = await anyio.to_thread.run_sync(handle.read, chunk_size)
                if not chunk:
                    break
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc.strerror or exc}") from exc

    async def list_objects(self, prefix: str = "") -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        for path in sorted(self.root.rglob("*")):
            if not path.is_file() or path.name.startswith(".tmp-"):
                continue
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                st = path.stat()
                found.append(ObjectInfo(key=key, size=st.st_size, modified=st.st_mtime))
        return found

    async def close(self) -> None:
        return None
