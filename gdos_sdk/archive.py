"""Package archives: inspect, extract safely, build deterministically.

A package is a zip with ``service.json`` at its root. Archives come from
users, so nothing in them is trusted:

* names: no absolute paths, drive letters, backslashes, ``..``/``.``/empty
  components, control characters, duplicates (also ones differing only by
  case, which collide on macOS and Windows), or entries below a file or link;
* symlinks: only if the target, resolved through the other links in the
  archive, stays inside the package;
* size: entry count, declared sizes and compression ratios are checked from
  the directory, and the bytes really produced by decompression are counted
  while streaming, because a header can lie. Over a limit is a
  :class:`~gdos_sdk.errors.TooLargeError`; anything else wrong is a
  :class:`~gdos_sdk.errors.ManifestError` naming the entry.

Decompression is done here (stored and deflated only) rather than through
``ZipFile.open`` so the byte counting does not depend on zipfile internals.

Example::

    sha = build_archive("my-service", "dist/my-service.zip")
    info = inspect_archive("dist/my-service.zip")
    safe_extract("dist/my-service.zip", "/srv/gdos/instances/abc/app")
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import attrs

from gdos_sdk.errors import ConflictError, ManifestError, TooLargeError
from gdos_sdk.manifest import MANIFEST_FILENAME, Manifest

__all__ = [
    "SKIP_NAMES",
    "ArchiveInfo",
    "ArchiveLimits",
    "EntryInfo",
    "build_archive",
    "folder_entries",
    "inspect_archive",
    "safe_extract",
    "sha256_file",
]

StrPath = str | os.PathLike[str]

#: Folder and file names :func:`build_archive` never packs (plus ``*.pyc``).
SKIP_NAMES = frozenset(
    {".git", ".hg", ".svn", ".bzr", "__pycache__", ".mypy_cache", ".pytest_cache"}
    | {".ruff_cache", ".tox", ".nox", ".DS_Store"}
)

_CHUNK = 1 << 16
_MAX_LINK_BYTES = 4096
_MAX_LINK_DEPTH = 40
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_DEFLATE_LEVEL = 6
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_LOCAL_MAGIC = 0x04034B50
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


@attrs.frozen
class ArchiveLimits:
    """Limits that keep a hostile archive from exhausting disk or memory.

    Parameters:
        max_entries: entries in the archive, directories included.
        max_total_bytes: uncompressed bytes of all entries together.
        max_entry_bytes: uncompressed bytes of one entry.
        max_ratio: uncompressed/compressed, per entry and overall.
        ratio_min_bytes: entries (and archives) smaller than this are exempt from
            ``max_ratio``: a small file of zeros compresses 1000:1 harmlessly.
        max_manifest_bytes: size of ``service.json``.

    Example::

        inspect_archive(path, ArchiveLimits(max_total_bytes=100 * 2**20))
    """

    max_entries: int = 10_000
    max_total_bytes: int = 1 << 30
    max_entry_bytes: int = 512 << 20
    max_ratio: float = 200.0
    ratio_min_bytes: int = 1 << 20
    max_manifest_bytes: int = 1 << 20


@attrs.frozen
class EntryInfo:
    """One entry of an archive as it is (or would be) extracted.

    ``mode`` holds the permission bits applied on extraction (setuid, setgid and
    sticky removed); ``link_target`` is set for symlinks.
    """

    name: str
    size: int
    mode: int
    is_dir: bool
    is_symlink: bool
    link_target: str | None = None


@attrs.frozen
class ArchiveInfo:
    """What :func:`inspect_archive` found: a valid package.

    Example::

        info = inspect_archive("svc.zip")
        print(info.manifest.name, info.sha256, len(info.entries))
    """

    manifest: Manifest
    entries: list[EntryInfo]
    total_bytes: int
    sha256: str
    size: int


def sha256_file(path: StrPath) -> str:
    """Hex sha256 of a file, read in chunks.

    Example::

        sha256_file("svc.zip")  # "9f86d0..."
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- reading ------------------------------------------------------------------------------


@attrs.define
class _Entry:
    zinfo: zipfile.ZipInfo
    info: EntryInfo


@attrs.define
class _Budget:
    """Counts bytes really produced by decompression across the whole archive."""

    limit: int
    used: int = 0

    def take(self, count: int) -> None:
        self.used += count
        if self.used > self.limit:
            raise TooLargeError(
                f"the archive expands to more than {self.limit} bytes",
                details={"limit": "max_total_bytes", "max": self.limit},
            )


