"""The master's SQLite database: WAL mode, ordered migrations, explicit transactions.

One connection, used from the event loop's thread. SQLite answers the small
indexed queries the master makes in microseconds, so a thread hop per query
would cost more than it saves; nothing here runs per heartbeat (the fleet
keeps that in memory and flushes on change).

Example::

    db = Database.open(Path("data/ops.db"))
    with db.transaction():
        db.execute("INSERT INTO systems ...", (...))
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gdos_sdk.filemodes import PRIVATE_FILE, private_dir, private_file

__all__ = ["MIGRATIONS", "Database"]

MIGRATIONS: list[str] = [
    # 1: the foundation schema
    """
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        prefix TEXT NOT NULL,
        secret_hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        expires_at REAL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        hostname TEXT NOT NULL,
        alias TEXT NOT NULL DEFAULT '',
        addresses TEXT NOT NULL DEFAULT '[]',
        labels TEXT NOT NULL DEFAULT '{}',
        fingerprint TEXT,
        credential_hash TEXT UNIQUE,
        approved INTEGER NOT NULL DEFAULT 1,
        planned INTEGER NOT NULL DEFAULT 0,
        agent_version TEXT,
        created_at REAL NOT NULL,
        last_seen REAL
    );
    CREATE TABLE packages (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        manifest TEXT NOT NULL,
        storage_key TEXT NOT NULL,
        uploaded_by TEXT NOT NULL,
        uploaded_at REAL NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE systems (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL
    );
    CREATE TABLE modules (
        id TEXT PRIMARY KEY,
        system_id TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        package TEXT NOT NULL,
        version TEXT NOT NULL,
        env TEXT NOT NULL DEFAULT '{}',
        args TEXT,
        start_order INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        UNIQUE (system_id, name)
    );
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        module_id TEXT NOT NULL REFERENCES modules(id),
        system_id TEXT NOT NULL REFERENCES systems(id),
        node_id TEXT NOT NULL REFERENCES nodes(id),
        package TEXT NOT NULL,
        version TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        desired_state TEXT NOT NULL,
        state TEXT NOT NULL,
        health TEXT NOT NULL DEFAULT 'none',
        pid INTEGER,
        started_at REAL,
        restarts INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        reason TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX instances_node ON instances(node_id);
    CREATE INDEX instances_module ON instances(module_id);
    CREATE INDEX instances_system ON instances(system_id);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        actor_kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        ip TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        params TEXT NOT NULL,
        result TEXT NOT NULL,
        status INTEGER NOT NULL,
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_ts ON audit(ts);
    CREATE INDEX audit_action ON audit(action);
    CREATE INDEX audit_actor ON audit(actor);
    """,
    # 2: alerts
    """
    CREATE TABLE alert_rules (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE alert_state (
        rule_id TEXT NOT NULL,
        target TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (rule_id, target)
    );
    CREATE TABLE alert_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        rule_id TEXT NOT NULL,
        rule_name TEXT NOT NULL,
        target TEXT NOT NULL,
        target_name TEXT NOT NULL,
        severity TEXT NOT NULL,
        labels TEXT NOT NULL,
        state TEXT NOT NULL,
        value REAL,
        started_at REAL NOT NULL,
        ended_at REAL,
        end_reason TEXT NOT NULL DEFAULT '',
        silenced INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX alert_events_started ON alert_events(started_at);
    CREATE INDEX alert_events_state ON alert_events(state);
    CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE receivers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        url TEXT NOT NULL,
        secret TEXT NOT NULL DEFAULT '',
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL
    );
    """,
    # 3: adopted modules (docs/adoption.md): a kind and an adoption spec instead of a package
    """
    ALTER TABLE modules ADD COLUMN kind TEXT NOT NULL DEFAULT 'package';
    ALTER TABLE modules ADD COLUMN adoption TEXT;
    """,
    # 4: a module's health_check override (docs/service-json.md)
    """
    ALTER TABLE modules ADD COLUMN health_check TEXT;
    """,
    # 5: web terminal sessions (docs/terminal.md); recordings live in storage under recordings/
    """
    CREATE TABLE terminal_sessions (
        id TEXT PRIMARY KEY,
        node_id TEXT NOT NULL,
        user TEXT NOT NULL,
        user_id TEXT NOT NULL DEFAULT '',
        ip TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        reason TEXT NOT NULL DEFAULT '',
        exit_code INTEGER,
        rows INTEGER NOT NULL DEFAULT 24,
        cols INTEGER NOT NULL DEFAULT 80,
        recording TEXT NOT NULL DEFAULT '',
        recording_size INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX terminal_sessions_started ON terminal_sessions(started_at);
    """,
    # 6: ordered batch actions, kept across master restarts (docs/batches.md)
    """
    CREATE TABLE batch_jobs (
        id TEXT PRIMARY KEY,
        system_id TEXT NOT NULL,
        state TEXT NOT NULL,
        started_at REAL NOT NULL,
        job TEXT NOT NULL
    );
    CREATE INDEX batch_jobs_started ON batch_jobs(started_at);
    """,
    # 7: a generated first-admin password must be changed at the first login (docs/security.md)
    """
    ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;
    """,
    # 8: the role model and secrets (docs/security.md): a module's account and write-only
    # env names; a planned node's one-time claim token (hashed) and the planned node a
    # pending node would take over once approved
    """
    ALTER TABLE modules ADD COLUMN run_user TEXT NOT NULL DEFAULT '';
    ALTER TABLE modules ADD COLUMN run_group TEXT NOT NULL DEFAULT '';
    ALTER TABLE modules ADD COLUMN secret_env TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE nodes ADD COLUMN claim_hash TEXT;
    ALTER TABLE nodes ADD COLUMN claims TEXT;
    """,
    # 9: a restart asked for while the instance's node was offline, sent when it returns
    """
    ALTER TABLE instances ADD COLUMN restart_pending INTEGER NOT NULL DEFAULT 0;
    """,
    # 10: rollouts (docs/rollouts.md): the version an instance should run (``version`` is
    # the one its worker reports), and the rollout jobs, kept across master restarts
    """
    ALTER TABLE instances ADD COLUMN desired_version TEXT NOT NULL DEFAULT '';
    UPDATE instances SET desired_version = version;
    CREATE TABLE rollouts (
        id TEXT PRIMARY KEY,
        module_id TEXT NOT NULL,
        system_id TEXT NOT NULL,
        state TEXT NOT NULL,
        started_at REAL NOT NULL,
        rollout TEXT NOT NULL
    );
    CREATE INDEX rollouts_module ON rollouts(module_id, started_at);
    CREATE INDEX rollouts_started ON rollouts(started_at);
    """,
    # 11: a join is confirmed by the worker's first frame after its welcome (until then the
    # worker may join again: its welcome may have been lost); planned nodes found by index
    # (a mass join looked at every node for each joining worker)
    """
    ALTER TABLE nodes ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX nodes_planned ON nodes(planned, hostname);
    """,
]


class Database:
    """A SQLite connection with the master's schema applied."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Database:
        """Open (creating if needed) the database at ``path`` and migrate it."""
        if not path.parent.is_dir():
            private_dir(path.parent)
        # Made 0600 before SQLite opens it: SQLite gives the -wal and -shm files the
        # database file's mode. An existing file (and its -wal/-shm) is repaired.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE))
        for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if part.exists():
                private_file(part)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db = cls(conn, path)
        db._configure()
        db.migrate()
        return db

    @classmethod
    def memory(cls) -> Database:
        """An in-memory database for tests."""
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db = cls(conn, None)
        db._configure()
        db.migrate()
        return db

    def _configure(self) -> None:
        self.conn.row_factory = sqlite3.Row
        # WAL: readers never block the writer; NORMAL sync is durable across
        # process crashes (kill -9), which is the failure we must survive.
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA busy_timeout=5000")

    @property
    def schema_version(self) -> int:
        row = self.conn.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    def migrate(self) -> None:
        """Apply the migrations this file has and the database lacks, each atomically."""
        current = self.schema_version
        if current > len(MIGRATIONS):
            raise RuntimeError(
                f"database schema {current} is newer than this master ({len(MIGRATIONS)})"
            )
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(script):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All statements inside commit together or not at all."""
        if self.conn.in_transaction:  # nested: the outer block owns the commit
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(self.conn.execute(sql, params).fetchall())

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def get_kv(self, key: str) -> str | None:
        value = self.scalar("SELECT value FROM kv WHERE key = ?", (key,))
        return None if value is None else str(value)

    def set_kv(self, key: str, value: str) -> None:
        self.execute(
            "INSERT INTO kv(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.conn.close()


def _statements(script: str) -> list[str]:
    # Migrations hold plain DDL without semicolons inside strings, so a split is safe;
    # executescript() would commit implicitly and break the migration's atomicity.
    return [s.strip() for s in script.split(";") if s.strip()]
