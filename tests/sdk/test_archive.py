"""Package archives: hostile zips are refused with nothing written; builds are deterministic."""

from __future__ import annotations

import json
import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest

from gdos_sdk import archive as archive_module
from gdos_sdk.archive import (
    ArchiveLimits,
    build_archive,
    inspect_archive,
    safe_extract,
    sha256_file,
)
from gdos_sdk.errors import ConflictError, ManifestError, TooLargeError

MANIFEST = {"name": "demo", "version": "1.0.0", "entrypoint": "run.sh"}
MANIFEST_BYTES = json.dumps(MANIFEST).encode()
FILE = stat.S_IFREG | 0o644
EXEC = stat.S_IFREG | 0o755
LINK = stat.S_IFLNK | 0o777

Entry = tuple[str, bytes, int]


def make_zip(
    path: Path, entries: list[Entry], *, manifest: bool = True, stored: bool = False
) -> Path:
    """A zip with exactly these (name, data, unix mode) entries; no safety checks."""
    items = ([("service.json", MANIFEST_BYTES, FILE)] if manifest else []) + entries
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicates we craft
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data, mode in items:
                zinfo = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                zinfo.create_system = 3
                zinfo.external_attr = mode << 16
                zinfo.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                zf.writestr(zinfo, data)
    return path


def patch_declared_size(path: Path, name: str, size: int) -> None:
    """Make the headers of ``name`` claim ``size`` uncompressed bytes (a lying header)."""
    raw = bytearray(path.read_bytes())
    encoded = name.encode()
    central = raw.find(b"PK\x01\x02")
    while central >= 0:
        name_len = struct.unpack_from("<H", raw, central + 28)[0]
        if raw[central + 46 : central + 46 + name_len] == encoded:
            struct.pack_into("<I", raw, central + 24, size)
            local = struct.unpack_from("<I", raw, central + 42)[0]
            struct.pack_into("<I", raw, local + 22, size)
            path.write_bytes(bytes(raw))
            return
        central = raw.find(b"PK\x01\x02", central + 4)
    raise AssertionError(f"{name} not found")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def make_src(root: Path, files: dict[str, Any] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "service.json").write_text(json.dumps(MANIFEST))
    run = root / "run.sh"
    run.write_text("#!/bin/sh\necho hello\n")
    run.chmod(0o755)
    (root / "lib").mkdir()
    (root / "lib" / "util.py").write_text("X = 1\n")
    for name, text in (files or {}).items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def test_all_is_sorted_and_complete() -> None:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical.
    names = archive_module.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert all(hasattr(archive_module, n) for n in names)


def test_valid_archive_is_inspected(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "ok.zip",
        [("run.sh", b"#!/bin/sh\n", EXEC), ("lib/", b"", stat.S_IFDIR | 0o755),
         ("lib/a.txt", b"abc", FILE), ("current", b"lib", LINK)],
    )  # fmt: skip
    info = inspect_archive(path)
    assert info.manifest.name == "demo"
    assert info.sha256 == sha256_file(path) and info.size == path.stat().st_size
    by_name = {e.name: e for e in info.entries}
    assert by_name["run.sh"].mode == 0o755 and not by_name["run.sh"].is_dir
    assert by_name["lib"].is_dir
    assert by_name["current"].is_symlink and by_name["current"].link_target == "lib"
    assert info.total_bytes == len(MANIFEST_BYTES) + len(b"#!/bin/sh\n") + 3 + 3


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(b"this is not a zip at all" * 10)
    with pytest.raises(ManifestError, match="not a zip archive"):
        inspect_archive(path)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.sh", "'..'"),
        ("lib/../../evil.sh", "'..'"),
        ("/etc/cron.d/evil", "absolute"),
        ("C:/Windows/evil.exe", "drive letter"),
        ("c:evil", "drive letter"),
        ("..\\evil.sh", "backslash"),
        ("lib\\..\\..\\evil", "backslash"),
        ("./run.sh", "'.'"),
        ("lib//x", "empty"),
        ("bad\x01name", "control"),
    ],
)
def test_unsafe_names_are_refused(tmp_path: Path, name: str, reason: str) -> None:
    path = make_zip(tmp_path / "bad.zip", [(name, b"x", FILE)])
    with pytest.raises(ManifestError, match=reason) as info:
        inspect_archive(path)
    assert info.value.details[0]["entry"] == name
    dest = tmp_path / "out" / "app"
    with pytest.raises(ManifestError):
        safe_extract(path, dest)
    assert leftovers(tmp_path / "out") == []
    assert not (tmp_path / "evil.sh").exists()