def _bad(name: str, message: str) -> ManifestError:
    return ManifestError(
        f"invalid archive entry {name!r}: {message}",
        details=[{"entry": name, "message": message}],
    )


def _too_large(name: str, message: str, limit: str, value: int, maximum: float) -> TooLargeError:
    return TooLargeError(
        f"archive entry {name!r} {message}",
        details={"entry": name, "limit": limit, "value": value, "max": maximum},
    )


def _declared_entry_count(fh: IO[bytes]) -> int | None:
    """Entry count from the end-of-central-directory record, before zipfile parses it.

    zipfile builds a ZipInfo per entry up front; a 1 GiB archive of empty
    entries would cost gigabytes of memory before any limit could be checked.
    """
    size = fh.seek(0, os.SEEK_END)
    tail_len = min(size, 22 + 0xFFFF + 20)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < 22:
        return None
    (total,) = struct.unpack_from("<H", tail, pos + 10)
    if total == 0xFFFF and pos >= 20 and tail[pos - 20 : pos - 16] == b"PK\x06\x07":
        (offset,) = struct.unpack_from("<Q", tail, pos - 12)
        fh.seek(offset)
        record = fh.read(56)
        if record[:4] == b"PK\x06\x06":
            (total,) = struct.unpack_from("<Q", record, 32)
    return int(total)


def _open_zip(fh: IO[bytes], limits: ArchiveLimits) -> zipfile.ZipFile:
    count = _declared_entry_count(fh)
    if count is not None and count > limits.max_entries:
        raise TooLargeError(
            f"the archive has {count} entries, over the limit of {limits.max_entries}",
            details={"limit": "max_entries", "value": count, "max": limits.max_entries},
        )
    fh.seek(0)
    try:
        return zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise ManifestError(f"not a zip archive: {exc}") from exc


def _check_name(raw: str) -> str:
    """The entry's path without a trailing slash, or raise naming the trick."""
    name = raw[:-1] if raw.endswith("/") else raw
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise _bad(raw, "control characters in the name")
    if "\\" in raw:
        raise _bad(raw, "backslash in the name (a Windows path separator)")
    if raw.startswith("/"):
        raise _bad(raw, "absolute path")
    if _DRIVE_RE.match(raw):
        raise _bad(raw, "drive letter in the path")
    parts = name.split("/")
    if ".." in parts:
        raise _bad(raw, "'..' in the path")
    if not name or "" in parts or "." in parts:
        raise _bad(raw, "empty or '.' path component")
    return name


def _entry_mode(zinfo: zipfile.ZipInfo, name: str) -> tuple[str, int]:
    """(kind, permission bits) where kind is 'dir', 'file' or 'link'."""
    unix = zinfo.external_attr >> 16
    is_dir = zinfo.orig_filename.endswith("/")
    if unix == 0:  # no unix mode recorded (e.g. made on Windows): use defaults
        return ("dir", 0o755) if is_dir else ("file", 0o644)
    kind = stat.S_IFMT(unix)
    # setuid/setgid/sticky are never honoured from an archive.
    perm = stat.S_IMODE(unix) & 0o777
    if kind == stat.S_IFLNK:
        if is_dir:
            raise _bad(name, "a symlink entry cannot be a directory")
        return "link", 0o777
    if is_dir:
        if kind not in (0, stat.S_IFDIR):
            raise _bad(name, "directory entry with a non-directory mode")
        return "dir", perm | 0o700  # the owner must be able to fill and later delete it
    if kind not in (0, stat.S_IFREG):
        raise _bad(name, f"unsupported file type {oct(kind)} (devices, fifos...)")
    return "file", perm


def _raw_chunks(fh: IO[bytes], zinfo: zipfile.ZipInfo, name: str) -> Iterator[bytes]:
    """The entry's compressed bytes, located through its local header."""
    fh.seek(zinfo.header_offset)
    header = fh.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size:
        raise _bad(name, "truncated local header")
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != _LOCAL_MAGIC:
        raise _bad(name, "bad local header")
    raw_name = fh.read(fields[9])
    fh.seek(fields[10], os.SEEK_CUR)
    # zipfile checks this too: a local name that differs from the central
    # directory's is how some tools get shown one file and extract another.
    local = raw_name.decode("utf-8" if fields[2] & 0x800 else "cp437", errors="replace")
    if local != zinfo.orig_filename:
        raise _bad(name, "local header name differs from the central directory")
    left = zinfo.compress_size
    while left > 0:
        chunk = fh.read(min(_CHUNK, left))
        if not chunk:
            raise _bad(name, "truncated data")
        left -= len(chunk)
        yield chunk


