"""Rollouts (docs/rollouts.md): the version an instance should run, and the rollout jobs.

``instances.version`` stays the version its worker reports; ``desired_version`` is the
one it should run, which a rollout moves. Existing instances want what they run. The
rollout jobs are kept across master restarts. This is the hand-written migration 10 of
the rollouts branch (``PRAGMA user_version`` 10 on a SQLite file it made).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(
            sa.Column("desired_version", sa.Text, nullable=False, server_default=sa.text("''"))
        )
    op.execute("UPDATE instances SET desired_version = version")
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("module_id", sa.Text, nullable=False),
        sa.Column("system_id", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("rollout", sa.Text, nullable=False),
    )
    op.create_index("rollouts_module", "rollouts", ["module_id", "started_at"])
    op.create_index("rollouts_started", "rollouts", ["started_at"])


def downgrade() -> None:
    op.drop_table("rollouts")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("desired_version")
