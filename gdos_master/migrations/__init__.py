"""Schema migrations for SQLite and PostgreSQL (Alembic), run by the master at start.

:func:`upgrade` brings a database to the newest revision in ``versions/`` in one
transaction: a new database is created, a SQLite file made before Alembic (``PRAGMA
user_version`` of the frozen :data:`~gdos_master.migrations.legacy.LEGACY` list) is
finished with those scripts and stamped, and anything older is upgraded. Users need no
``alembic.ini``; developers add a revision with ``tools/new_migration.py``.

Revision ids are four-digit numbers that continue the legacy numbering (the first is
``0009``), so a database's *schema number* only grows; on SQLite it is also written to
``PRAGMA user_version``, which makes an older master refuse a newer file.

Several masters may start at once on one PostgreSQL database: the upgrade holds a
transaction-level advisory lock, so one migrates and the others find it done. On SQLite
the transaction begins ``IMMEDIATE``, which has the same effect.

Example::

    engine = migration_engine(sqlite_path=Path("data/ops.db"))
    upgrade(engine)  # -> 11, the newest schema number
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gdos_master.migrations.legacy import LEGACY

# Alembic and SQLAlchemy are imported when a database must be created or migrated, not
# on every start: a master whose database is current needs neither (see is_current).
if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "SchemaTooNew",
    "alembic_config",
    "head",
    "is_current",
    "migration_engine",
    "sqlalchemy_url",
    "upgrade",
]

HERE = Path(__file__).parent
VERSIONS = HERE / "versions"

#: Key of the PostgreSQL advisory lock held while migrating ("GDOS" in ASCII).
ADVISORY_LOCK = 0x47444F53


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer master than this one."""


def alembic_config() -> Config:
    """Alembic's configuration without a file: the scripts ship inside the package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


@functools.cache
def head() -> int:
    """The schema number this master's newest revision makes.

    Read from the file names (``NNNN_slug.py``) without loading Alembic; a test checks
    that it is Alembic's single head.
    """
    return max(int(p.name[:4]) for p in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))


def is_current(version_num: str | None) -> bool:
    """Whether a database whose ``alembic_version`` holds ``version_num`` needs nothing."""
    return version_num is not None and version_num.isdigit() and int(version_num) == head()


def sqlalchemy_url(url: str) -> str:
    """A ``postgresql://`` URL as SQLAlchemy names it with the psycopg 3 driver."""
    scheme, sep, rest = url.partition("://")
    if scheme in {"postgres", "postgresql"}:
        return f"postgresql+psycopg{sep}{rest}"
    return url


def migration_engine(*, sqlite_path: Path | None = None, url: str = "") -> sa.Engine:
    """An engine for :func:`upgrade` (and the schema tools): a SQLite file or a URL."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    if sqlite_path is None:
        return sa.create_engine(sqlalchemy_url(url), poolclass=NullPool)
    engine = sa.create_engine(f"sqlite:///{sqlite_path}", poolclass=NullPool)

    # Python's sqlite3 would begin a transaction lazily, before the first write, and
    # commit on its own before DDL: leave it in autocommit mode and begin IMMEDIATE
    # ourselves, so that the whole upgrade is one transaction that holds the write lock.
    @sa.event.listens_for(engine, "connect")
    def _autocommit(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def upgrade(engine: sa.Engine) -> int:
    """Bring the database to the newest revision, atomically; return its schema number.

    Raises:
        SchemaTooNew: a newer master migrated this database.
    """
    import sqlalchemy as sa
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.util import CommandError

    with engine.connect() as conn, conn.begin():
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            _bridge_legacy(conn)
        else:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
        current = MigrationContext.configure(conn).get_current_revision()
        if current is None and not sa.inspect(conn).get_table_names():
            # An empty database gets the newest schema at once (what the revisions add
            # up to, which a test checks) rather than revision after revision.
            for statement in _create_statements(conn.dialect):
                conn.exec_driver_sql(statement)
            MigrationContext.configure(conn).stamp(_scripts(), "head")
        elif current is not None and int(current) > head():
            raise SchemaTooNew(
                f"the database has schema {int(current)}, newer than this master's ({head()});"
                " upgrade the master"
            )
        else:
            config = alembic_config()
            config.attributes["connection"] = conn
            try:
                command.upgrade(config, "head")
            except CommandError as exc:  # e.g. a revision this master does not have
                raise SchemaTooNew(f"cannot migrate the database: {exc}") from None
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA user_version = {head()}")
    return head()


def _bridge_legacy(conn: sa.Connection) -> None:
    """Hand a SQLite file of the hand-written migrations over to Alembic."""
    import sqlalchemy as sa
    from alembic.runtime.migration import MigrationContext
    from alembic.util import CommandError

    version = int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())
    if version == 0 or sa.inspect(conn).has_table("alembic_version"):
        return  # a new file, or one Alembic manages already
    if version > len(LEGACY):
        # A legacy entry a branch added before the switch is the revision of its number
        # (10: rollouts, 11: join confirmation), which makes the same schema.
        try:
            known = _scripts().get_revision(f"{version:04d}") is not None
        except CommandError:
            known = False
        if not known:
            raise SchemaTooNew(
                f"the database has schema {version}, newer than this master's ({head()});"
                " upgrade the master"
            )
    for script in LEGACY[version:]:
        for statement in _statements(script):
            conn.exec_driver_sql(statement)
    MigrationContext.configure(conn).stamp(_scripts(), f"{max(version, len(LEGACY)):04d}")


_CREATE: dict[str, list[str]] = {}


def _create_statements(dialect: sa.Dialect) -> list[str]:
    """``CREATE TABLE`` and ``CREATE INDEX`` for the newest schema, compiled once."""
    from sqlalchemy.schema import CreateIndex, CreateTable

    from gdos_master.schema import metadata

    if dialect.name in _CREATE:
        return _CREATE[dialect.name]
    out = _CREATE[dialect.name] = []
    for table in metadata.sorted_tables:
        out.append(str(CreateTable(table).compile(dialect=dialect)))
        out.extend(str(CreateIndex(index).compile(dialect=dialect)) for index in table.indexes)
    return out


def _statements(script: str) -> list[str]:
    # The legacy scripts hold plain DDL without semicolons inside strings.
    return [s.strip() for s in script.split(";") if s.strip()]
