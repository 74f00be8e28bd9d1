"""An instance's log files: which ones may be read, tail, follow across rotation, search.

**Which files.** Only the instance's console output (``console.log`` and its
rotated copies ``console.log.N`` in the instance's ``logs/`` folder) and the
entries of the manifest's ``log_paths`` (relative to the package root, or
absolute). A file is asked for by the *name* :func:`log_sources` lists, and
any other name is refused with :class:`~gdos_sdk.errors.PermissionDenied`
naming the problem: ``..`` segments, an undeclared absolute path, or a
declared relative path whose real location (after symlinks) leaves the package.

**Opening.** A service may own the folder its declared files are in (it runs as
its own account and writes there), so a name checked by :func:`resolve_log_file`
could be swapped for a link before it is opened. The reading functions take the
source's ``root`` and check the *opened* file (:func:`open_log`): it must be a
regular file that really lies under ``root``, or nothing is read.

**Following.** A :class:`LogCursor` is the file's identity (device, inode)
and a byte offset. :func:`read_follow` continues from it and copes with both
rotation styles:

- *rename + new file* (logrotate's default, Python's ``RotatingFileHandler``):
  the name now points to another inode, so the rest of the old file is read
  from wherever it was renamed to (found by inode among its siblings), then
  reading moves to the new file from its start;
- *copytruncate* (the worker's own console rotation): same inode, size below
  the offset, so reading restarts at 0. Lines written and truncated between two
  polls are lost, as with ``tail -F``.

Example::

    sources = log_sources(app_dir, logs_dir, manifest.log_paths)
    path = resolve_log_file("console.log", sources)
    text, cursor = tail_lines(path, 100)
    more, cursor = read_follow(path, cursor)
"""

from __future__ import annotations

import collections
import os
import re
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

import attrs

from gdos_sdk.display import displayed
from gdos_sdk.errors import NotFoundError, PermissionDenied

__all__ = [
    "CONSOLE_LOG",
    "LogChunk",
    "LogCursor",
    "LogFile",
    "LogMatch",
    "LogSearch",
    "LogSource",
    "log_sources",
    "open_log",
    "read_follow",
    "resolve_log_file",
    "search_file",
    "tail_lines",
]

CONSOLE_LOG = "console.log"
_CONSOLE_RE = re.compile(r"^console\.log(\.[0-9]{1,4})?$")
READ_LIMIT = 256 * 1024


@displayed
@attrs.frozen
class LogCursor:
    """Where following stopped: which file (device, inode) and the byte offset in it."""

    dev: int
    ino: int
    offset: int


@displayed
@attrs.frozen
class LogFile:
    """One readable log file of an instance, as the log viewer lists it."""

    name: str
    kind: str  # "console" or "declared"
    size: int | None = None  # None: declared but missing right now
    mtime: float | None = None


@displayed
@attrs.frozen
class LogChunk:
    """Text read from a log file and the cursor to continue from.

    ``rotated`` says the file was rotated since the previous cursor (the text
    may then hold the end of the old file followed by the start of the new one).
    """

    name: str
    text: str
    cursor: LogCursor | None
    rotated: bool = False
    more: bool = False  # the read stopped at the size limit; ask again at once


@displayed
@attrs.frozen
class LogMatch:
    line: int  # 1-based
    text: str


@displayed
@attrs.frozen
class LogSearch:
    """The last ``limit`` lines containing ``query`` (case-insensitive), oldest first."""

    name: str
    query: str
    matches: list[LogMatch]
    total: int


@attrs.frozen
class LogSource:
    """A readable name and where it lives; ``root`` bounds where its real path may lead."""

    name: str
    path: Path
    kind: str
    root: Path | None  # None: a declared absolute path (readable as declared)


def _is_absolute(name: str) -> bool:
    return PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute()


