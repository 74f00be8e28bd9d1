"""Does a package contain the files its manifest starts? (``gdos-pack build/validate`` warn.)

A manifest can be valid and still name a file the package lacks: ``args: ["main.py"]``
without ``main.py`` builds, uploads and deploys fine, then fails to start on the worker.
:func:`check_contents` finds those references before anything is shipped.

What counts as a reference to a package file (the worker's rules, made conservative):

* ``entrypoint`` / ``stop_entrypoint``: a relative path with a ``/`` (``bin/api``,
  ``./run.sh``) or with a script suffix (``main.py``, ``start.sh``). A bare name such as
  ``python3`` or ``node`` is a program the worker finds on its ``PATH``, unless the
  package has a file of that name. A named file must also be executable (the worker runs
  it directly).
* ``args`` / ``stop_args``: a value with a script suffix (``main.py``), or a relative path
  with a ``/`` whose first folder the package ships (``conf/app.yaml`` when there is a
  ``conf/``). Options (``-c``, ``--port``), ``${VAR}`` references, ``key=value``, URLs,
  absolute paths and values with spaces are never file references; a path into a folder
  the package does not ship (``logs/out.log``) may be created at run time and is not
  checked.

Example::

    info = inspect_archive("shop-1.0.0.zip")
    for problem in check_contents(info.manifest, info.entries):
        print(problem.field, problem.message)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

import attrs

from gdos_sdk.archive import EntryInfo
from gdos_sdk.manifest import Manifest

__all__ = ["SCRIPT_SUFFIXES", "ContentProblem", "check_contents"]

SCRIPT_SUFFIXES = frozenset(
    {".py", ".pyz", ".sh", ".bash", ".js", ".mjs", ".cjs", ".rb", ".pl", ".php", ".jar"}
    | {".lua", ".exe", ".bat", ".cmd", ".ps1"}
)
"""Suffixes that make a bare name (``main.py``) a file of the package."""

_NOT_A_PATH = re.compile(r"^-|\$\{|=|://|\s")


@attrs.frozen
class ContentProblem:
    """A manifest field naming a package file that is missing or cannot be run.

    Parameters:
        field: where in ``service.json`` (``$.args[0]``).
        file: the file as the manifest names it.
        message: a sentence saying what is wrong and what to do.
    """

    field: str
    file: str
    message: str


def _relative(value: str) -> PurePosixPath | None:
    """``value`` as a package-relative path, or None for an absolute one or no path."""
    if not value or _NOT_A_PATH.search(value):
        return None
    posix = value.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:/", posix):
        return None
    parts = [p for p in PurePosixPath(posix).parts if p != "."]
    if not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


def _is_script(path: PurePosixPath) -> bool:
    return path.suffix.lower() in SCRIPT_SUFFIXES


class _Files:
    def __init__(self, entries: Iterable[EntryInfo]) -> None:
        self.files: dict[str, EntryInfo] = {}
        self.dirs: set[str] = set()
        for entry in entries:
            name = entry.name.rstrip("/")
            if entry.is_dir:
                self.dirs.add(name)
            else:
                self.files[name] = entry
            parts = PurePosixPath(name).parts
            for i in range(1, len(parts)):
                self.dirs.add("/".join(parts[:i]))


def _program(files: _Files, field: str, value: str) -> list[ContentProblem]:
    path = _relative(value)
    if path is None:
        return []
    name = str(path)
    entry = files.files.get(name)
    if entry is None:
        if "/" not in value.replace("\\", "/") and not _is_script(path):
            return []  # a program from the worker's PATH (python3, node, java)
        if name in files.dirs:
            return [ContentProblem(field, value, f"{value} is a folder in the package, not a file")]
        return [
            ContentProblem(
                field,
                value,
                f"{value} is not in the package; add it, or name a program on the worker's PATH",
            )
        ]
    if not entry.is_symlink and not entry.mode & 0o111:
        return [
            ContentProblem(
                field,
                value,
                f"{value} is not executable; the worker runs it directly: make it executable"
                " (chmod +x), or make its interpreter the entrypoint and the file an argument",
            )
        ]
    return []


def _argument(files: _Files, field: str, value: str) -> list[ContentProblem]:
    path = _relative(value)
    if path is None:
        return []
    name = str(path)
    if name in files.files:
        return []
    shipped_folder = len(path.parts) > 1 and path.parts[0] in files.dirs
    if not (_is_script(path) or shipped_folder):
        return []
    what = "a folder in the package, not a file" if name in files.dirs else "not in the package"
    return [
        ContentProblem(
            field, value, f"{value} is {what}; the service would not find it when it starts"
        )
    ]


def check_contents(manifest: Manifest, entries: Iterable[EntryInfo]) -> list[ContentProblem]:
    """The references of ``manifest`` to package files that ``entries`` do not satisfy.

    Parameters:
        manifest: the package's ``service.json``.
        entries: the package's files and folders (``inspect_archive(...).entries``, or
            :func:`gdos_sdk.archive.folder_entries` for a source folder).
    """
    files = _Files(entries)
    problems: list[ContentProblem] = []
    for field, program, args in (
        ("entrypoint", manifest.entrypoint, manifest.args),
        ("stop_entrypoint", manifest.stop_entrypoint, manifest.stop_args),
    ):
        if not program:
            continue
        problems += _program(files, f"$.{field}", program)
        args_field = "args" if field == "entrypoint" else "stop_args"
        for i, arg in enumerate(args):
            problems += _argument(files, f"$.{args_field}[{i}]", arg)
    return problems