def _inflate(chunks: Iterator[bytes], name: str) -> Iterator[bytes]:
    decomp = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        for chunk in chunks:
            data = chunk
            # max_length bounds memory: a 1 KiB bomb cannot expand in one call.
            while data and not decomp.eof:
                out = decomp.decompress(data, _CHUNK)
                data = decomp.unconsumed_tail
                if out:
                    yield out
            if decomp.eof:
                break
        tail = decomp.flush()
    except zlib.error as exc:
        raise _bad(name, f"corrupt compressed data: {exc}") from exc
    if tail:
        yield tail
    if not decomp.eof:
        raise _bad(name, "truncated compressed data")


def _read_entry(
    fh: IO[bytes], zinfo: zipfile.ZipInfo, name: str, budget: _Budget, limit: int
) -> Iterator[bytes]:
    """Decompressed content, counting every byte against the declared size and limits."""
    if zinfo.flag_bits & 0x1:
        raise _bad(name, "encrypted entries are not supported")
    raw = _raw_chunks(fh, zinfo, name)
    if zinfo.compress_type == zipfile.ZIP_DEFLATED:
        chunks = _inflate(raw, name)
    elif zinfo.compress_type == zipfile.ZIP_STORED:
        chunks = raw
    else:
        raise _bad(name, f"unsupported compression method {zinfo.compress_type}")
    count = 0
    crc = 0
    for chunk in chunks:
        count += len(chunk)
        if count > zinfo.file_size or count > limit:
            raise _too_large(
                name,
                f"expands beyond its declared size of {zinfo.file_size} bytes",
                "declared_size",
                count,
                min(zinfo.file_size, limit),
            )
        budget.take(len(chunk))
        crc = zlib.crc32(chunk, crc)
        yield chunk
    if count != zinfo.file_size:
        raise _bad(name, f"{count} bytes of data, but {zinfo.file_size} declared")
    if crc != zinfo.CRC:
        raise _bad(name, "CRC mismatch (corrupt data)")


def _read_small(fh: IO[bytes], entry: _Entry, limit: int) -> bytes:
    return b"".join(_read_entry(fh, entry.zinfo, entry.info.name, _Budget(limit), limit))


def _resolve_link(
    key: str, links: dict[str, str], memo: dict[str, list[str] | None], stack: list[str]
) -> list[str] | None:
    """Path components a symlink resolves to inside the tree, or None if it escapes.

    Resolution goes through the other links of the tree, as the OS would:
    ``a -> ..`` at the root plus ``b -> a/x`` is an escape even though
    ``a/x`` looks harmless. Memoised, so crafted chains stay linear.
    """
    if key in memo:
        return memo[key]
    if key in stack or len(stack) >= _MAX_LINK_DEPTH:
        return None  # a loop, or a chain too deep to be honest
    stack.append(key)
    result = _walk(key.split("/")[:-1], links[key], links, memo, stack)
    stack.pop()
    memo[key] = result
    return result


def _walk(
    parts: list[str],
    target: str,
    links: dict[str, str],
    memo: dict[str, list[str] | None],
    stack: list[str],
) -> list[str] | None:
    if not target or target.startswith("/") or "\\" in target or _DRIVE_RE.match(target):
        return None
    parts = list(parts)
    for comp in target.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(comp)
        joined = "/".join(parts)
        if joined in links:
            resolved = _resolve_link(joined, links, memo, stack)
            if resolved is None:
                return None
            parts = list(resolved)
    return parts


def _check_links(links: dict[str, str]) -> None:
    memo: dict[str, list[str] | None] = {}
    for key, target in links.items():
        if _resolve_link(key, links, memo, []) is None:
            raise _bad(key, f"symlink target {target!r} points outside the package")


def _check_layout(entries: list[_Entry]) -> None:
    """No duplicates, no case collisions, nothing below a file or a symlink."""
    seen: dict[str, str] = {}
    leaves: dict[str, EntryInfo] = {}
    for entry in entries:
        name = entry.info.name
        folded = name.casefold()
        if folded in seen:
            other = seen[folded]
            what = "duplicate entry" if other == name else f"differs from {other!r} only by case"
            raise _bad(name, what)
        seen[folded] = name
        if not entry.info.is_dir:
            leaves[name] = entry.info
    for entry in entries:
        parts = entry.info.name.split("/")
        for i in range(1, len(parts)):
            parent = leaves.get("/".join(parts[:i]))
            if parent is not None:
                kind = "symlink" if parent.is_symlink else "file"
                raise _bad(entry.info.name, f"is inside {kind} {parent.name!r}")


