"""The schema of the last hand-written migration (legacy ``user_version`` 9).

Revisions are numbered after the nine hand-written migrations they replace, so a
database's schema number only grows. A SQLite database made before Alembic is brought
to legacy version 9 by the frozen scripts in ``gdos_master/migrations/legacy.py`` and
stamped with this revision; a new database of either engine is created by it.

Revision ID: 0009
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _text(name: str, default: str | None = None, *, nullable: bool = False) -> sa.Column[str]:
    server_default = None if default is None else sa.text(f"'{default}'")
    return sa.Column(name, sa.Text, nullable=nullable, server_default=server_default)


def _int(name: str, default: int | None = None, *, nullable: bool = False) -> sa.Column[int]:
    server_default = None if default is None else sa.text(str(default))
    return sa.Column(name, sa.Integer, nullable=nullable, server_default=server_default)


def _time(name: str, *, nullable: bool = False) -> sa.Column[float]:
    return sa.Column(name, sa.Double, nullable=nullable)


def _key(name: str = "id") -> sa.Column[str]:
    return sa.Column(name, sa.Text, primary_key=True)


def _auto_id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def _ref(name: str, target: str, *, cascade: bool = False) -> sa.Column[str]:
    key = sa.ForeignKey(target, ondelete="CASCADE" if cascade else None)
    return sa.Column(name, sa.Text, key, nullable=False)


def upgrade() -> None:
    op.create_table("kv", _key("key"), _text("value"))
    op.create_table(
        "users",
        _key(),
        _text("username"),
        _text("password_hash"),
        _text("role"),
        _int("disabled", 0),
        _time("created_at"),
        _int("must_change_password", 0),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "api_tokens",
        _key(),
        _ref("user_id", "users.id", cascade=True),
        _text("name"),
        _text("role"),
        _text("prefix"),
        _text("secret_hash"),
        _time("created_at"),
        _time("expires_at", nullable=True),
        _int("revoked", 0),
        sa.UniqueConstraint("secret_hash"),
    )
    op.create_table(
        "sessions",
        _key("id_hash"),
        _ref("user_id", "users.id", cascade=True),
        _text("csrf"),
        _time("created_at"),
        _time("expires_at"),
    )
    op.create_table(
        "nodes",
        _key(),
        _text("hostname"),
        _text("alias", ""),
        _text("addresses", "[]"),
        _text("labels", "{}"),
        _text("fingerprint", nullable=True),
        _text("credential_hash", nullable=True),
        _int("approved", 1),
        _int("planned", 0),
        _text("agent_version", nullable=True),
        _time("created_at"),
        _time("last_seen", nullable=True),
        _text("claim_hash", nullable=True),
        _text("claims", nullable=True),
        sa.UniqueConstraint("credential_hash"),
    )
    op.create_table(
        "packages",
        _key("name"),
        _key("version"),
        _text("sha256"),
        _int("size"),
        _text("description", ""),
        _text("manifest"),
        _text("storage_key"),
        _text("uploaded_by"),
        _time("uploaded_at"),
    )
    op.create_table(
        "systems",
        _key(),
        _text("name"),
        _text("description", ""),
        _time("created_at"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "modules",
        _key(),
        _ref("system_id", "systems.id", cascade=True),
        _text("name"),
        _text("package"),
        _text("version"),
        _text("env", "{}"),
        _text("args", nullable=True),
        _int("start_order", 0),
        _time("created_at"),
        _text("kind", "package"),
        _text("adoption", nullable=True),
        _text("health_check", nullable=True),
        _text("run_user", ""),
        _text("run_group", ""),
        _text("secret_env", "[]"),
        sa.UniqueConstraint("system_id", "name"),
    )
    op.create_table(
        "instances",
        _key(),
        _ref("module_id", "modules.id"),
        _ref("system_id", "systems.id"),
        _ref("node_id", "nodes.id"),
        _text("package"),
        _text("version"),
        _text("sha256"),
        _text("desired_state"),
        _text("state"),
        _text("health", "none"),
        _int("pid", nullable=True),
        _time("started_at", nullable=True),
        _int("restarts", 0),
        _int("exit_code", nullable=True),
        _text("reason", ""),
        _time("created_at"),
        _time("updated_at"),
        _int("restart_pending", 0),
    )
    op.create_index("instances_node", "instances", ["node_id"])
    op.create_index("instances_module", "instances", ["module_id"])
    op.create_index("instances_system", "instances", ["system_id"])
    op.create_table(
        "audit",
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
        _text("message", ""),
        sqlite_autoincrement=True,
    )
    op.create_index("audit_ts", "audit", ["ts"])
    op.create_index("audit_action", "audit", ["action"])
    op.create_index("audit_actor", "audit", ["actor"])
    op.create_table(
        "alert_rules",
        _key(),
        _text("name"),
        _text("body"),
        _time("created_at"),
        _time("updated_at"),
    )
    op.create_table("alert_state", _key("rule_id"), _key("target"), _text("body"))
    op.create_table(
        "alert_events",
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
        _text("end_reason", ""),
        _int("silenced", 0),
        sqlite_autoincrement=True,
    )
    op.create_index("alert_events_started", "alert_events", ["started_at"])
    op.create_index("alert_events_state", "alert_events", ["state"])
    op.create_table("silences", _key(), _text("body"), _text("created_by"), _time("created_at"))
    op.create_table(
        "receivers",
        _key(),
        _text("name"),
        _text("url"),
        _text("secret", ""),
        _int("enabled", 1),
        _time("created_at"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "terminal_sessions",
        _key(),
        _text("node_id"),
        _text("user"),
        _text("user_id", ""),
        _text("ip", ""),
        _text("state"),
        _time("started_at"),
        _time("ended_at", nullable=True),
        _text("reason", ""),
        _int("exit_code", nullable=True),
        _int("rows", 24),
        _int("cols", 80),
        _text("recording", ""),
        _int("recording_size", 0),
    )
    op.create_index("terminal_sessions_started", "terminal_sessions", ["started_at"])
    op.create_table(
        "batch_jobs",
        _key(),
        _text("system_id"),
        _text("state"),
        _time("started_at"),
        _text("job"),
    )
    op.create_index("batch_jobs_started", "batch_jobs", ["started_at"])


def downgrade() -> None:
    raise NotImplementedError("the first schema has no older one to return to")
