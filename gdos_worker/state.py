"""What a worker keeps on disk: its identity and one record per instance.

Layout under ``work_dir``::

    node.json                       node id + credential
    worker.lock                     held while a worker runs here
    cache/<sha256>.zip              packages by digest
    instances/<id>/instance.json    spec (with its env), desired state, process ref, counters
    instances/<id>/app/             the extracted package the instance runs
    instances/<id>/releases/<sha256>/  versions it ran before (runtime.keep_versions in
                                    all, app/ included), so moving back needs no download
    instances/<id>/logs/            console.log (+ .1, .2 ... after rotation)

Every file is written to a temporary name, flushed and renamed, so a worker
killed mid-write leaves the previous version intact. Folders are 0700 and files
0600 (:mod:`gdos_sdk.filemodes`); :meth:`WorkDir.prepare` repairs an older work
dir at start, without walking the extracted packages.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import attrs

from gdos_sdk.codec import converter
from gdos_sdk.errors import ConfigError
from gdos_sdk.executors import ProcessRef
from gdos_sdk.executors.accounts import Account
from gdos_sdk.filemodes import PRIVATE_FILE, private_dir, secure_tree
from gdos_sdk.protocol import InstanceSpec
from gdos_sdk.states import DesiredState, Health, InstanceState

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

__all__ = ["Identity", "InstancePaths", "InstanceRecord", "WorkDir", "atomic_write"]


def atomic_write(path: Path, data: bytes, *, mode: int = PRIVATE_FILE) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never half."""
    if not path.parent.is_dir():
        private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _not_a_package(folder: Path) -> bool:
    """Whether :meth:`WorkDir.prepare` walks into ``folder`` (not an extracted package)."""
    return folder.name != "app" and folder.parent.name != "releases"


@attrs.frozen
class Identity:
    """The node's id (made once, kept forever) and the credential the master issued."""

    node_id: str
    credential: str = attrs.field(default="", repr=False)


@attrs.define
class InstanceRecord:
    """The persisted state of one instance."""

    spec: InstanceSpec
    desired_state: DesiredState
    state: InstanceState
    process: ProcessRef | None = None
    started_at: float | None = None
    restarts: int = 0
    exit_code: int | None = None
    reason: str = ""
    health: Health = Health.NONE
    # An adopted instance: GDOS started the tracked process (spawn, start or restart
    # command), so destroying the instance stops it; one it found running is released.
    started_here: bool = False
    # Set while app/ is being switched to this version (see Supervisor.upgrade): a worker
    # that died meanwhile finishes or undoes the switch when it starts again.
    upgrade: InstanceSpec | None = None


@attrs.frozen
class InstancePaths:
    root: Path

    @property
    def record(self) -> Path:
        return self.root / "instance.json"

    @property
    def app(self) -> Path:
        return self.root / "app"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def release(self, sha256: str) -> Path:
        """Where the extracted package with this digest waits while app/ holds another."""
        return self.releases / sha256

    @property
    def console_log(self) -> Path:
        return self.logs / "console.log"


