"""Private files and folders: what GDOS keeps on disk is for its owner's eyes only.

The master's data dir holds the database (password hashes, webhook secrets, module env),
packages, backups and terminal recordings; a worker's work dir holds its node credential
and every instance's env. Folders are made ``0700`` and files ``0600`` when they are
created, and :func:`secure_tree` repairs an older install at start (it strips the group and
other permission bits of everything below a folder). See docs/security.md, "Secrets on
disk".

A folder that must belong to someone else (a service that runs as its own user owns its
``app/`` and ``logs/`` folders) is made with an :class:`Owner`. On Windows permission bits
mean little; the folders' ACLs apply and these helpers change nothing.

Example::

    data = private_dir(Path("/var/lib/gdos"))           # 0700
    logs = private_dir(app_root / "logs", owner=Owner(1001, 1001))
    secure_tree(data)                                  # repairs 0755/0644 left by older versions
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import attrs

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "Owner",
    "private_dir",
    "private_file",
    "secure_tree",
]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_GROUP_OTHER = 0o077
_POSIX = sys.platform != "win32"


@attrs.frozen
class Owner:
    """Who a path should belong to (numeric ids, as ``os.chown`` takes them)."""

    uid: int
    gid: int


def _own(path: Path, owner: Owner | None) -> None:
    if sys.platform != "win32" and owner is not None:
        st = path.lstat()
        if (st.st_uid, st.st_gid) != (owner.uid, owner.gid):
            os.chown(path, owner.uid, owner.gid, follow_symlinks=False)


def private_dir(path: Path, *, owner: Owner | None = None, mode: int = PRIVATE_DIR) -> Path:
    """Make ``path`` (and missing parents) a folder with ``mode``, owned by ``owner``.

    An existing folder gets the mode (and owner) too. Parents created on the way get the
    same mode; existing parents are left alone.

    Parameters:
        path: the folder.
        owner: who owns it (default: whoever runs this, left as it is).
        mode: ``0700`` by default; ``0711`` lets other users pass through without listing.
    """
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    if _POSIX:
        for folder in [path, *missing]:
            if stat.S_IMODE(folder.lstat().st_mode) != mode:
                folder.chmod(mode)  # mkdir's mode is masked by the umask
    _own(path, owner)
    return path


def private_file(path: Path, *, owner: Owner | None = None, mode: int = PRIVATE_FILE) -> Path:
    """Give an existing file ``mode`` (``0600`` by default) and ``owner``."""
    path = Path(path)
    if _POSIX and stat.S_IMODE(path.lstat().st_mode) != mode:
        path.chmod(mode)
    _own(path, owner)
    return path


def secure_tree(root: Path, *, descend: Callable[[Path], bool] | None = None) -> int:
    """Strip group and other permission bits from ``root`` and everything below it.

    Symbolic links are neither changed nor followed. ``descend(folder)`` may return False
    to leave a folder's contents alone (the folder itself is still secured): a worker does
    not walk the extracted packages. Returns how many paths were changed. A path this
    process may not change (another user's, when not running as root) is left as it is.

    Run it before laying out folders that must stay open to someone (a folder made with
    ``mode=0o711`` for a service's own user): it closes those too.

    Example::

        secure_tree(work_dir, descend=lambda p: p.name != "app")
    """
    if not _POSIX:
        return 0
    changed = 0
    stack = [Path(root)]
    while stack:
        path = stack.pop()
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            continue
        mode = stat.S_IMODE(st.st_mode)
        if mode & _GROUP_OTHER:
            try:
                path.chmod(mode & ~_GROUP_OTHER)
                changed += 1
            except PermissionError:  # someone else's file (not running as root): leave it
                pass
        if stat.S_ISDIR(st.st_mode) and (descend is None or path == root or descend(path)):
            stack.extend(path.iterdir())
    return changed
