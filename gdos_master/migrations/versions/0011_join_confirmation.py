"""A join is confirmed by the worker's first frame after its welcome; planned nodes by index.

Until it is confirmed a worker may join again (its welcome may have been lost); nodes
that exist are confirmed. A mass join looked at every node for each joining worker:
``nodes_planned`` finds planned nodes by hostname. This is the hand-written migration 11
of the scale branch (``PRAGMA user_version`` 11 on a SQLite file it made).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(
            sa.Column("confirmed", sa.Integer, nullable=False, server_default=sa.text("1"))
        )
    op.create_index("nodes_planned", "nodes", ["planned", "hostname"])


def downgrade() -> None:
    op.drop_index("nodes_planned", "nodes")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("confirmed")
