"""The hand-written migrations the master used before Alembic, frozen.

A SQLite database made by a master of that time records how many of these it has in
``PRAGMA user_version``. :func:`gdos_master.migrations.upgrade` applies the ones such a
database lacks and hands it to Alembic at revision ``0009``, whose schema equals all nine
(a legacy entry N that a branch added before the switch became revision ``000N``: 10,
rollouts, and 11, the join confirmation; a file at 10 or 11 is stamped at that revision).
Never add to or change this list: schema changes are Alembic revisions in ``versions/``.
"""

from __future__ import annotations

__all__ = ["LEGACY"]

LEGACY: tuple[str, ...] = (
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
)
