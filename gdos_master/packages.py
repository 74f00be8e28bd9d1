"""Packages: streaming upload with a size limit, validation, versions, deletion.

An upload is streamed to a temporary file while its SHA-256 is computed and
its size counted; the archive is then inspected (zip-slip, links, bombs,
``service.json``) before anything is stored. Only after the object is in
storage is the row inserted; if the insert fails the object is removed. So a
rejected upload leaves no row, no object and no temporary file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import AsyncIterable, Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio.to_thread

from gdos_master.db import Database, Row
from gdos_sdk.archive import ArchiveLimits, inspect_archive
from gdos_sdk.errors import ConflictError, NotFoundError, TooLargeError, ValidationError
from gdos_sdk.filemodes import private_dir
from gdos_sdk.manifest import Manifest
from gdos_sdk.models import Package, PackageSummary
from gdos_sdk.storage import Storage
from gdos_sdk.versions import sort_versions

__all__ = ["Packages", "package_key"]


def package_key(sha256: str) -> str:
    """Storage key of a package: content-addressed, so workers cache by digest."""
    return f"packages/{sha256}.zip"


class Packages:
    """Package records in SQLite, bytes in a storage back end."""

    def __init__(self, db: Database, storage: Storage, *, max_bytes: int, tmp_dir: Path) -> None:
        self.db = db
        self.storage = storage
        self.max_bytes = max_bytes
        self.tmp_dir = tmp_dir
        self.limits = ArchiveLimits()

    def _model(self, row: Row) -> Package:
        return Package(
            name=row["name"],
            version=row["version"],
            sha256=row["sha256"],
            size=row["size"],
            uploaded_at=datetime.fromtimestamp(row["uploaded_at"], UTC),
            uploaded_by=row["uploaded_by"],
            description=row["description"],
            manifest=json.loads(row["manifest"]),
        )

    def _too_large(self) -> TooLargeError:
        return TooLargeError(
            f"package is larger than the limit of {self.max_bytes} bytes",
            details={"limit": self.max_bytes},
        )

    async def upload(
        self,
        chunks: AsyncIterable[bytes],
        *,
        content_length: int | None,
        force: bool,
        uploaded_by: str,
        on_replace: Callable[[Manifest], None] | None = None,
    ) -> tuple[Package, bool]:
        """Store an uploaded zip; return (package, created). Same bytes again is a no-op.

        ``on_replace`` sees the new manifest before ``force`` replaces an existing
        version with other bytes, and may refuse by raising (the role check).
        """
        if content_length is not None and content_length > self.max_bytes:
            raise self._too_large()
        private_dir(self.tmp_dir)
        fd, tmp_name = tempfile.mkstemp(prefix="upload-", suffix=".zip", dir=self.tmp_dir)
        tmp = Path(tmp_name)
        out = os.fdopen(fd, "wb")
        try:
            digest = hashlib.sha256()
            size = 0
            with out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large()
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise ValidationError("the upload is empty; send the zip file as the body")
            sha256 = digest.hexdigest()
            info = await anyio.to_thread.run_sync(inspect_archive, tmp, self.limits)
            manifest = info.manifest
            existing = self.db.one(
                "SELECT * FROM packages WHERE name = ? AND version = ?",
                (manifest.name, manifest.version),
            )
            if existing is not None and existing["sha256"] == sha256:
                return self._model(existing), False
            if existing is not None and not force:
                raise ConflictError(
                    f"{manifest.name}@{manifest.version} already exists with different content;"
                    " bump the version or upload with force=true",
                    details={"sha256": existing["sha256"]},
                )
            if existing is not None and on_replace is not None:
                on_replace(manifest)
            key = package_key(sha256)
            await self.storage.put_file(key, tmp)
            try:
                with self.db.transaction():
                    self.db.execute(
                        "INSERT INTO packages(name, version, sha256, size, description, manifest,"
                        " storage_key, uploaded_by, uploaded_at) VALUES(?,?,?,?,?,?,?,?,?)"
                        " ON CONFLICT(name, version) DO UPDATE SET sha256 = excluded.sha256,"
                        " size = excluded.size, description = excluded.description,"
                        " manifest = excluded.manifest, storage_key = excluded.storage_key,"
                        " uploaded_by = excluded.uploaded_by, uploaded_at = excluded.uploaded_at",
                        (
                            manifest.name,
                            manifest.version,
                            sha256,
                            size,
                            manifest.description,
                            json.dumps(manifest.to_dict()),
                            key,
                            uploaded_by,
                            time.time(),
                        ),
                    )
            except BaseException:
                await self._drop_object_if_unused(key)
                raise
            if existing is not None:
                await self._drop_object_if_unused(existing["storage_key"])
            return self.get(manifest.name, manifest.version), True
        finally:
            out.close()
            tmp.unlink(missing_ok=True)

    async def _drop_object_if_unused(self, key: str) -> None:
        if not self.db.scalar("SELECT 1 FROM packages WHERE storage_key = ?", (key,)):
            await self.storage.delete(key)

    def summaries(self, search: str | None = None) -> list[PackageSummary]:
        rows = self.db.all("SELECT name, version, description FROM packages ORDER BY name")
        by_name: dict[str, list[Row]] = {}
        for row in rows:
            by_name.setdefault(row["name"], []).append(row)
        summaries: list[PackageSummary] = []
        for name, group in by_name.items():
            if search and search.lower() not in name.lower():
                continue
            versions = sort_versions([r["version"] for r in group], newest_first=True)
            latest_row = next(r for r in group if r["version"] == versions[0])
            summaries.append(
                PackageSummary(
                    name=name,
                    latest=versions[0],
                    versions=versions,
                    description=latest_row["description"],
                )
            )
        return summaries

    def versions(self, name: str) -> list[Package]:
        rows = self.db.all("SELECT * FROM packages WHERE name = ?", (name,))
        if not rows:
            raise NotFoundError(f"no package named {name!r}")
        order = {
            v: i
            for i, v in enumerate(sort_versions([r["version"] for r in rows], newest_first=True))
        }
        return sorted((self._model(r) for r in rows), key=lambda p: order[p.version])

    def get(self, name: str, version: str) -> Package:
        row = self.db.one("SELECT * FROM packages WHERE name = ? AND version = ?", (name, version))
        if row is None:
            raise NotFoundError(f"no package {name}@{version}")
        return self._model(row)

    def storage_key(self, name: str, version: str) -> str:
        self.get(name, version)
        return str(
            self.db.scalar(
                "SELECT storage_key FROM packages WHERE name = ? AND version = ?", (name, version)
            )
        )

    def by_sha256(self, sha256: str) -> Package:
        row = self.db.one("SELECT * FROM packages WHERE sha256 = ? LIMIT 1", (sha256,))
        if row is None:
            raise NotFoundError(f"no package with sha256 {sha256}")
        return self._model(row)

    def users(self, name: str, version: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """The modules whose version it is and the instances that run or should run it."""
        modules = [
            {"id": r["id"], "name": f"{r['system']}/{r['name']}"}
            for r in self.db.all(
                "SELECT m.id, m.name, s.name AS system FROM modules m"
                " JOIN systems s ON s.id = m.system_id"
                " WHERE m.package = ? AND m.version = ? ORDER BY s.name, m.name",
                (name, version),
            )
        ]
        instances = [
            {"id": r["id"], "node_id": r["node_id"], "version": r["version"]}
            for r in self.db.all(
                "SELECT id, node_id, version FROM instances WHERE package = ?"
                " AND (version = ? OR desired_version = ?) ORDER BY created_at",
                (name, version, version),
            )
        ]
        return modules, instances

    async def delete(self, name: str, version: str) -> None:
        """Delete one version unless a module or an instance still uses it.

        Raises:
            ConflictError: it is in use; the message names the modules and instances
                (``details`` lists them all). An instance uses it while it runs it or
                should (a rollout moving it there, or back).
        """
        self.get(name, version)
        modules, instances = self.users(name, version)
        if modules or instances:
            named = [f"module {m['name']}" for m in modules[:5]] + [
                f"instance {i['id']}" + (" (runs it)" if i["version"] == version else "")
                for i in instances[:5]
            ]
            more = len(modules) + len(instances) - len(named)
            raise ConflictError(
                f"{name}@{version} is in use by {', '.join(named)}"
                + (f" and {more} more" if more > 0 else "")
                + "; move them to another version first (a rollout) or destroy them",
                details={"modules": modules, "instances": instances},
            )
        key = self.storage_key(name, version)
        self.db.execute("DELETE FROM packages WHERE name = ? AND version = ?", (name, version))
        await self._drop_object_if_unused(key)