def log_sources(app_dir: Path, logs_dir: Path, log_paths: list[str]) -> dict[str, LogSource]:
    """Every name the log viewer may read for one instance (console files first)."""
    found: dict[str, LogSource] = {}
    names = []
    try:
        names = [e.name for e in os.scandir(logs_dir) if _CONSOLE_RE.match(e.name)]
    except OSError:
        pass
    names.sort(key=lambda n: (len(n), n))
    for name in names or [CONSOLE_LOG]:
        found[name] = LogSource(name, logs_dir / name, "console", logs_dir)
    for entry in log_paths:
        if entry in found:
            continue
        if _is_absolute(entry):
            found[entry] = LogSource(entry, Path(entry), "declared", None)
        else:
            found[entry] = LogSource(entry, app_dir / entry, "declared", app_dir)
    return found


def _refuse(name: str, problem: str) -> PermissionDenied:
    return PermissionDenied(
        f"log file {name!r} refused: {problem}", details={"file": name, "problem": problem}
    )


def resolve_log_file(name: str, sources: dict[str, LogSource], *, must_exist: bool = True) -> Path:
    """The real path of ``name``, or :class:`PermissionDenied` saying why it is not readable.

    With ``must_exist=False`` a missing file is not an error (a followed log is briefly
    missing between a rotation's rename and the new file): its folder is checked instead.

    Raises:
        PermissionDenied: ``name`` is not one of ``sources`` (path traversal,
            undeclared absolute path, anything else), or its real path escapes
            its folder through a symlink, or it is not a regular file.
        NotFoundError: a declared file that does not exist (yet).
    """
    source = sources.get(name)
    if source is None:
        parts = re.split(r"[\\/]", name)
        if ".." in parts:
            raise _refuse(name, "path traversal ('..') is not allowed")
        if _is_absolute(name):
            raise _refuse(name, "an absolute path not declared in the manifest's log_paths")
        raise _refuse(
            name, "not a log file of this instance (console output or the manifest's log_paths)"
        )
    if source.root is not None:
        if ".." in re.split(r"[\\/]", name):
            raise _refuse(name, "path traversal ('..') is not allowed")
        try:
            real = source.path.resolve(strict=True)
        except FileNotFoundError:
            if must_exist:
                raise NotFoundError(f"log file {name!r} does not exist (yet)") from None
            real = source.path.parent.resolve() / source.path.name
        except (OSError, RuntimeError) as exc:
            raise _refuse(name, f"cannot be resolved: {exc}") from exc
        root = source.root.resolve()
        if real != root and root not in real.parents:
            raise _refuse(name, "a symlink leads outside the instance's folder")
    else:
        real = source.path
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        if not must_exist:
            return real
        raise NotFoundError(f"log file {name!r} does not exist (yet)") from None
    if not stat.S_ISREG(mode):
        raise _refuse(name, "not a regular file")
    return real


