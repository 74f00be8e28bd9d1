"""The backup archive format: a round trip, and every kind of bad archive named and refused."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gdos_sdk.backups import (
    BackupKind,
    BackupManifest,
    Member,
    backup_name,
    extract_archive,
    parse_backup_name,
    write_archive,
)
from gdos_sdk.errors import BackupError, ValidationError

CREATED = datetime(2026, 11, 28, 13, 26, 0, 123456, tzinfo=UTC)


def make_archive(tmp_path: Path) -> Path:
    db = tmp_path / "src" / "ops.db"
    obj = tmp_path / "src" / "pkg.zip"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"database bytes")
    obj.write_bytes(b"package bytes" * 1000)
    files = [("ops.db", db), ("objects/packages/abc.zip", obj)]
    manifest = BackupManifest(
        created_at=CREATED,
        master_version="0.1.0",
        schema_version=2,
        includes_packages=True,
        members=[Member.of(name, path) for name, path in files],
    )
    dest = tmp_path / "backup.tar.gz"
    write_archive(dest, manifest, files)
    return dest


def test_round_trip(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    manifest = extract_archive(archive, tmp_path / "out")
    assert manifest.created_at == CREATED and manifest.includes_packages
    assert (tmp_path / "out" / "ops.db").read_bytes() == b"database bytes"
    assert (tmp_path / "out" / "objects" / "packages" / "abc.zip").stat().st_size == 13000
    assert [m.name for m in manifest.members] == ["ops.db", "objects/packages/abc.zip"]


def test_names_round_trip() -> None:
    name = backup_name(CREATED, includes_packages=True, kind=BackupKind.SCHEDULED)
    assert name == "gdos-backup-20261128T132600123456Z-full-scheduled.tar.gz"
    assert parse_backup_name(name) == (CREATED, True, BackupKind.SCHEDULED)
    with pytest.raises(ValidationError):
        parse_backup_name("../../etc/passwd")


def rewrite(archive: Path, change: dict[str, bytes | None]) -> Path:
    """The same archive with members replaced (bytes) or dropped (None)."""
    with tarfile.open(archive, "r:gz") as src:
        members = {m.name: src.extractfile(m).read() for m in src}  # type: ignore[union-attr]
    for name, data in change.items():
        if data is None:
            members.pop(name, None)
        else:
            members[name] = data
    out = archive.with_name("rewritten.tar.gz")
    with tarfile.open(out, "w:gz") as dst:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncate", "truncated or corrupt"),
        ("not-gzip", "not a .tar.gz archive"),
        ("empty", "not a .tar.gz archive"),
        ("no-manifest", "no manifest.json"),
        ("tampered", "checksum mismatch in objects/packages/abc.zip"),
        ("extra", "does not match its manifest"),
        ("newer", "format version 99 is not supported"),
        ("foreign", "not a GDOS backup"),
        ("link", "is not a regular file"),
        ("traversal", "unsafe member name"),
    ],
)
def test_bad_archives_name_the_problem(tmp_path: Path, how: str, message: str) -> None:
    archive = make_archive(tmp_path)
    manifest = json.loads(_manifest_bytes(archive))
    if how == "truncate":
        data = archive.read_bytes()
        archive.write_bytes(data[: len(data) - 40])
    elif how == "not-gzip":
        archive.write_bytes(b"PK\x03\x04" + b"\0" * 200)
    elif how == "empty":
        archive.write_bytes(b"")
    elif how == "no-manifest":
        archive = rewrite(archive, {"manifest.json": None})
    elif how == "tampered":
        archive = rewrite(archive, {"objects/packages/abc.zip": b"other bytes"})
    elif how == "extra":
        archive = rewrite(archive, {"objects/packages/zzz.zip": b"x"})
    elif how == "newer":
        manifest["format_version"] = 99
        archive = rewrite(archive, {"manifest.json": json.dumps(manifest).encode()})
    elif how == "foreign":
        manifest["format"] = "someone-else"
        archive = rewrite(archive, {"manifest.json": json.dumps(manifest).encode()})
    elif how == "link":
        with tarfile.open(archive, "w:gz") as dst:
            info = tarfile.TarInfo("ops.db")
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            dst.addfile(info)
    elif how == "traversal":
        archive = rewrite(archive, {"objects/../../evil": b"x"})
    with pytest.raises(BackupError, match=message):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def _manifest_bytes(archive: Path) -> bytes:
    with tarfile.open(archive, "r:gz") as src:
        handle = src.extractfile("manifest.json")
        assert handle is not None
        return handle.read()


def test_unpacked_size_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="more than 100 bytes"):
        extract_archive(make_archive(tmp_path), tmp_path / "out", max_bytes=100)