class WorkDir:
    """The worker's folder: identity, lock, package cache, instance records."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.instances_dir = self.root / "instances"
        self.cache_dir = self.root / "cache"
        self._lock_fd: int | None = None

    def prepare(self) -> None:
        """Create the folders (0700) and make an older work dir private."""
        for folder in (self.root, self.instances_dir, self.cache_dir):
            private_dir(folder)
        # The packages are not secrets and may be large: their folders are closed, not walked.
        secure_tree(self.root, descend=_not_a_package)
        # The repair closes the search bit that hand_over() gave the folders above a
        # service's app/ when it runs as another account; running services still need it.
        if sys.platform != "win32" and self.instances_dir.is_dir():
            for folder in self.instances_dir.iterdir():
                app = folder / "app"
                if app.is_dir() and not app.is_symlink() and app.stat().st_uid != os.geteuid():
                    for above in (self.root, self.instances_dir, folder):
                        above.chmod(stat.S_IMODE(above.stat().st_mode) | stat.S_IXOTH)

    def lock(self) -> None:
        """Take the work dir's lock; two workers on one folder would fight over instances."""
        fd = os.open(self.root / "worker.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if sys.platform == "win32":
                # No flock on Windows: lock byte 0 without waiting; freed with the handle.
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):  # Windows reports contention as EACCES
            os.close(fd)
            raise ConfigError(f"another worker is already running in {self.root}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        os.set_inheritable(fd, False)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- identity ---------------------------------------------------------------------------

    def load_identity(self) -> Identity:
        path = self.root / "node.json"
        if path.is_file():
            data = json.loads(path.read_text())
            return Identity(node_id=data["node_id"], credential=data.get("credential", ""))
        identity = Identity(node_id=str(uuid.uuid4()))
        self.save_identity(identity)
        return identity

    def save_identity(self, identity: Identity) -> None:
        data = {"node_id": identity.node_id, "credential": identity.credential}
        atomic_write(self.root / "node.json", json.dumps(data).encode())

    # --- instances --------------------------------------------------------------------------

    def paths(self, instance_id: str) -> InstancePaths:
        return InstancePaths(self.instances_dir / instance_id)

    def save_record(self, record: InstanceRecord) -> None:
        paths = self.paths(record.spec.instance_id)
        data: Any = converter.unstructure(record)
        atomic_write(paths.record, json.dumps(data).encode())

    def load_records(self) -> tuple[list[InstanceRecord], list[tuple[Path, str]]]:
        """Every readable record, plus (folder, problem) for the unreadable ones."""
        records: list[InstanceRecord] = []
        broken: list[tuple[Path, str]] = []
        for folder in sorted(self.instances_dir.iterdir()):
            path = folder / "instance.json"
            if not path.is_file():
                broken.append((folder, "no instance.json"))
                continue
            try:
                records.append(converter.structure(json.loads(path.read_text()), InstanceRecord))
            except (ValueError, TypeError, KeyError, Exception) as exc:
                broken.append((folder, f"unreadable instance.json: {exc}"))
        return records, broken

    def hand_over(self, paths: InstancePaths, account: Account | None) -> None:
        """Let ``account`` (the service's, when it is not ours) use its package folder.

        ``app/`` and everything in it become the account's: a service writes its own
        files there. The instance folder, its ``instance.json`` and ``logs/`` stay the
        worker's: a service must not rewrite its own record (which says which account
        it runs as) nor swap the console log for a link the worker would then append
        to. The folders above ``app/`` only get the search bit for others, so the
        account can reach ``app/`` without listing or reading anything else.
        """
        if account is None or sys.platform == "win32":
            return
        else:
            if account.uid == os.geteuid():
                return
            for folder in (self.root, self.instances_dir, paths.root):
                mode = stat.S_IMODE(folder.stat().st_mode)
                if not mode & stat.S_IXOTH:
                    os.chmod(folder, mode | stat.S_IXOTH)
            app = paths.app
            if not app.is_dir():
                return
            st = app.stat()
            if (st.st_uid, st.st_gid) == (account.uid, account.gid):
                return  # handed over already (chown is recursive, and done first to last)
            for top, folders, files in os.walk(app, topdown=False):
                for name in folders + files:
                    os.chown(
                        os.path.join(top, name), account.uid, account.gid, follow_symlinks=False
                    )
            os.chown(app, account.uid, account.gid)

    def cached_package(self, sha256: str) -> Path:
        return self.cache_dir / f"{sha256}.zip"

    # --- versions of an instance ------------------------------------------------------------

    def switch_release(self, paths: InstancePaths, current: str, new: str) -> None:
        """Make ``releases/<new>`` the instance's ``app/``; the old one is kept as ``<current>``.

        Two renames within the instance folder: nothing is copied, and the path services
        see (``GDOS_APP_DIR``) stays the same.
        """
        private_dir(paths.releases)
        if paths.app.exists():
            kept = paths.release(current)
            if kept.exists():  # an older copy of the same version: the newer one wins
                shutil.rmtree(kept)
            os.replace(paths.app, kept)
            os.utime(kept)  # the time it stopped being current orders what is kept
        os.replace(paths.release(new), paths.app)

    def prune_releases(self, paths: InstancePaths, keep: int) -> list[str]:
        """Remove all but the ``keep - 1`` most recently used earlier versions; their digests.

        ``keep`` counts the version in ``app/`` too; half-extracted folders (``.tmp-*``,
        left by a worker that died while extracting) go as well.
        """
        if not paths.releases.is_dir():
            return []
        found = [p for p in paths.releases.iterdir() if p.is_dir()]
        debris = [p for p in found if p.name.startswith(".")]
        kept = sorted(
            (p for p in found if not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        removed = debris + kept[max(0, keep - 1) :]
        for folder in removed:
            shutil.rmtree(folder, ignore_errors=True)
        return [p.name for p in removed if not p.name.startswith(".")]

    def kept_releases(self, paths: InstancePaths) -> list[str]:
        """The digests of the earlier versions kept for the instance."""
        if not paths.releases.is_dir():
            return []
        return sorted(p.name for p in paths.releases.iterdir() if not p.name.startswith("."))
