"""Node leases and the leader lease: several masters on one PostgreSQL (docs/scale-out.md).

``node_leases``: the master a worker is connected to owns its node until the lease
expires (``connected`` 0 once the channel closed: the lease then runs out after the
offline grace). ``master_leases``: ``leader``, held by the elected master, and
``master:<id>``, each running master's own. Batch jobs and rollouts record the master
running them. All of it stays empty with one master and no bus.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "master_leases",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("master_id", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("term", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "node_leases",
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("master_id", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("connected", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.PrimaryKeyConstraint("node_id"),
    )
    op.create_index("node_leases_master", "node_leases", ["master_id"])
    for table in ("batch_jobs", "rollouts"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("master_id", sa.Text(), nullable=False, server_default=sa.text("''"))
            )


def downgrade() -> None:
    for table in ("batch_jobs", "rollouts"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("master_id")
    op.drop_index("node_leases_master", "node_leases")
    op.drop_table("node_leases")
    op.drop_table("master_leases")