@pytest.mark.parametrize(
    "entries",
    [
        [("a.txt", b"1", FILE), ("a.txt", b"2", FILE)],
        [("A.txt", b"1", FILE), ("a.txt", b"2", FILE)],
        [("lib", b"1", FILE), ("lib/x", b"2", FILE)],
        [("lib/", b"", stat.S_IFDIR | 0o755), ("lib", b"2", FILE)],
    ],
    ids=["duplicate", "case", "file-as-dir", "dir-and-file"],
)
def test_colliding_names_are_refused(tmp_path: Path, entries: list[Entry]) -> None:
    with pytest.raises(ManifestError):
        inspect_archive(make_zip(tmp_path / "dup.zip", entries))


@pytest.mark.parametrize(
    ("entries", "bad"),
    [
        ([("evil", b"../../etc/passwd", LINK)], "evil"),
        ([("evil", b"/etc/passwd", LINK)], "evil"),
        ([("lib/evil", b"../..", LINK)], "lib/evil"),
        # Lexically "d/up/.." stays inside, but d/up is the root, so root/.. escapes.
        ([("d/up", b"..", LINK), ("d/x", b"up/..", LINK)], "d/x"),
        ([("a", b"b", LINK), ("b", b"a", LINK)], "a"),  # a loop
    ],
    ids=["dotdot", "absolute", "nested", "through-another-link", "loop"],
)
def test_escaping_symlinks_are_refused(tmp_path: Path, entries: list[Entry], bad: str) -> None:
    path = make_zip(tmp_path / "link.zip", entries)
    with pytest.raises(ManifestError, match="symlink") as info:
        inspect_archive(path)
    assert info.value.details[0]["entry"] == bad
    with pytest.raises(ManifestError):
        safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_entry_inside_a_symlink_is_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "l.zip", [("lib", b"real", LINK), ("lib/x", b"1", FILE)])
    with pytest.raises(ManifestError, match="inside symlink"):
        inspect_archive(path)


def test_safe_symlinks_are_extracted(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "l.zip",
        [("real/x.txt", b"hi", FILE), ("bin/x", b"../real/x.txt", LINK), ("cur", b"real", LINK)],
    )
    dest = tmp_path / "app"
    safe_extract(path, dest)
    assert os.readlink(dest / "bin" / "x") == "../real/x.txt"
    assert (dest / "bin" / "x").read_text() == "hi"
    assert (dest / "cur" / "x.txt").read_text() == "hi"


def test_lying_header_bomb_is_stopped_while_streaming(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "bomb.zip",
        [("a.txt", b"written before the bomb", FILE), ("bomb.bin", b"\0" * (4 << 20), FILE)],
    )
    patch_declared_size(path, "bomb.bin", 1000)  # the directory now claims 1000 bytes
    with pytest.raises(TooLargeError, match="declared size") as info:
        inspect_archive(path)
    assert info.value.details["entry"] == "bomb.bin"
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TooLargeError):
        safe_extract(path, out / "app")
    # All or nothing: no destination, no temporary folder, not even a.txt.
    assert leftovers(out) == []


def test_declared_size_limits(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "big.zip", [("big.bin", os.urandom(5000), FILE)])
    with pytest.raises(TooLargeError, match="over the limit") as info:
        inspect_archive(path, ArchiveLimits(max_entry_bytes=4000))
    assert info.value.details["limit"] == "max_entry_bytes"
    with pytest.raises(TooLargeError) as total:
        inspect_archive(path, ArchiveLimits(max_total_bytes=4000))
    assert total.value.details["limit"] == "max_total_bytes"
    assert inspect_archive(path).manifest.name == "demo"


