"""Online backups of the master, and restore in place without a restart.

* **Create.** The database is copied as a consistent snapshot while the master keeps
  writing (never a file copy), optionally with every stored package and recording, into
  one archive (:mod:`gdos_sdk.backups`) that is stored under ``backups/`` in the storage
  back end. The archive's database is a SQLite file on either engine: SQLite's backup
  API makes it, or on PostgreSQL a copy of every table read in one ``REPEATABLE READ``
  transaction (:mod:`gdos_master.dbcopy`). So an archive restores on either engine,
  which is also how a master moves from SQLite to PostgreSQL (docs/database.md).
* **Restore** checks the whole archive first (digests, database integrity, schema) and
  changes nothing if any check fails; an archive of an older schema is migrated first.
  It then puts back the objects the storage lacks, and copies the restored database
  *into the open connection* in one transaction on the event loop's thread (SQLite's
  backup API; on PostgreSQL every table emptied and filled again): every domain object
  keeps its :class:`~gdos_master.db.Database`, no request ever sees a closed connection,
  and the next statement of any request reads the restored state. In-memory state is reloaded
  (alert rules, states and silences, join token, node caches) and every worker is
  asked to reconnect, so it reconciles its instances with the restored desired state.
* **Kept across a restore**: the audit trail written after the snapshot (history is not
  rolled back), and the identity of nodes that are connected now (their credential), so
  the fleet can reconnect and be reconciled.
* **Schedule** (``backup.*`` settings, or the one an admin saves, kept in the database):
  a scheduled backup every ``interval_hours``; only the newest ``retention`` scheduled
  backups are kept. Every action is audited, the scheduler's as ``scheduler``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread
import attrs

from gdos_master import __version__, dbcopy, jointoken, migrations
from gdos_master.audit import record_audit
from gdos_master.db import PostgresDatabase, Row, SqliteDatabase
from gdos_sdk.backups import (
    DB_MEMBER,
    OBJECT_PREFIXES,
    BackupInfo,
    BackupKind,
    BackupManifest,
    BackupSchedule,
    Member,
    RestoreResult,
    StorageSweep,
    backup_name,
    extract_archive,
    parse_backup_name,
    write_archive,
)
from gdos_sdk.codec import converter
from gdos_sdk.errors import (
    BackupError,
    ConflictError,
    GdosError,
    NotFoundError,
    TooLargeError,
    ValidationError,
)
from gdos_sdk.filemodes import private_dir
from gdos_sdk.storage import ObjectInfo

if TYPE_CHECKING:
    from gdos_master.app import Master

__all__ = ["PREFIX", "Backups", "prepare_database"]

log = logging.getLogger("gdos.master.backups")

PREFIX = "backups/"
_REQUIRED_TABLES = {"kv", "users", "nodes", "packages", "systems", "modules", "instances", "audit"}
_SCHEDULE_KEY = "backup_schedule"


def prepare_database(path: Path, page_size: int | None) -> sqlite3.Connection:
    """Check a restored database file and bring it to this master's schema.

    ``page_size``: the live SQLite database's (``None`` on PostgreSQL). Returns an open
    connection (usable from any thread, one at a time). Raises :class:`BackupError` for
    a damaged file, a foreign database or a newer schema.
    """
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise BackupError(f"the archive's database cannot be opened: {exc}") from None
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()
        if check is None or check[0] != "ok":
            raise BackupError(
                f"the archive's database is damaged: {check[0] if check else 'no answer'}",
                details={"problem": "database"},
            )
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if not tables >= _REQUIRED_TABLES or version < 1:
            raise BackupError(
                "not a GDOS backup: the database is not a GDOS master database",
                details={"problem": "foreign"},
            )
        if version > migrations.head():
            raise BackupError(
                f"the backup's database has schema {version}, newer than this master's"
                f" ({migrations.head()}); upgrade the master first",
                details={"problem": "version"},
            )
        conn.execute("PRAGMA journal_mode=DELETE")
        _migrate(path)
        if page_size is not None and conn.execute("PRAGMA page_size").fetchone()[0] != page_size:
            # The backup API copies into a WAL database only between equal page sizes.
            conn.execute(f"PRAGMA page_size = {int(page_size)}")
            conn.execute("VACUUM")
        conn.row_factory = sqlite3.Row
    except BackupError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise BackupError(
            f"the archive's database is damaged: {exc}", details={"problem": "database"}
        ) from None
    return conn


def _migrate(path: Path) -> None:
    engine = migrations.migration_engine(sqlite_path=path)
    try:
        migrations.upgrade(engine)
    except migrations.SchemaTooNew as exc:
        raise BackupError(str(exc), details={"problem": "version"}) from None
    finally:
        engine.dispose()


def _snapshot(source: Path, dest: Path) -> int:
    """Copy the live database file with the backup API from a connection of our own."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)  # one step: a consistent read snapshot, writers are not blocked (WAL)
        dst.execute("PRAGMA journal_mode=DELETE")
        return int(dst.execute("PRAGMA user_version").fetchone()[0])
    finally:
        dst.close()
        src.close()


