"""The master's database: SQLite in the data folder, or PostgreSQL (``database.url``).

:class:`Database` is what every domain object holds. Its queries are plain SQL strings in
the subset both engines speak (docs/database.md), with ``?`` placeholders; the
PostgreSQL side rewrites them for psycopg once per statement. Rows are read by column
name or position (``row["id"]``, ``row[0]``). The schema is created and upgraded by
Alembic (:mod:`gdos_master.migrations`) before the database is handed out.

* **SQLite** (the default): one connection in WAL mode, used from the event loop's
  thread. It answers the master's small indexed queries in microseconds, so a thread hop
  per query would cost more than it saves.
* **PostgreSQL**: one psycopg 3 connection in autocommit mode, also used from the event
  loop; a query costs a loopback or LAN round trip (docs/benchmarks.md has the figures).
  Statements run often are prepared by the server. A broken connection is opened again
  on the next query; one closed by :meth:`Database.close` is not.

Nothing here runs per heartbeat: the fleet keeps that in memory and flushes on change.

Transactions are synchronous blocks (no ``await`` inside), so within one master no other
request runs a statement in the middle of one. Across several masters sharing one
PostgreSQL, a transaction that claims work locks the rows it takes
(:attr:`Database.for_update_skip_locked`).

Example::

    db = Database.open(sqlite_path=Path("data/ops.db"))
    with db.transaction():
        db.execute("INSERT INTO systems(id, name, created_at) VALUES(?, ?, ?)", (...))
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import functools
import os
import sqlite3
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from gdos_master import migrations
from gdos_sdk.errors import ConfigError
from gdos_sdk.filemodes import PRIVATE_FILE, private_dir, private_file

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "Cursor",
    "Database",
    "PostgresDatabase",
    "Row",
    "SqliteDatabase",
    "WriteMark",
    "redact_url",
    "watch_writes",
    "writes_sent",
]


class WriteMark:
    """Whether the request under way sent PostgreSQL something that may have committed.

    Set (:attr:`sent`) just before a ``COMMIT`` or an autocommitted write goes out, so a
    connection lost after that point leaves the change's fate unknown to the master,
    while one lost before it means nothing was changed (:func:`watch_writes`).
    """

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False


_WRITES: contextvars.ContextVar[WriteMark | None] = contextvars.ContextVar(
    "gdos_db_writes", default=None
)


def watch_writes() -> WriteMark:
    """Start watching the current task's writes (each API request calls it first)."""
    mark = WriteMark()
    _WRITES.set(mark)
    return mark


def writes_sent() -> bool:
    """Whether the current request may have committed a change (see :class:`WriteMark`)."""
    mark = _WRITES.get()
    return mark is not None and mark.sent


def _sending_write() -> None:
    mark = _WRITES.get()
    if mark is not None:
        mark.sent = True