def test_lying_header_on_a_stored_entry(tmp_path: Path) -> None:
    # Stored (uncompressed) data takes another path than inflate; it must count too.
    path = make_zip(tmp_path / "s.zip", [("s.bin", b"x" * 300_000, FILE)], stored=True)
    patch_declared_size(path, "s.bin", 10)
    with pytest.raises(TooLargeError, match="declared size"):
        safe_extract(path, tmp_path / "app")
    assert leftovers(tmp_path) == ["s.zip"]


def test_huge_compression_ratio_is_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "ratio.zip", [("zeros.bin", b"\0" * (3 << 20), FILE)])
    with pytest.raises(TooLargeError, match="zip bomb") as info:
        inspect_archive(path)
    assert info.value.details["limit"] == "max_ratio"
    # A small file compressing just as well is harmless and accepted.
    small = make_zip(tmp_path / "small.zip", [("zeros.bin", b"\0" * 100_000, FILE)])
    assert inspect_archive(small).total_bytes > 100_000


def test_too_many_entries(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "many.zip", [(f"f{i}", b"", FILE) for i in range(20)])
    with pytest.raises(TooLargeError, match="21 entries") as info:
        inspect_archive(path, ArchiveLimits(max_entries=10))
    assert info.value.details == {"limit": "max_entries", "value": 21, "max": 10}
    assert len(inspect_archive(path, ArchiveLimits(max_entries=21)).entries) == 21


def test_missing_manifest(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "m.zip", [("run.sh", b"x", EXEC)], manifest=False)
    with pytest.raises(ManifestError, match=r"no service\.json at its root"):
        inspect_archive(path)
    nested = make_zip(
        tmp_path / "n.zip", [("demo/service.json", MANIFEST_BYTES, FILE)], manifest=False
    )
    with pytest.raises(ManifestError, match=r"found 'demo/service\.json'"):
        inspect_archive(nested)


def test_invalid_manifest_is_reported_with_paths(tmp_path: Path) -> None:
    bad = json.dumps({"name": "demo", "version": "1", "entrypont": "run.sh"}).encode()
    path = make_zip(tmp_path / "m.zip", [("service.json", bad, FILE)], manifest=False)
    with pytest.raises(ManifestError) as info:
        inspect_archive(path)
    paths = {p["path"] for p in info.value.details}
    assert paths == {"$.entrypont", "$.entrypoint"}


def test_manifest_must_be_a_file(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "m.zip", [("service.json", b"other.json", LINK)], manifest=False)
    with pytest.raises(ManifestError, match="regular file"):
        inspect_archive(path)


def test_corrupt_data_is_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "c.zip", [("data.bin", os.urandom(2000), FILE)])
    raw = bytearray(path.read_bytes())
    at = raw.find(b"data.bin") + len(b"data.bin") + 100  # inside the compressed data
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ManifestError, match=r"data\.bin"):
        inspect_archive(path)


def test_devices_and_fifos_are_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "d.zip", [("fifo", b"", stat.S_IFIFO | 0o644)])
    with pytest.raises(ManifestError, match="unsupported file type"):
        inspect_archive(path)


def test_extract_keeps_exec_bits_and_strips_setuid(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "p.zip",
        [("run.sh", b"#!/bin/sh\n", EXEC), ("suid", b"x", stat.S_IFREG | 0o4755),
         ("data.txt", b"d", FILE), ("ro/", b"", stat.S_IFDIR | 0o555)],
    )  # fmt: skip
    dest = tmp_path / "app"
    info = safe_extract(path, dest)
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "suid").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "data.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "ro").stat().st_mode) == 0o755  # owner keeps rwx
    assert (dest / "service.json").read_bytes() == MANIFEST_BYTES
    assert info.manifest.entrypoint == "run.sh"


