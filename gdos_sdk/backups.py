"""Backup archives: their models, their file format, and the checks that reject bad ones.

A backup is one ``.tar.gz`` archive::

    ops.db                      an online SQLite snapshot (the backup API, never a file copy)
    objects/packages/<sha>.zip  with packages: every stored package, by its storage key
    objects/recordings/...      with packages: terminal recordings, if any
    manifest.json               last: format, version, times, and the sha256 of every member

The manifest comes last so the archive is written in one pass; a reader has to read
everything anyway, because every member is checked against its digest before anything is
restored. :func:`extract_archive` refuses a file that is not a tar.gz, is cut short, holds
anything but the members above (links, devices, ``..``, absolute paths), lacks a manifest,
comes from another program or a newer format, or whose members do not match their digests:
each with a :class:`~gdos_sdk.errors.BackupError` that names the problem.

This module does blocking file I/O only; the master runs it in a worker thread.

Example::

    members = [Member.of("ops.db", Path("/tmp/snap.db"))]
    write_archive(Path("b.tar.gz"), manifest_for(members, ...), [(m, path) ...])
    manifest = extract_archive(Path("b.tar.gz"), Path("/tmp/staging"))
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import tarfile
import time
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import attrs

from gdos_sdk.constraints import Check
from gdos_sdk.display import displayed
from gdos_sdk.errors import BackupError, ValidationError
from gdos_sdk.storage.base import ObjectInfo, check_key

__all__ = [
    "ARCHIVE_FORMAT",
    "DB_MEMBER",
    "FORMAT_VERSION",
    "MANIFEST_MEMBER",
    "OBJECT_PREFIXES",
    "BackupInfo",
    "BackupKind",
    "BackupManifest",
    "BackupRequest",
    "BackupSchedule",
    "Member",
    "RestoreResult",
    "StorageSweep",
    "backup_name",
    "extract_archive",
    "file_sha256",
    "parse_backup_name",
    "write_archive",
]

ARCHIVE_FORMAT = "gdos-backup"
FORMAT_VERSION = 1
MANIFEST_MEMBER = "manifest.json"
DB_MEMBER = "ops.db"
OBJECTS_DIR = "objects/"
# Storage prefixes a backup "with packages" carries (backups/ itself never).
OBJECT_PREFIXES = ("packages/", "recordings/")

_NAME = re.compile(
    r"^gdos-backup-(\d{8}T\d{6}\d{6})Z-(db|full)-(manual|scheduled|uploaded)\.tar\.gz$"
)
_CHUNK = 1024 * 1024


class BackupKind(enum.StrEnum):
    """Who made a backup: an admin, the schedule, or an upload from elsewhere."""

    MANUAL = "manual"
    SCHEDULED = "scheduled"
    UPLOADED = "uploaded"


@displayed
@attrs.frozen
class BackupInfo:
    """One archive in the storage back end (under ``backups/``)."""

    name: str
    size: int
    created_at: datetime
    includes_packages: bool
    kind: BackupKind


@displayed
@attrs.frozen
class BackupRequest:
    """Body of ``POST /backups``."""

    include_packages: bool = False


@displayed
@attrs.frozen
class BackupSchedule:
    """Automatic backups: every ``interval_hours`` (0 = off), keeping ``retention`` of them."""

    interval_hours: float = attrs.field(default=0.0, validator=Check(minimum=0, maximum=24 * 366))
    retention: int = attrs.field(default=7, validator=Check(minimum=1, maximum=1000))
    include_packages: bool = False


@displayed
@attrs.frozen
class RestoreResult:
    """What a restore did."""

    name: str
    created_at: datetime
    master_version: str
    schema_version: int
    objects_restored: int
    objects_present: int
    nodes_reconnected: int
    audit_entries_kept: int


@displayed
@attrs.frozen
class StorageSweep:
    """Stored objects no record refers to (``GET`` / ``DELETE /storage/orphans``).

    A package object whose package rows are gone, a recording whose terminal session
    row is gone: what a restore leaves behind when it rolls the database back past
    them. Objects younger than ``min_age`` seconds are never listed (an upload or a
    session end may be between storing the object and writing its row).
    """

    objects: list[ObjectInfo]
    total_bytes: int
    min_age: float
    removed: bool = False


@attrs.frozen
class Member:
    """One file in an archive, as the manifest lists it."""

    name: str
    size: int
    sha256: str

    @classmethod
    def of(cls, name: str, path: Path) -> Member:
        """Describe the file at ``path`` stored as ``name``."""
        return cls(name=name, size=path.stat().st_size, sha256=file_sha256(path))


@attrs.frozen
class BackupManifest:
    """The archive's table of contents (``manifest.json``)."""

    created_at: datetime
    master_version: str
    schema_version: int
    includes_packages: bool
    members: list[Member]
    format: str = ARCHIVE_FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        body = {
            "format": self.format,
            "format_version": self.format_version,
            "created_at": self.created_at.isoformat(),
            "master_version": self.master_version,
            "schema_version": self.schema_version,
            "includes_packages": self.includes_packages,
            "members": [attrs.asdict(m) for m in self.members],
        }
        return json.dumps(body, indent=2).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> BackupManifest:
        """Parse and check a manifest; BackupError names what is wrong."""
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BackupError("not a GDOS backup: manifest.json is not JSON") from None
        if not isinstance(body, dict) or body.get("format") != ARCHIVE_FORMAT:
            raise BackupError(
                f"not a GDOS backup: manifest.json does not say format {ARCHIVE_FORMAT!r}",
                details={"problem": "foreign"},
            )
        version = body.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
            raise BackupError(
                f"backup format version {version!r} is not supported by this master"
                f" (it reads 1 to {FORMAT_VERSION}); upgrade the master",
                details={"problem": "version"},
            )
        try:
            members = [
                Member(name=str(m["name"]), size=int(m["size"]), sha256=str(m["sha256"]))
                for m in body["members"]
            ]
            return cls(
                created_at=datetime.fromisoformat(str(body["created_at"])),
                master_version=str(body["master_version"]),
                schema_version=int(body["schema_version"]),
                includes_packages=bool(body["includes_packages"]),
                members=members,
                format_version=version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupError(
                f"manifest.json is incomplete or malformed ({exc!r})",
                details={"problem": "manifest"},
            ) from None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def backup_name(created_at: datetime, *, includes_packages: bool, kind: BackupKind) -> str:
    """The archive's file name: its time, content and origin, sortable by time.

    Example::

        backup_name(now, includes_packages=True, kind=BackupKind.MANUAL)
        # 'gdos-backup-20261128T132600123456Z-full-manual.tar.gz'
    """
    stamp = created_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%f")
    content = "full" if includes_packages else "db"
    return f"gdos-backup-{stamp}Z-{content}-{kind.value}.tar.gz"


def parse_backup_name(name: str) -> tuple[datetime, bool, BackupKind]:
    """(created at, includes packages, kind) from a name made by :func:`backup_name`."""
    match = _NAME.match(name)
    if match is None:
        raise ValidationError(
            f"{name!r} is not a backup name (gdos-backup-<time>Z-<db|full>-<kind>.tar.gz)",
            details=[{"path": "name", "message": "not a backup name"}],
        )
    created = datetime.strptime(match[1], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
    return created, match[2] == "full", BackupKind(match[3])


def write_archive(dest: Path, manifest: BackupManifest, files: Iterable[tuple[str, Path]]) -> None:
    """Write ``files`` (archive name, source path) then the manifest into ``dest``.

    Fast compression: packages are zips already, and the database compresses well even so.
    """
    with tarfile.open(dest, "w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as archive:
        for name, path in files:
            info = archive.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o600
            with open(path, "rb") as handle:
                archive.addfile(info, handle)
        body = manifest.to_json()
        info = tarfile.TarInfo(MANIFEST_MEMBER)
        info.size = len(body)
        info.mtime = int(time.time())
        info.mode = 0o600
        archive.addfile(info, _BytesReader(body))


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = bytes(self._data[self._pos : end])
        self._pos += len(chunk)
        return chunk


def _member_path(staging: Path, name: str) -> Path:
    """Where a member goes under ``staging``; BackupError for anything not ours."""
    if name in (DB_MEMBER, MANIFEST_MEMBER):
        return staging / name
    if name.startswith(OBJECTS_DIR):
        key = name[len(OBJECTS_DIR) :]
        try:
            check_key(key)
        except ValidationError:
            raise BackupError(
                f"not a GDOS backup: unsafe member name {name!r}", details={"problem": "foreign"}
            ) from None
        if key.startswith(OBJECT_PREFIXES):
            return staging / name
    raise BackupError(
        f"not a GDOS backup: unexpected member {name!r}", details={"problem": "foreign"}
    )


def _read_members(source: Path, staging: Path, max_bytes: int) -> dict[str, Member]:
    seen: dict[str, Member] = {}
    total = 0
    with tarfile.open(source, "r:gz") as archive:
        for info in archive:
            if info.name in seen:
                raise BackupError(f"the archive holds {info.name!r} twice")
            if not info.isreg():
                raise BackupError(
                    f"not a GDOS backup: {info.name!r} is not a regular file",
                    details={"problem": "foreign"},
                )
            target = _member_path(staging, info.name)
            total += info.size
            if total > max_bytes:
                raise BackupError(
                    f"the archive unpacks to more than {max_bytes} bytes",
                    details={"problem": "too_large", "limit": max_bytes},
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = archive.extractfile(info)
            assert handle is not None  # a regular file always has a body
            digest = hashlib.sha256()
            size = 0
            with handle, open(target, "wb") as out:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            seen[info.name] = Member(name=info.name, size=size, sha256=digest.hexdigest())
    return seen


def extract_archive(source: Path, staging: Path, *, max_bytes: int = 1 << 40) -> BackupManifest:
    """Unpack ``source`` into ``staging`` and check it whole; return its manifest.

    Raises :class:`~gdos_sdk.errors.BackupError` naming the problem. ``staging`` may
    hold partial output after an error; the caller removes it.
    """
    try:
        seen = _read_members(source, staging, max_bytes)
    except BackupError:
        raise
    except (EOFError, zlib.error) as exc:
        raise BackupError(
            f"the archive is truncated or corrupt ({exc})", details={"problem": "truncated"}
        ) from None
    except tarfile.ReadError as exc:
        text = str(exc)
        if "not a gzip file" in text or "invalid header" in text or "empty file" in text:
            raise BackupError(
                "not a GDOS backup: the file is not a .tar.gz archive",
                details={"problem": "foreign"},
            ) from None
        raise BackupError(
            f"the archive is truncated or corrupt ({text})", details={"problem": "truncated"}
        ) from None
    except OSError as exc:  # gzip's "Not a gzipped file", CRC errors, short reads
        text = str(exc)
        if "Not a gzipped file" in text:
            raise BackupError(
                "not a GDOS backup: the file is not a .tar.gz archive",
                details={"problem": "foreign"},
            ) from None
        raise BackupError(
            f"the archive is truncated or corrupt ({text})", details={"problem": "truncated"}
        ) from None
    if MANIFEST_MEMBER not in seen:
        raise BackupError(
            "not a GDOS backup: the archive has no manifest.json", details={"problem": "foreign"}
        )
    manifest = BackupManifest.from_json((staging / MANIFEST_MEMBER).read_bytes())
    listed = {m.name: m for m in manifest.members}
    found = {name: m for name, m in seen.items() if name != MANIFEST_MEMBER}
    if DB_MEMBER not in listed:
        raise BackupError(
            "the manifest lists no database (ops.db)", details={"problem": "manifest"}
        )
    missing = sorted(set(listed) - set(found))
    extra = sorted(set(found) - set(listed))
    if missing or extra:
        raise BackupError(
            f"the archive does not match its manifest (missing: {missing[:5]},"
            f" not listed: {extra[:5]})",
            details={"problem": "mismatch", "missing": missing, "extra": extra},
        )
    bad = [name for name, m in listed.items() if found[name] != m]
    if bad:
        raise BackupError(
            f"checksum mismatch in {', '.join(bad[:5])}: the archive is corrupt",
            details={"problem": "checksum", "members": bad},
        )
    return manifest