class Row(Protocol):
    """A result row: by column name or by position, iterable, with ``keys()``."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    """What :meth:`Database.execute` returns: the count of rows a write changed."""

    @property
    def rowcount(self) -> int: ...


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and messages)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = urllib.parse.quote(parts.username or "", safe="")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class Database(abc.ABC):
    """The master's database; :meth:`open` picks the engine. See the module docstring."""

    #: ``"sqlite"`` or ``"postgresql"``.
    dialect: ClassVar[str]
    #: A SQLite database's file (``None`` on PostgreSQL).
    path: Path | None = None
    #: Appended to a ``SELECT`` inside :meth:`transaction`, it locks the rows read and
    #: skips rows another transaction holds: how several masters claim work without
    #: taking the same row. Empty on SQLite, whose write transactions exclude each other.
    for_update_skip_locked: ClassVar[str] = ""

    @staticmethod
    def open(*, sqlite_path: Path | None = None, url: str = "") -> Database:
        """Open the database (``url`` if given, else the SQLite file) at the newest schema.

        Raises:
            ConfigError: the URL is not a PostgreSQL one, or its driver is missing.
        """
        if url:
            return PostgresDatabase.open_url(url)
        assert sqlite_path is not None, "give sqlite_path or url"
        return SqliteDatabase.open_path(sqlite_path)

    @property
    def schema_version(self) -> int:
        """The schema number (the newest Alembic revision applied)."""
        return int(self.scalar("SELECT version_num FROM alembic_version"))

    #: See :attr:`changes`.
    _changes: int = 0

    @property
    def changes(self) -> int:
        """The write counter: it moves whenever this facade may have changed the data.

        Every statement run through :meth:`execute`, :meth:`executemany` or
        :meth:`insert` that writes (``INSERT``, ``UPDATE``, ``DELETE``, DDL) and changed
        a row moves it by one, and the end of a transaction that wrote moves it again
        (committed or rolled back). Reads never move it. Caches of what was read
        (:class:`~gdos_master.auth.CredentialCache`, the node list, live views) keep the
        value they read at and read again once it moved. It counts alike on both engines.

        Writes by another master sharing the database do not move it: several masters
        need a signal they share (docs/database.md).
        """
        return self._changes

    def write_unseen(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a write that no cache reads (lease rows) without moving :attr:`changes`.

        Returns the count of rows changed. Not inside :meth:`transaction`.
        """
        before = self._changes
        try:
            return int(self.execute(sql, params).rowcount)
        finally:
            self._changes = before

    def changed(self) -> None:
        """Move :attr:`changes` for a write made around the facade (SQLite's backup API)."""
        self._changes += 1

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """All statements inside commit together or not at all (nested: the outer owns)."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement with ``?`` placeholders."""

    @abc.abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""

    @abc.abstractmethod
    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an ``INSERT`` into a table with a database-assigned ``id``; return the id."""

    @abc.abstractmethod
    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of the result, or ``None``."""

    @abc.abstractmethod
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of the result."""

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or ``None``."""
        row = self.one(sql, params)
        return None if row is None else row[0]

    def get_kv(self, key: str) -> str | None:
        value = self.scalar("SELECT value FROM kv WHERE key = ?", (key,))
        return None if value is None else str(value)

    def set_kv(self, key: str, value: str) -> None:
        self.execute(
            "INSERT INTO kv(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the data is, for the start banner and logs (no password)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection."""


class SqliteDatabase(Database):
    """The embedded default: a SQLite file in WAL mode (:meth:`Database.open`)."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, path: Path | None) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open_path(cls, path: Path) -> SqliteDatabase:
        """Open (creating if needed) the file at ``path`` and migrate it."""
        if not path.parent.is_dir():
            private_dir(path.parent)
        # Made 0600 before SQLite opens it: SQLite gives the -wal and -shm files the
        # database file's mode. An existing file (and its -wal/-shm) is repaired.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE))
        for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if part.exists():
                private_file(part)
        conn = cls.connect(path)
        try:
            try:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            except sqlite3.OperationalError:  # no such table: a new or a legacy file
                row = None
            if not migrations.is_current(None if row is None else row[0]):
                _upgrade(migrations.migration_engine(sqlite_path=path))
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    @staticmethod
    def connect(path: Path) -> sqlite3.Connection:
        """A connection configured as the master uses it (autocommit, WAL, foreign keys)."""
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        # WAL: readers never block the writer; NORMAL sync is durable across
        # process crashes (kill -9), which is the failure we must survive.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self.conn.in_transaction:  # nested: the outer block owns the commit
            yield
            return
        before = self._changes
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            if self._changes != before:
                self._changes += 1

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        cursor = self.conn.execute(sql, params)
        if _writes(sql) and cursor.rowcount:  # -1 for DDL: counted
            self._changes += 1
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self.conn.executemany(sql, rows).rowcount:
            self._changes += 1

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._changes += 1
        return int(self.conn.execute(sql, params).lastrowid or 0)

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def describe(self) -> str:
        return str(self.path)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.conn.close()


class PgRow:
    """A PostgreSQL result row read like :class:`sqlite3.Row`."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: Sequence[Any]) -> None:
        self._names = names
        self._values = values

    def __getitem__(self, key: int | str, /) -> Any:
        if isinstance(key, str):
            return self._values[self._names[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._names)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._names, self._values, strict=True))!r})"


def _pg_rows(cursor: Any) -> Any:
    """psycopg row factory: :class:`PgRow` with the column names of this result."""
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: PgRow(names, values)


def _upgrade(engine: Any) -> None:
    try:
        migrations.upgrade(engine)
    finally:
        engine.dispose()


