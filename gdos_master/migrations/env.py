"""Alembic's environment: run the revisions on the connection the caller passes.

:func:`gdos_master.migrations.upgrade` passes an open connection inside its transaction
(``config.attributes["connection"]``); there is no ``alembic.ini`` and no URL here.
"""

from __future__ import annotations

from alembic import context

from gdos_master.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters most things by copying the table: Alembic's batch mode does it.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