def _plan(fh: IO[bytes], zf: zipfile.ZipFile, limits: ArchiveLimits) -> list[_Entry]:
    """Check everything the central directory tells, before any content is written."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise TooLargeError(
            f"the archive has {len(infos)} entries, over the limit of {limits.max_entries}",
            details={"limit": "max_entries", "value": len(infos), "max": limits.max_entries},
        )
    entries: list[_Entry] = []
    declared = compressed = 0
    for zinfo in infos:
        if "\x00" in zinfo.orig_filename:  # zipfile silently cuts names at NUL
            raise _bad(zinfo.orig_filename, "NUL character in the name")
        name = _check_name(zinfo.orig_filename)
        kind, mode = _entry_mode(zinfo, name)
        size = zinfo.file_size
        if size > limits.max_entry_bytes:
            raise _too_large(
                name, f"is {size} bytes, over the limit", "max_entry_bytes", size,
                limits.max_entry_bytes,
            )  # fmt: skip
        if size > limits.ratio_min_bytes and size > limits.max_ratio * max(zinfo.compress_size, 1):
            raise _too_large(
                name, "is compressed suspiciously well (zip bomb?)", "max_ratio",
                size // max(zinfo.compress_size, 1), limits.max_ratio,
            )  # fmt: skip
        if kind == "link" and size > _MAX_LINK_BYTES:
            raise _bad(name, "symlink target is too long")
        declared += size
        compressed += zinfo.compress_size
        info = EntryInfo(name, size, mode, kind == "dir", kind == "link")
        entries.append(_Entry(zinfo, info))
    if declared > limits.max_total_bytes:
        raise TooLargeError(
            f"the archive expands to {declared} bytes, over the limit of {limits.max_total_bytes}",
            details={"limit": "max_total_bytes", "value": declared, "max": limits.max_total_bytes},
        )
    if declared > limits.ratio_min_bytes and declared > limits.max_ratio * max(compressed, 1):
        raise TooLargeError(
            "the archive is compressed suspiciously well (zip bomb?)",
            details={"limit": "max_ratio", "value": declared // max(compressed, 1)},
        )
    _check_layout(entries)
    links: dict[str, str] = {}
    for entry in entries:
        if entry.info.is_symlink:
            raw = _read_small(fh, entry, _MAX_LINK_BYTES)
            try:
                target = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _bad(entry.info.name, "symlink target is not UTF-8") from exc
            links[entry.info.name] = target
            entry.info = attrs.evolve(entry.info, link_target=target)
    _check_links(links)
    return entries


def _load_manifest(fh: IO[bytes], entries: list[_Entry], limits: ArchiveLimits) -> Manifest:
    found = [e for e in entries if e.info.name == MANIFEST_FILENAME]
    if not found:
        nested = [e.info.name for e in entries if e.info.name.endswith("/" + MANIFEST_FILENAME)]
        hint = f" (found {nested[0]!r}: build from that folder)" if nested else ""
        raise ManifestError(
            f"the archive has no {MANIFEST_FILENAME} at its root{hint}",
            details=[{"entry": MANIFEST_FILENAME, "message": f"missing at the root{hint}"}],
        )
    entry = found[0]
    if entry.info.is_dir or entry.info.is_symlink:
        raise _bad(MANIFEST_FILENAME, "must be a regular file")
    if entry.info.size > limits.max_manifest_bytes:
        raise _too_large(
            MANIFEST_FILENAME, "is too large", "max_manifest_bytes", entry.info.size,
            limits.max_manifest_bytes,
        )  # fmt: skip
    return Manifest.from_json(_read_small(fh, entry, limits.max_manifest_bytes))


def _scan(
    path: StrPath,
    limits: ArchiveLimits,
    sink: Callable[[_Entry, Iterator[bytes]], None],
) -> ArchiveInfo:
    """Validate an archive and hand each entry's checked content stream to ``sink``."""
    sha256 = sha256_file(path)
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        with _open_zip(fh, limits) as zf:
            entries = _plan(fh, zf, limits)
            manifest = _load_manifest(fh, entries, limits)
            budget = _Budget(limits.max_total_bytes)
            for entry in entries:
                limit = limits.max_entry_bytes
                sink(entry, _read_entry(fh, entry.zinfo, entry.info.name, budget, limit))
    return ArchiveInfo(
        manifest=manifest,
        entries=[e.info for e in entries],
        total_bytes=budget.used,
        sha256=sha256,
        size=size,
    )