class Backups:
    """Create, list, upload, download, delete and restore backups; run the schedule."""

    def __init__(self, master: Master, *, clock: Callable[[], float] = time.time) -> None:
        self.master = master
        self.clock = clock
        self._lock = asyncio.Lock()

    @property
    def _tmp(self) -> Path:
        return private_dir(Path(self.master.settings.server.data_dir) / "tmp")

    @property
    def _max_bytes(self) -> int:
        return self.master.settings.backup.max_upload_bytes

    # --- listing ----------------------------------------------------------------------------

    async def list_backups(self) -> list[BackupInfo]:
        """Every backup in storage, newest first (objects with foreign names are skipped)."""
        found: list[BackupInfo] = []
        for obj in await self.master.storage.list_objects(PREFIX):
            name = obj.key[len(PREFIX) :]
            try:
                created, full, kind = parse_backup_name(name)
            except ValidationError:
                continue
            found.append(BackupInfo(name, obj.size, created, full, kind))
        return sorted(found, key=lambda b: b.created_at, reverse=True)

    async def stat(self, name: str) -> ObjectInfo:
        parse_backup_name(name)
        try:
            return await self.master.storage.stat(PREFIX + name)
        except NotFoundError:
            raise NotFoundError(f"no backup named {name!r}") from None

    async def delete(self, name: str) -> None:
        await self.stat(name)
        await self.master.storage.delete(PREFIX + name)

    # --- create -----------------------------------------------------------------------------

    async def create(self, *, include_packages: bool, kind: BackupKind) -> BackupInfo:
        """Snapshot the database (and packages) into one archive in storage."""
        async with self._lock:
            created = datetime.fromtimestamp(self.clock(), UTC)
            name = backup_name(created, includes_packages=include_packages, kind=kind)
            work = Path(tempfile.mkdtemp(prefix="backup-", dir=self._tmp))
            try:
                snap = work / DB_MEMBER
                schema = await self._snapshot(snap)
                files: list[tuple[str, Path]] = [(DB_MEMBER, snap)]
                if include_packages:
                    files.extend(await self._gather_objects(work))
                members = await anyio.to_thread.run_sync(
                    lambda: [Member.of(n, p) for n, p in files]
                )
                manifest = BackupManifest(
                    created_at=created,
                    master_version=__version__,
                    schema_version=schema,
                    includes_packages=include_packages,
                    members=members,
                )
                archive = work / name
                await anyio.to_thread.run_sync(write_archive, archive, manifest, files)
                info = await self.master.storage.put_file(PREFIX + name, archive)
            finally:
                await anyio.to_thread.run_sync(shutil.rmtree, work, True)
        log.info("backup %s stored (%d bytes)", name, info.size)
        return BackupInfo(name, info.size, created, include_packages, kind)

    async def _snapshot(self, dest: Path) -> int:
        db = self.master.db
        if isinstance(db, PostgresDatabase):
            return await anyio.to_thread.run_sync(dbcopy.snapshot_to_sqlite, db.url, dest)
        assert db.path is not None
        return await anyio.to_thread.run_sync(_snapshot, db.path, dest)

    async def _gather_objects(self, work: Path) -> list[tuple[str, Path]]:
        storage = self.master.storage
        files: list[tuple[str, Path]] = []
        for prefix in OBJECT_PREFIXES:
            for obj in await storage.list_objects(prefix):
                path = storage.local_path(obj.key)
                if path is None:  # not on this disk: fetch a copy first
                    path = work / "objects" / obj.key
                    await self._download(obj.key, path)
                files.append(("objects/" + obj.key, path))
        return files

    async def _download(self, key: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as out:
            async for chunk in self.master.storage.iter_bytes(key):
                await anyio.to_thread.run_sync(out.write, chunk)

    # --- upload -----------------------------------------------------------------------------

    async def upload(
        self, chunks: AsyncIterable[bytes], *, content_length: int | None
    ) -> BackupInfo:
        """Check an archive made elsewhere and keep it under ``backups/`` (not restored yet)."""
        if content_length is not None and content_length > self._max_bytes:
            raise self._too_large()
        work = Path(tempfile.mkdtemp(prefix="backup-upload-", dir=self._tmp))
        try:
            source = work / "upload.tar.gz"
            size = 0
            with open(source, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise self._too_large()
                    out.write(chunk)
            if size == 0:
                raise ValidationError("the upload is empty; send the backup archive as the body")
            manifest = await self._check(source, work / "staging")
            name = backup_name(
                manifest.created_at,
                includes_packages=manifest.includes_packages,
                kind=BackupKind.UPLOADED,
            )
            info = await self.master.storage.put_file(PREFIX + name, source)
        finally:
            await anyio.to_thread.run_sync(shutil.rmtree, work, True)
        created = manifest.created_at.astimezone(UTC)
        return BackupInfo(name, info.size, created, manifest.includes_packages, BackupKind.UPLOADED)

    def _too_large(self) -> TooLargeError:
        return TooLargeError(
            f"backup archive is larger than backup.max_upload_bytes ({self._max_bytes} bytes)",
            details={"limit": self._max_bytes},
        )

    async def _check(self, archive: Path, staging: Path) -> BackupManifest:
        """Unpack and check everything; the database too (then close it)."""
        manifest = await anyio.to_thread.run_sync(
            lambda: extract_archive(archive, staging, max_bytes=self._max_bytes)
        )
        conn = await anyio.to_thread.run_sync(
            prepare_database, staging / DB_MEMBER, self._page_size()
        )
        conn.close()
        return manifest

    def _page_size(self) -> int | None:
        db = self.master.db
        return int(db.scalar("PRAGMA page_size")) if isinstance(db, SqliteDatabase) else None

    # --- restore ----------------------------------------------------------------------------

    async def restore(self, name: str) -> RestoreResult:
        """Replace the master's state with the backup's, in place; see the module docstring."""
        await self.stat(name)
        async with self._lock:
            work = Path(tempfile.mkdtemp(prefix="restore-", dir=self._tmp))
            staged: sqlite3.Connection | None = None
            try:
                archive = self.master.storage.local_path(PREFIX + name)
                if archive is None:  # not on this disk: fetch a copy first
                    archive = work / "archive.tar.gz"
                    await self._download(PREFIX + name, archive)
                staging = work / "staging"
                source = archive
                manifest = await anyio.to_thread.run_sync(
                    lambda: extract_archive(source, staging, max_bytes=self._max_bytes)
                )
                staged = await anyio.to_thread.run_sync(
                    prepare_database, staging / DB_MEMBER, self._page_size()
                )
                restored, present = await self._put_objects(staging / "objects")
                kept = self._carry_over(staged)
                self._swap(staged)
                reconnected = await self._reload()
            finally:
                if staged is not None:
                    staged.close()
                await anyio.to_thread.run_sync(shutil.rmtree, work, True)
        log.warning("restored backup %s (made %s)", name, manifest.created_at.isoformat())
        return RestoreResult(
            name=name,
            created_at=manifest.created_at,
            master_version=manifest.master_version,
            schema_version=manifest.schema_version,
            objects_restored=restored,
            objects_present=present,
            nodes_reconnected=reconnected,
            audit_entries_kept=kept,
        )

    async def _put_objects(self, root: Path) -> tuple[int, int]:
        """Store the archive's objects the back end lacks; return (stored, already there)."""
        if not root.is_dir():
            return 0, 0
        storage = self.master.storage
        restored = present = 0
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = path.relative_to(root).as_posix()
            # Packages are named by their digest: one already stored is the same object.
            if key.startswith("packages/"):
                with contextlib.suppress(NotFoundError):
                    if (await storage.stat(key)).size == path.stat().st_size:
                        present += 1
                        continue
            await storage.put_file(key, path)
            restored += 1
        return restored, present

    def _carry_over(self, staged: sqlite3.Connection) -> int:
        """Copy into the restored database what a restore must not roll back."""
        live = self.master.db
        staged.execute("BEGIN IMMEDIATE")
        try:
            newest = staged.execute("SELECT COALESCE(MAX(ts), 0) FROM audit").fetchone()[0]
            columns = "ts, actor_kind, actor, ip, action, target, params, result, status, message"
            rows = live.all(
                f"SELECT {columns} FROM audit WHERE ts > ? ORDER BY id",  # noqa: S608
                (newest,),
            )
            staged.executemany(
                f"INSERT INTO audit({columns}) VALUES(?,?,?,?,?,?,?,?,?,?)",
                [tuple(r) for r in rows],
            )
            for node in live.all("SELECT * FROM nodes WHERE credential_hash IS NOT NULL"):
                self._keep_node(staged, node)
            # Signed-in users whose account the backup has too stay signed in.
            for session in live.all("SELECT * FROM sessions WHERE expires_at > ?", (time.time(),)):
                staged.execute(
                    "INSERT OR IGNORE INTO sessions(id_hash, user_id, csrf, created_at, expires_at)"
                    " SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM users WHERE id = ?)",
                    (
                        *(session[k] for k in ("id_hash", "user_id", "csrf", "created_at")),
                        session["expires_at"],
                        session["user_id"],
                    ),
                )
            staged.execute("COMMIT")
        except BaseException:
            staged.execute("ROLLBACK")
            raise
        return len(rows)

    @staticmethod
    def _keep_node(staged: sqlite3.Connection, node: Row) -> None:
        """A joined worker keeps its credential, so it can reconnect and be reconciled."""
        try:
            if staged.execute("SELECT 1 FROM nodes WHERE id = ?", (node["id"],)).fetchone():
                staged.execute(
                    "UPDATE nodes SET credential_hash = ?, hostname = ?, addresses = ?,"
                    " fingerprint = ?, agent_version = ?, planned = 0 WHERE id = ?",
                    (
                        node["credential_hash"],
                        node["hostname"],
                        node["addresses"],
                        node["fingerprint"],
                        node["agent_version"],
                        node["id"],
                    ),
                )
            else:
                keys = list(node.keys())
                staged.execute(
                    f"INSERT INTO nodes({', '.join(keys)}) VALUES({', '.join('?' * len(keys))})",
                    tuple(node),
                )
        except sqlite3.IntegrityError as exc:  # e.g. that credential now names another node
            log.warning("restore: not keeping node %s: %s", node["id"], exc)

    def _swap(self, staged: sqlite3.Connection) -> None:
        """Copy the restored database into the live connection, all at once.

        This runs on the event loop's thread and does not await: no other request runs a
        statement meanwhile, and none holds a transaction across an await (transactions
        in this code base are synchronous blocks). SQLite applies the copy atomically;
        if it fails, the live database is unchanged.
        """
        db = self.master.db
        if isinstance(db, PostgresDatabase):
            dbcopy.replace_all(db, staged)
            return
        assert isinstance(db, SqliteDatabase)
        if db.conn.in_transaction:
            raise ConflictError("the database is busy; try the restore again")
        staged.backup(db.conn)
        db.changed()  # pages copied, not statements run through the facade

    async def _reload(self) -> int:
        """Rebuild in-memory state from the restored database; ask workers to reconnect."""
        master = self.master
        db = master.db
        # The backup's join token (its hash) is the cluster's now; one from an older backup
        # is hashed. A backup without any gets a new one: an admin rotates to read it.
        master.join_token = jointoken.load(db, configured=master.settings.auth.join_token)
        master.accounts.ensure_admin(
            master.settings.auth.admin_username, master.settings.auth.admin_password
        )
        master.nodes.forget_cached()
        master.credentials.clear()  # the restore wrote through the backup API, not statements
        master.alerts.meta.clear()
        master.alerts.started = master.alerts.clock()  # workers are about to reconnect
        master.alerts.load()
        master.batches.recover()  # the backup may have caught a batch running
        master.rollouts.load()  # ... or a rollout: it is resumed
        master.rollouts.start_background()
        db.set_kv("last_restore", json.dumps({"at": time.time()}))  # moves db.changes
        known = {r["id"] for r in db.all("SELECT id FROM nodes")}
        instances = {r["id"] for r in db.all("SELECT id FROM instances")}
        reconnected = 0
        for node_id, rt in list(master.fleet.nodes.items()):
            for instance_id in list(rt.instance_texts):
                if instance_id not in instances:
                    master.fleet.forget_instance(instance_id)
            if node_id not in known:
                await master.fleet.forget(node_id)
            elif rt.connection is not None and not rt.connection.closed:
                # The worker reconnects at once with its full inventory; the hello
                # reconciles it with the restored desired state.
                await rt.connection.close()
                reconnected += 1
        return reconnected

    # --- orphaned objects -------------------------------------------------------------------

    async def orphans(self, min_age: float) -> StorageSweep:
        """Package and recording objects no row refers to, older than ``min_age`` seconds."""
        db = self.master.db
        referenced = {r["storage_key"] for r in db.all("SELECT storage_key FROM packages")}
        referenced |= {r["recording"] for r in db.all("SELECT recording FROM terminal_sessions")}
        cutoff = self.clock() - min_age
        found = [
            obj
            for prefix in OBJECT_PREFIXES
            for obj in await self.master.storage.list_objects(prefix)
            if obj.key not in referenced and obj.modified <= cutoff
        ]
        return StorageSweep(objects=found, total_bytes=sum(o.size for o in found), min_age=min_age)

    async def remove_orphans(self, min_age: float) -> StorageSweep:
        """Delete what :meth:`orphans` lists; not while a backup or restore runs."""
        async with self._lock:
            sweep = await self.orphans(min_age)
            for obj in sweep.objects:
                await self.master.storage.delete(obj.key)
        if sweep.objects:
            log.warning(
                "removed %d orphaned objects (%d bytes)", len(sweep.objects), sweep.total_bytes
            )
        return attrs.evolve(sweep, removed=True)

    # --- schedule ---------------------------------------------------------------------------

    def schedule(self) -> BackupSchedule:
        raw = self.master.db.get_kv(_SCHEDULE_KEY)
        if raw:
            with contextlib.suppress(ValueError, TypeError, GdosError):
                return converter.structure(json.loads(raw), BackupSchedule)
        conf = self.master.settings.backup
        return BackupSchedule(
            interval_hours=conf.interval_hours,
            retention=conf.retention,
            include_packages=conf.include_packages,
        )

    def set_schedule(self, body: BackupSchedule) -> BackupSchedule:
        self.master.db.set_kv(_SCHEDULE_KEY, json.dumps(converter.unstructure(body)))
        return body

    async def tick(self) -> BackupInfo | None:
        """Make a scheduled backup if one is due, then apply the retention."""
        plan = self.schedule()
        if plan.interval_hours <= 0:
            return None
        scheduled = [b for b in await self.list_backups() if b.kind == BackupKind.SCHEDULED]
        now = self.clock()
        if scheduled and now - scheduled[0].created_at.timestamp() < plan.interval_hours * 3600:
            return None
        try:
            info = await self.create(
                include_packages=plan.include_packages, kind=BackupKind.SCHEDULED
            )
        except GdosError as exc:
            self._audit("backup.create", "backup:scheduled", exc.status, exc.message)
            raise
        self._audit("backup.create", f"backup:{info.name}", 201, "")
        for old in [info, *scheduled][plan.retention :]:
            try:
                await self.delete(old.name)
                self._audit("backup.delete", f"backup:{old.name}", 204, "retention")
            except GdosError as exc:
                self._audit("backup.delete", f"backup:{old.name}", exc.status, exc.message)
        return info

    def _audit(self, action: str, target: str, status: int, message: str) -> None:
        record_audit(
            self.master.db,
            principal=None,
            ip="",
            action=action,
            target=target,
            params={"scheduled": True},
            status=status,
            message=message,
            actor_kind="system",
            actor="scheduler",
        )

    async def run_schedule(self) -> None:
        """Background loop: check the schedule often enough for its interval."""
        while True:
            interval = self.schedule().interval_hours * 3600
            await asyncio.sleep(max(1.0, min(60.0, interval / 10)) if interval > 0 else 30.0)
            try:
                await self.tick()
            except GdosError as exc:
                log.error("scheduled backup failed: %s", exc.message)
            except Exception:
                log.exception("scheduled backup failed")
