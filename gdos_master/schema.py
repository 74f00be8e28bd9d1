"""The master's tables, one definition for SQLite and PostgreSQL (SQLAlchemy Core).

This is the schema as the newest migration leaves it (``gdos_master/migrations``); a test
checks that the two agree on both engines. The master's queries are plain SQL in the
small subset both engines share (docs/database.md); these definitions serve the
migrations, the schema check and the engine-neutral copy that backups use.

Types are chosen so that both engines store the same values: ``Text`` for strings and
JSON documents, ``Integer`` for counts and 0/1 flags, ``Double`` for Unix timestamps
(PostgreSQL's ``REAL`` would be single precision) and 64-bit serial keys on PostgreSQL.

Example::

    from gdos_master.schema import metadata
    metadata.tables["nodes"].c.hostname
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["AUTO_ID_TABLES", "metadata"]

metadata = sa.MetaData()

#: Tables whose integer ``id`` the database assigns (a sequence on PostgreSQL).
AUTO_ID_TABLES = ("audit", "alert_events")


def _text(name: str, *, default: str | None = None, nullable: bool = False) -> sa.Column[str]:
    server_default = None if default is None else sa.text(f"'{default}'")
    return sa.Column(name, sa.Text, nullable=nullable, server_default=server_default)


def _int(name: str, *, default: int | None = None, nullable: bool = False) -> sa.Column[int]:
    server_default = None if default is None else sa.text(str(default))
    return sa.Column(name, sa.Integer, nullable=nullable, server_default=server_default)


def _time(name: str, *, nullable: bool = False) -> sa.Column[float]:
    return sa.Column(name, sa.Double, nullable=nullable)


def _auto_id() -> sa.Column[int]:
    # SQLite: INTEGER PRIMARY KEY AUTOINCREMENT (ids never reused); PostgreSQL: BIGSERIAL.
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


sa.Table(
    "kv",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    _text("value"),
)

sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _text("username", nullable=False),
    _text("password_hash"),
    _text("role"),
    _int("disabled", default=0),
    _time("created_at"),
    _int("must_change_password", default=0),
    sa.UniqueConstraint("username"),
)

sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    _text("name"),
    _text("role"),
    _text("prefix"),
    _text("secret_hash"),
    _time("created_at"),
    _time("expires_at", nullable=True),
    _int("revoked", default=0),
    sa.UniqueConstraint("secret_hash"),
)

sa.Table(
    "sessions",
    metadata,
    sa.Column("id_hash", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    _text("csrf"),
    _time("created_at"),
    _time("expires_at"),
)

sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _text("hostname"),
    _text("alias", default=""),
    _text("addresses", default="[]"),
    _text("labels", default="{}"),
    _text("fingerprint", nullable=True),
    _text("credential_hash", nullable=True),
    _int("approved", default=1),
    _int("planned", default=0),
    _text("agent_version", nullable=True),
    _time("created_at"),
    _time("last_seen", nullable=True),
    _text("claim_hash", nullable=True),
    _text("claims", nullable=True),
    _int("confirmed", default=1),
    sa.UniqueConstraint("credential_hash"),
    sa.Index("nodes_planned", "planned", "hostname"),
)

sa.Table(
    "packages",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("version", sa.Text, primary_key=True),
    _text("sha256"),
    _int("size"),
    _text("description", default=""),
    _text("manifest"),
    _text("storage_key"),
    _text("uploaded_by"),
    _time("uploaded_at"),
)

sa.Table(
    "systems",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _text("name"),
    _text("description", default=""),
    _time("created_at"),
    sa.UniqueConstraint("name"),
)

sa.Table(
    "modules",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column(
        "system_id", sa.Text, sa.ForeignKey("systems.id", ondelete="CASCADE"), nullable=False
    ),
    _text("name"),
    _text("package"),
    _text("version"),
    _text("env", default="{}"),
    _text("args", nullable=True),
    _int("start_order", default=0),
    _time("created_at"),
    _text("kind", default="package"),
    _text("adoption", nullable=True),
    _text("health_check", nullable=True),
    _text("run_user", default=""),
    _text("run_group", default=""),
    _text("secret_env", default="[]"),
    sa.UniqueConstraint("system_id", "name"),
)

sa.Table(
    "instances",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("module_id", sa.Text, sa.ForeignKey("modules.id"), nullable=False),
    sa.Column("system_id", sa.Text, sa.ForeignKey("systems.id"), nullable=False),
    sa.Column("node_id", sa.Text, sa.ForeignKey("nodes.id"), nullable=False),
    _text("package"),
    _text("version"),
    _text("sha256"),
    _text("desired_state"),
    _text("state"),
    _text("health", default="none"),
    _int("pid", nullable=True),
    _time("started_at", nullable=True),
    _int("restarts", default=0),
    _int("exit_code", nullable=True),
    _text("reason", default=""),
    _time("created_at"),
    _time("updated_at"),
    _int("restart_pending", default=0),
    _text("desired_version", default=""),
    sa.Index("instances_node", "node_id"),
    sa.Index("instances_module", "module_id"),
    sa.Index("instances_system", "system_id"),
)

sa.Table(
    "audit",
    metadata,
    _auto_id(),
    _time("ts"),
    _text("actor_kind"),
    _text("actor"),
    _text("ip"),
    _text("action"),
    _text("target"),
    _text("params"),
    _text("result"),
    _int("status"),
    _text("message", default=""),
    sa.Index("audit_ts", "ts"),
    sa.Index("audit_action", "action"),
    sa.Index("audit_actor", "actor"),
    sqlite_autoincrement=True,
)

sa.Table(
    "alert_rules",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _text("name"),
    _text("body"),
    _time("created_at"),
    _time("updated_at"),
)

sa.Table(
    "alert_state",
    metadata,
    sa.Column("rule_id", sa.Text, primary_key=True),
    sa.Column("target", sa.Text, primary_key=True),
    _text("body"),
)

sa.Table(
    "alert_events",
    metadata,
    _auto_id(),
    _text("rule_id"),
    _text("rule_name"),
    _text("target"),
    _text("target_name"),
    _text("severity"),
    _text("labels"),
    _text("state"),
    sa.Column("value", sa.Double, nullable=True),
    _time("started_at"),
    _time("ended_at", nullable=True),
    _text("end_reason", default=""),
    _int("silenced", default=0),
    sa.Index("alert_events_started", "started_at"),
    sa.Index("alert_events_state", "state"),
    sqlite_autoincrement=True,
)

sa.Table(
    "silences",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _text("body"),
    _text("created_by"),
    _time("created_at"),
)

sa.Table(
    "receivers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _text("name"),
    _text("url"),
    _text("secret", default=""),
    _int("enabled", default=1),
    _time("created_at"),
    sa.UniqueConstraint("name"),
)

sa.Table(
    "terminal_sessions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _text("node_id"),
    # "user" is a reserved word in PostgreSQL: queries write it quoted ("user").
    _text("user"),
    _text("user_id", default=""),
    _text("ip", default=""),
    _text("state"),
    _time("started_at"),
    _time("ended_at", nullable=True),
    _text("reason", default=""),
    _int("exit_code", nullable=True),
    _int("rows", default=24),
    _int("cols", default=80),
    _text("recording", default=""),
    _int("recording_size", default=0),
    _text("master_id", default=""),  # the master relaying it (several masters)
    sa.Index("terminal_sessions_started", "started_at"),
)

sa.Table(
    "batch_jobs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _text("system_id"),
    _text("state"),
    _time("started_at"),
    _text("job"),
    _text("master_id", default=""),  # the master running it (several masters)
    sa.Index("batch_jobs_started", "started_at"),
)

sa.Table(
    "rollouts",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _text("module_id"),
    _text("system_id"),
    _text("state"),
    _time("started_at"),
    _text("rollout"),
    _text("master_id", default=""),  # the master running it (several masters)
    sa.Index("rollouts_module", "module_id", "started_at"),
    sa.Index("rollouts_started", "started_at"),
)

# Several masters (docs/scale-out.md): the master a worker is connected to owns its node
# while its lease is fresh; master_leases holds the leader lease (name 'leader': the
# elected master runs the work that must happen once) and each running master's own
# (name 'master:<id>'). Unused (empty) with one master and no bus.
sa.Table(
    "node_leases",
    metadata,
    sa.Column("node_id", sa.Text, primary_key=True),
    _text("master_id"),
    _time("expires_at"),
    _int("connected", default=1),
    sa.Index("node_leases_master", "master_id"),
)

sa.Table(
    "master_leases",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    _text("master_id"),
    _time("expires_at"),
    _int("term", default=1),
)