def _inside(real: str, root: Path) -> bool:
    top = os.path.realpath(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def open_log(path: Path, root: Path | None = None) -> BinaryIO:
    """Open a log file for reading; with ``root``, only if the opened file lies under it.

    The check is made on the open file, not its name: on Linux the kernel's own
    record of what was opened (``/proc/self/fd/N``), elsewhere the name resolved
    right after opening. The file must be a regular file (opened non-blocking, so a
    FIFO put in its place cannot hang the reader).

    Raises:
        PermissionDenied: the file opened is not a regular file under ``root``.
        OSError: the file cannot be opened.

    Example::

        with open_log(app_dir / "logs/app.log", app_dir) as handle:
            handle.read()
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refuse(str(path), "not a regular file")
        if root is not None:
            try:
                real = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                real = os.path.realpath(path)
            if not _inside(real, root):
                raise _refuse(str(path), "the file opened lies outside the instance's folder")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def tail_lines(
    path: Path, lines: int, *, limit: int = READ_LIMIT, root: Path | None = None
) -> tuple[str, LogCursor]:
    """The last ``lines`` lines of ``path`` (at most ``limit`` bytes) and a cursor at its end.

    ``root``: the file opened must lie under it (:func:`open_log`).
    """
    with open_log(path, root) as handle:
        st = os.fstat(handle.fileno())
        end = st.st_size
        start = end
        block = 8192
        data = b""
        while start > 0 and data.count(b"\n") <= lines and end - start < limit:
            step = min(block, start, limit - (end - start))
            start -= step
            handle.seek(start)
            data = handle.read(step) + data
        kept = data.splitlines(keepends=True)[-lines:] if lines > 0 else []
        return _decode(b"".join(kept)), LogCursor(st.st_dev, st.st_ino, end)


def _find_by_inode(folder: Path, cursor: LogCursor) -> Path | None:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if st.st_ino == cursor.ino and st.st_dev == cursor.dev and stat.S_ISREG(st.st_mode):
            return Path(entry.path)
    return None


def _read(path: Path, offset: int, limit: int, root: Path | None) -> tuple[bytes, os.stat_result]:
    with open_log(path, root) as handle:
        st = os.fstat(handle.fileno())
        handle.seek(offset)
        data = handle.read(limit)
    if len(data) == limit:
        cut = data.rfind(b"\n")
        if cut >= 0:
            data = data[: cut + 1]  # never split a line (or a UTF-8 character) between reads
    return data, st


def read_follow(
    path: Path,
    cursor: LogCursor | None,
    *,
    name: str = "",
    limit: int = READ_LIMIT,
    root: Path | None = None,
) -> tuple[LogChunk, bool]:
    """Text appended since ``cursor`` (following rotation) and whether anything was read.

    Without a cursor, starts at the current end (use :func:`tail_lines` first).
    ``name`` labels the chunk (default: the file name); ``root``: every file opened
    must lie under it (:func:`open_log`).
    """
    name = name or path.name
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    if cursor is None:
        if st is None:
            return LogChunk(name, "", None), False
        return LogChunk(name, "", LogCursor(st.st_dev, st.st_ino, st.st_size)), False
    if st is not None and (st.st_dev, st.st_ino) == (cursor.dev, cursor.ino):
        offset, rotated = cursor.offset, False
        if st.st_size < offset:  # copytruncate: the same file started again
            offset, rotated = 0, True
        if st.st_size == offset:
            return LogChunk(name, "", LogCursor(cursor.dev, cursor.ino, offset), rotated), rotated
        data, fst = _read(path, offset, limit, root)
        more = offset + len(data) < fst.st_size
        next_cursor = LogCursor(fst.st_dev, fst.st_ino, offset + len(data))
        return LogChunk(name, _decode(data), next_cursor, rotated, more), bool(data) or rotated
    # The name points to another file (or none): finish the old one where it went.
    old = _find_by_inode(path.parent, cursor)
    tail = b""
    if old is not None:
        tail, fst = _read(old, cursor.offset, limit, root)
        if cursor.offset + len(tail) < fst.st_size:
            next_cursor = LogCursor(cursor.dev, cursor.ino, cursor.offset + len(tail))
            return LogChunk(name, _decode(tail), next_cursor, False, True), True
    if st is None:  # renamed, the new file not created yet: stay on the old one
        next_cursor = LogCursor(cursor.dev, cursor.ino, cursor.offset + len(tail))
        return LogChunk(name, _decode(tail), next_cursor), bool(tail)
    data, fst = _read(path, 0, max(1, limit - len(tail)), root)
    more = len(data) < fst.st_size
    next_cursor = LogCursor(fst.st_dev, fst.st_ino, len(data))
    return LogChunk(name, _decode(tail + data), next_cursor, True, more), True


def search_file(
    path: Path, name: str, query: str, *, limit: int = 500, root: Path | None = None
) -> LogSearch:
    """The last ``limit`` lines of ``path`` containing ``query`` (plain text, any case).

    ``root``: the file opened must lie under it (:func:`open_log`).
    """
    needle = query.casefold()
    matches: collections.deque[LogMatch] = collections.deque(maxlen=limit)
    total = 0
    with open_log(path, root) as handle:
        for number, raw in enumerate(handle, start=1):
            line = _decode(raw).rstrip("\r\n")
            if needle in line.casefold():
                total += 1
                matches.append(LogMatch(number, line[:4000]))
    return LogSearch(name=name, query=query, matches=list(matches), total=total)