def _drain(entry: _Entry, chunks: Iterator[bytes]) -> None:
    for _ in chunks:
        pass


def inspect_archive(path: StrPath, limits: ArchiveLimits = ArchiveLimits()) -> ArchiveInfo:
    """Fully validate a package archive without writing anything.

    Every entry is decompressed (and discarded) so lying headers, corrupt
    data and bombs are caught here, not at deploy time.

    Parameters:
        path: the zip file.
        limits: size limits; see :class:`ArchiveLimits`.
        mode: permission bits of ``dest_dir`` itself (a worker makes it 0700).

    Raises:
        ManifestError: not a zip, an unsafe or corrupt entry, missing or invalid manifest.
        TooLargeError: a limit is exceeded.

    Example::

        info = inspect_archive("svc.zip")
        info.manifest.version
    """
    return _scan(path, limits, _drain)


# --- extracting ---------------------------------------------------------------------------

_O_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
_O_FLAGS |= getattr(os, "O_NOFOLLOW", 0)


def safe_extract(
    path: StrPath,
    dest_dir: StrPath,
    limits: ArchiveLimits = ArchiveLimits(),
    *,
    mode: int = 0o755,
) -> ArchiveInfo:
    """Validate and extract a package into ``dest_dir``, all or nothing.

    Content goes to a temporary folder beside ``dest_dir`` and is renamed into
    place only once every entry is written, so a failure (a lying header, a
    full disk) leaves neither ``dest_dir`` nor the temporary folder behind.
    Permission bits are kept (exec bits matter) without setuid/setgid/sticky.

    Parameters:
        path: the zip file.
        dest_dir: must not exist; its parent is created if needed.
        limits: size limits; see :class:`ArchiveLimits`.

    Raises:
        ConflictError: ``dest_dir`` already exists.
        ManifestError, TooLargeError: as :func:`inspect_archive`.

    Example::

        safe_extract("svc.zip", work_dir / "instances" / iid / "app")
    """
    dest = Path(dest_dir)
    if dest.exists() or dest.is_symlink():
        raise ConflictError(f"{dest} already exists", details={"path": str(dest)})
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    dir_modes: dict[Path, int] = {}
    links: list[tuple[Path, str]] = []

    def write(entry: _Entry, chunks: Iterator[bytes]) -> None:
        target = tmp.joinpath(*entry.info.name.split("/"))
        if entry.info.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            dir_modes[target] = entry.info.mode
            _drain(entry, chunks)
        elif entry.info.is_symlink:
            links.append((target, entry.info.link_target or ""))
            _drain(entry, chunks)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, _O_FLAGS, 0o600)
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            target.chmod(entry.info.mode)

    try:
        info = _scan(path, limits, write)
        # Links last, so no file is ever written through one.
        for link, target in links:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
        # Deepest first: a read-only parent must not block setting its children.
        for folder in sorted(dir_modes, key=lambda p: len(p.parts), reverse=True):
            folder.chmod(dir_modes[folder])
        tmp.chmod(mode)  # mkdtemp made it 0o700
        try:
            tmp.rename(dest)
        except OSError as exc:
            raise ConflictError(f"{dest} appeared during extraction: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


# --- building -----------------------------------------------------------------------------


@attrs.frozen
class _Item:
    arcname: str
    path: Path
    kind: str  # "dir", "file" or "link"
    mode: int = 0
    size: int = 0
    target: str = ""


def _collect(src: Path, skip: Path) -> list[_Item]:
    items: list[_Item] = []
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        rel = os.path.relpath(dirpath, src)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        keep: list[str] = []
        for name in dirnames:
            full = Path(dirpath, name)
            if name in SKIP_NAMES:
                continue
            if full.is_symlink():  # walk lists links to folders as folders
                items.append(_Item(prefix + name, full, "link", target=str(full.readlink())))
            else:
                keep.append(name)
                items.append(_Item(prefix + name + "/", full, "dir"))
        dirnames[:] = sorted(keep)
        for name in filenames:
            full = Path(dirpath, name)
            if name in SKIP_NAMES or name.endswith(".pyc") or full.resolve() == skip:
                continue
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                items.append(_Item(prefix + name, full, "link", target=str(full.readlink())))
            elif stat.S_ISREG(st.st_mode):
                # Exec bits are the only permission worth carrying between machines.
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                items.append(_Item(prefix + name, full, "file", mode=mode, size=st.st_size))
            else:
                raise _bad(prefix + name, "not a regular file, folder or symlink")
    items.sort(key=lambda item: item.arcname)
    links = {i.arcname: i.target.replace(os.sep, "/") for i in items if i.kind == "link"}
    for item in items:
        if item.kind == "link" and Path(item.target).is_absolute():
            raise _bad(item.arcname, f"symlink target {item.target!r} is absolute")
    _check_links(links)
    return items


def folder_entries(src_dir: StrPath) -> list[EntryInfo]:
    """The entries :func:`build_archive` would pack from ``src_dir``, without packing it.

    Example::

        names = [e.name for e in folder_entries("my-service")]
    """
    items = _collect(Path(src_dir), Path(os.devnull))
    return [
        EntryInfo(
            name=item.arcname,
            size=item.size,
            mode=item.mode if item.kind == "file" else 0o755,
            is_dir=item.kind == "dir",
            is_symlink=item.kind == "link",
            link_target=item.target if item.kind == "link" else None,
        )
        for item in items
    ]


def _zinfo(arcname: str, mode: int, compress_type: int) -> zipfile.ZipInfo:
    zinfo = zipfile.ZipInfo(arcname, date_time=_ZIP_EPOCH)
    zinfo.create_system = 3  # unix, whatever the building machine: modes are unix modes
    zinfo.external_attr = mode << 16
    zinfo.compress_type = compress_type
    # zipfile has no public per-entry level before 3.13; the default could change.
    setattr(zinfo, "compress_level" if hasattr(zinfo, "compress_level") else "_compresslevel",
            _DEFLATE_LEVEL)  # fmt: skip
    return zinfo


def _write(zf: zipfile.ZipFile, item: _Item) -> None:
    if item.kind == "dir":
        zinfo = _zinfo(item.arcname, stat.S_IFDIR | 0o755, zipfile.ZIP_STORED)
        zinfo.external_attr |= 0x10  # MS-DOS directory flag, for Windows tools
        zf.writestr(zinfo, b"")
    elif item.kind == "link":
        zinfo = _zinfo(item.arcname, stat.S_IFLNK | 0o777, zipfile.ZIP_STORED)
        zf.writestr(zinfo, item.target.replace(os.sep, "/").encode("utf-8"))
    else:
        zinfo = _zinfo(item.arcname, stat.S_IFREG | item.mode, zipfile.ZIP_DEFLATED)
        zinfo.file_size = item.size  # lets zipfile choose zip64 up front
        with open(item.path, "rb") as src, zf.open(zinfo, "w") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def build_archive(
    src_dir: StrPath,
    out_path: StrPath,
    *,
    limits: ArchiveLimits = ArchiveLimits(),
) -> str:
    """Pack a folder into a deterministic package zip and return its sha256.

    The same files give the same bytes: entries sorted by path, timestamps
    fixed at 1980-01-01, modes normalised to 0o755/0o644, unix create system,
    one deflate level. VCS and cache folders (:data:`SKIP_NAMES`), ``*.pyc``
    and the output file itself are skipped. ``service.json`` is validated
    first, and the result is checked with :func:`inspect_archive` before it
    replaces ``out_path``, so a package that builds is one a worker accepts.

    Parameters:
        src_dir: the package root, holding ``service.json``.
        out_path: the zip to write (replaced atomically).
        limits: the limits the result must pass.

    Example::

        sha256 = build_archive("my-service", "my-service-1.0.0.zip")
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise ManifestError(
            f"{src} is not a folder", details=[{"entry": str(src), "message": "not a folder"}]
        )
    manifest_file = src / MANIFEST_FILENAME
    if not manifest_file.is_file() or manifest_file.is_symlink():
        raise ManifestError(
            f"no {MANIFEST_FILENAME} in {src}; run 'gdos-pack init {src}' to create one",
            details=[{"entry": MANIFEST_FILENAME, "message": "missing"}],
        )
    Manifest.from_json(manifest_file.read_bytes())
    out = Path(out_path).absolute()
    items = _collect(src, out.resolve())
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w") as zf:
            for item in items:
                _write(zf, item)
        info = inspect_archive(tmp, limits)
        tmp.chmod(0o644)  # mkstemp makes 0o600; a package is not a secret
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return info.sha256