def test_extract_refuses_an_existing_destination(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", [])
    dest = tmp_path / "app"
    dest.mkdir()
    (dest / "keep").write_text("mine")
    with pytest.raises(ConflictError):
        safe_extract(path, dest)
    assert leftovers(dest) == ["keep"]
    assert leftovers(tmp_path) == ["app", "p.zip"]


def test_extract_creates_missing_parents(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", [])
    safe_extract(path, tmp_path / "instances" / "i1" / "app")
    assert (tmp_path / "instances" / "i1" / "app" / "service.json").is_file()
    assert leftovers(tmp_path / "instances" / "i1") == ["app"]


# --- building -----------------------------------------------------------------------------


def test_build_is_deterministic(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    first = build_archive(src, tmp_path / "a.zip")
    assert first == sha256_file(tmp_path / "a.zip")
    for path in src.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    (src / "lib" / "util.py").chmod(0o600)  # only exec bits matter
    assert build_archive(src, tmp_path / "b.zip") == first
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    (src / "lib" / "util.py").chmod(0o700)  # gaining an exec bit changes the package
    assert build_archive(src, tmp_path / "c.zip") != first


def test_build_layout_and_modes(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src", {"empty/.keep": ""})
    build_archive(src, tmp_path / "out.zip")
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    by_name = {i.filename: i for i in infos}
    assert by_name["run.sh"].external_attr >> 16 == EXEC
    assert by_name["lib/util.py"].external_attr >> 16 == FILE
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) and i.create_system == 3 for i in infos)
    assert by_name["lib/util.py"].compress_type == zipfile.ZIP_DEFLATED
    # ...and the result extracts with its exec bit.
    safe_extract(tmp_path / "out.zip", tmp_path / "app")
    assert os.access(tmp_path / "app" / "run.sh", os.X_OK)
    assert (tmp_path / "app" / "lib" / "util.py").read_text() == "X = 1\n"


def test_build_skips_vcs_caches_and_its_output(tmp_path: Path) -> None:
    junk = {
        f"{d}/x": "junk"
        for d in [".git", ".hg", ".svn", ".bzr", "__pycache__", ".mypy_cache", ".pytest_cache",
                  ".ruff_cache", ".tox", ".nox", "lib/__pycache__"]
    }  # fmt: skip
    src = make_src(tmp_path / "src", {**junk, ".DS_Store": "x", "lib/mod.pyc": "x", "keep.py": ""})
    sha = build_archive(src, src / "dist.zip")
    again = build_archive(src, src / "dist.zip")  # the first dist.zip must not be packed
    assert sha == again
    names = {e.name for e in inspect_archive(src / "dist.zip").entries}
    assert names == {"service.json", "run.sh", "lib", "lib/util.py", "keep.py"}


def test_build_stores_inside_symlinks_and_refuses_escaping_ones(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    (src / "current").symlink_to("lib")
    (src / "lib" / "alias.py").symlink_to("util.py")
    build_archive(src, tmp_path / "ok.zip")
    entries = {e.name: e for e in inspect_archive(tmp_path / "ok.zip").entries}
    assert entries["current"].link_target == "lib" and entries["current"].is_symlink
    assert entries["lib/alias.py"].link_target == "util.py"

    (src / "escape").symlink_to("../outside")
    with pytest.raises(ManifestError, match="outside the package"):
        build_archive(src, tmp_path / "bad.zip")
    (src / "escape").unlink()
    (src / "abs").symlink_to("/etc/passwd")
    with pytest.raises(ManifestError, match="absolute"):
        build_archive(src, tmp_path / "bad.zip")
    assert not (tmp_path / "bad.zip").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.zip", "src"]


def test_build_validates_the_manifest_first(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    (src / "service.json").write_text('{"name": "demo", "version": "1.0", "entrypont": "x"}')
    with pytest.raises(ManifestError, match="did you mean 'entrypoint'"):
        build_archive(src, tmp_path / "out.zip")
    (src / "service.json").unlink()
    with pytest.raises(ManifestError, match=r"no service\.json"):
        build_archive(src, tmp_path / "out.zip")
    assert leftovers(tmp_path) == ["src"]


def test_build_refuses_what_a_worker_would_refuse(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    (src / "zeros.bin").write_bytes(b"\0" * 4096)
    with pytest.raises(TooLargeError):
        build_archive(src, tmp_path / "out.zip", limits=ArchiveLimits(max_total_bytes=1000))
    assert leftovers(tmp_path) == ["src"]  # no output, no temp file
