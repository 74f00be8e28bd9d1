"""The master relaying a terminal session (several masters: docs/scale-out.md).

``terminal_sessions.master_id``: the master holding the session (its relay, recording
and audit). A master starting closes the open sessions of its own and of masters that
are gone, not those another live master is relaying; the terminal caps count the open
sessions of every live master.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("terminal_sessions") as batch:
        batch.add_column(
            sa.Column("master_id", sa.Text(), nullable=False, server_default=sa.text("''"))
        )


def downgrade() -> None:
    with op.batch_alter_table("terminal_sessions") as batch:
        batch.drop_column("master_id")
