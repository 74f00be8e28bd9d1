"""Copy the master's tables between PostgreSQL and a SQLite file, for backups.

A GDOS backup holds the database as a SQLite file whatever the master runs on, so one
archive restores on either engine (docs/backups.md). On PostgreSQL:

* :func:`snapshot_to_sqlite` reads every table in one ``REPEATABLE READ`` read-only
  transaction (a consistent snapshot while the masters keep writing) on a connection of
  its own, into a new SQLite file made by the same migrations.
* :func:`replace_all` empties the live tables and fills them from a checked SQLite file
  in one transaction on the master's connection: every reader sees the old state or the
  new one, never a mix. Sequences continue after the restored ids.

Both engines carry the same schema (:mod:`gdos_master.schema`), so the copy is by
column name, table after table in foreign-key order, in batches.

Example::

    schema = snapshot_to_sqlite(db.url, Path("/tmp/snap.db"))
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from gdos_master import migrations
from gdos_master.db import PostgresDatabase
from gdos_master.schema import AUTO_ID_TABLES, metadata

__all__ = ["replace_all", "snapshot_to_sqlite"]

BATCH = 1000


def _tables() -> list[sa.Table]:
    return list(metadata.sorted_tables)  # parents before children


def _columns(table: sa.Table) -> list[str]:
    return [column.name for column in table.columns]


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


class _Fetching(Protocol):
    def fetchmany(self, size: int, /) -> Sequence[Sequence[Any]]: ...


def _batches(cursor: _Fetching) -> Iterator[list[tuple[Any, ...]]]:
    while rows := cursor.fetchmany(BATCH):
        yield [tuple(r) for r in rows]


def snapshot_to_sqlite(url: str, dest: Path) -> int:
    """Copy the PostgreSQL database at ``url`` into a new SQLite file; return its schema.

    Runs in a worker thread: it opens connections of its own.
    """
    import psycopg

    engine = migrations.migration_engine(sqlite_path=dest)
    try:
        schema = migrations.upgrade(engine)
    finally:
        engine.dispose()
    out = sqlite3.connect(dest, isolation_level=None)
    try:
        out.execute("BEGIN")
        with psycopg.connect(url, autocommit=True) as source:
            source.read_only = True
            source.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with source.transaction():
                for table in _tables():
                    columns = _columns(table)
                    marks = ", ".join("?" * len(columns))
                    insert = f"INSERT INTO {table.name}({_quoted(columns)}) VALUES({marks})"
                    # A server-side cursor: a large table comes over in batches.
                    with source.cursor(name=f"backup_{table.name}") as cursor:
                        cursor.execute(f"SELECT {_quoted(columns)} FROM {table.name}")  # noqa: S608
                        for rows in _batches(cursor):
                            out.executemany(insert, rows)
        out.execute("COMMIT")
        out.execute("PRAGMA journal_mode=DELETE")
    finally:
        out.close()
    return schema


def replace_all(db: PostgresDatabase, staged: sqlite3.Connection) -> None:
    """Make the live PostgreSQL tables hold exactly the rows of ``staged``, atomically."""
    tables = _tables()
    with db.transaction():
        names = ", ".join(table.name for table in tables)
        db.execute(f"TRUNCATE {names}")
        for table in tables:
            columns = _columns(table)
            marks = ", ".join("?" * len(columns))
            insert = f"INSERT INTO {table.name}({_quoted(columns)}) VALUES({marks})"
            with contextlib.closing(
                staged.execute(f"SELECT {_quoted(columns)} FROM {table.name}")  # noqa: S608
            ) as cursor:
                for rows in _batches(cursor):
                    db.executemany(insert, rows)
        for name in AUTO_ID_TABLES:
            db.execute(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'),"  # noqa: S608
                f" COALESCE(MAX(id), 0) + 1, false) FROM {name}"
            )