#: First words of the statements that count as writes (:attr:`Database.changes`).
_WRITE_VERBS = frozenset(
    {"INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "CREATE", "DROP", "ALTER", "TRUNCATE"}
)


@functools.lru_cache(maxsize=4096)
def _writes(sql: str) -> bool:
    """Whether ``sql`` may change data (``WITH`` counts: it may hold a write)."""
    words = sql.lstrip()[:8].split(None, 1)
    return bool(words) and words[0].upper() in _WRITE_VERBS


@functools.lru_cache(maxsize=4096)
def _pg_statement(sql: str) -> tuple[str, bool]:
    """``sql`` with ``?`` as psycopg's ``%s`` (``%`` doubled); and whether it writes."""
    out: list[str] = []
    quote = ""
    for char in sql:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        out.append("%%" if char == "%" else char)
    return "".join(out), _writes(sql)


class PostgresDatabase(Database):
    """A PostgreSQL database named by a ``postgresql://`` URL (:meth:`Database.open`)."""

    dialect = "postgresql"
    for_update_skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str) -> None:
        self.url = url
        from psycopg.pq import TransactionStatus

        self._idle = TransactionStatus.IDLE
        self._closed = False
        self.conn: psycopg.Connection[PgRow] = self._connect()

    @classmethod
    def open_url(cls, url: str) -> PostgresDatabase:
        """Connect to ``url`` and migrate the database it names.

        Raises:
            ConfigError: not a PostgreSQL URL, or psycopg (``gdos[postgresql]``) missing.
        """
        scheme = url.partition("://")[0]
        if scheme not in {"postgresql", "postgres"}:
            raise ConfigError(
                f"database.url must be a postgresql:// URL, not {redact_url(url)!r}"
                " (leave it empty for SQLite in the data folder)"
            )
        try:
            import psycopg
        except ImportError:
            raise ConfigError(
                "database.url names PostgreSQL, but its driver is not installed:"
                " pip install 'gdos[postgresql]'"
            ) from None
        db = cls(url)
        try:
            try:
                version = db.scalar("SELECT version_num FROM alembic_version")
            except psycopg.errors.UndefinedTable:  # a new database
                version = None
            if not migrations.is_current(version):
                _upgrade(migrations.migration_engine(url=url))
        except BaseException:
            db.close()
            raise
        return db

    def _connect(self) -> psycopg.Connection[PgRow]:
        import psycopg

        conn = psycopg.connect(self.url, autocommit=True, row_factory=_pg_rows)
        for dumper in _pg_adapters():
            conn.adapters.register_dumper(bool, dumper)
        return conn

    def _connection(self) -> psycopg.Connection[PgRow]:
        if self.conn.closed and not self._closed:  # lost, not closed by close()
            self.conn = self._connect()
        return self.conn  # after close(): psycopg refuses the statement, as sqlite3 does

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self._connection()
        if conn.info.transaction_status != self._idle:  # nested: the outer block owns the commit
            yield
            return
        before = self._changes
        try:
            with conn.transaction():
                yield
                _sending_write()  # the COMMIT goes out as the block ends
        finally:
            if self._changes != before:
                self._changes += 1

    def _writing(self, writes: bool) -> psycopg.Connection[PgRow]:
        """The connection, with the request marked if ``writes`` goes out autocommitted
        (done once the server has it; in a transaction, the COMMIT marks it)."""
        conn = self._connection()
        if writes and conn.info.transaction_status == self._idle:
            _sending_write()
        return conn

    def _run(self, sql: str, params: Sequence[Any]) -> psycopg.Cursor[PgRow]:
        statement, writes = _pg_statement(sql)
        conn = self._writing(writes)
        cursor = conn.execute(statement, params)
        if writes and cursor.rowcount:  # -1 for DDL: counted
            self._changes += 1
        return cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[PgRow]:
        return self._run(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        statement, writes = _pg_statement(sql)
        with self._writing(writes).cursor() as cursor:
            cursor.executemany(statement, rows)
            if cursor.rowcount:
                self._changes += 1

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        row = self._run(sql + " RETURNING id", params).fetchone()
        assert row is not None
        return int(row[0])

    def one(self, sql: str, params: Sequence[Any] = ()) -> PgRow | None:
        return self._run(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(self._run(sql, params).fetchall())

    def describe(self) -> str:
        return redact_url(self.url)

    def close(self) -> None:
        self._closed = True
        self.conn.close()


@functools.cache
def _pg_adapters() -> tuple[type[Any], type[Any]]:
    """Dumpers that send Python's bools as numbers (flags are INTEGER 0/1 on both engines)."""
    import psycopg
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    int2 = psycopg.adapters.types["int2"].oid

    class FlagDumper(Dumper):
        oid = int2

        def dump(self, obj: Any) -> bytes:
            return b"1" if obj else b"0"

    class FlagBinaryDumper(Dumper):
        oid = int2
        format = Format.BINARY

        def dump(self, obj: Any) -> bytes:
            return b"\x00\x01" if obj else b"\x00\x00"

    return FlagDumper, FlagBinaryDumper
