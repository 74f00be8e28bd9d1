"""The database layer: one schema and one set of migrations on SQLite and PostgreSQL.

``data/legacy-v9.db.gz`` is a master database made by the master of commit 488862b, the
last one with hand-written migrations (``PRAGMA user_version`` 9): an admin with the
password ``legacy-admin-password``, an operator ``olga`` and an API token, the system
``billing`` with a module ``web`` of the uploaded package ``web 1.0.0``, a planned node
``db-1``, a webhook receiver, an alert rule, a silence and their audit entries.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gzip
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from gdos_master import migrations
from gdos_master.app import create_app
from gdos_master.db import Database, PostgresDatabase, redact_url
from gdos_master.migrations.legacy import LEGACY
from gdos_master.schema import metadata
from gdos_sdk.client import AsyncClient
from gdos_sdk.config import MasterAuth, MasterDatabase, MasterServer, MasterSettings

from ..conftest import PostgresForTests

LEGACY_DB = Path(__file__).parent / "data" / "legacy-v9.db.gz"


def schema_diff(*, sqlite_path: Path | None = None, url: str = "") -> list[Any]:
    """What Alembic would change to make the database match the table definitions."""
    engine = migrations.migration_engine(sqlite_path=sqlite_path, url=url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def run_every_revision(*, sqlite_path: Path | None = None, url: str = "") -> None:
    """Build the schema revision after revision (a new database takes a shortcut)."""
    engine = migrations.migration_engine(sqlite_path=sqlite_path, url=url)
    try:
        with engine.begin() as conn:
            config = migrations.alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def test_head_is_the_one_alembic_head() -> None:
    heads = ScriptDirectory.from_config(migrations.alembic_config()).get_heads()
    assert heads == [f"{migrations.head():04d}"]


@pytest.fixture
def target(db_url: str, tmp_path: Path) -> dict[str, Any]:
    """Where a test's database is: ``Database.open`` / ``migration_engine`` arguments."""
    return {"url": db_url} if db_url else {"sqlite_path": tmp_path / "ops.db"}


@pytest.fixture
def empty(
    db_engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    """An empty database of the engine (not a copy of the migrated template)."""
    if db_engine == "sqlite":
        yield {"sqlite_path": tmp_path / "empty.db"}
        return
    postgres: PostgresForTests = request.getfixturevalue("postgres")
    name = f"empty_{tmp_path.name}"
    yield {"url": postgres.server.create_database(name)}
    postgres.drop(name)


def test_a_new_database_has_the_schema_the_revisions_build(empty: dict[str, Any]) -> None:
    db = Database.open(**empty)
    assert db.schema_version == migrations.head()
    db.close()
    assert schema_diff(**empty) == []


def test_the_revisions_one_by_one_build_the_table_definitions(empty: dict[str, Any]) -> None:
    run_every_revision(**empty)
    assert schema_diff(**empty) == []
    db = Database.open(**empty)  # and the master takes it as it is
    assert db.schema_version == migrations.head()
    db.close()


# --- SQLite files of the hand-written migrations --------------------------------------------


def open_sqlite(path: Path, **options: Any) -> contextlib.closing[sqlite3.Connection]:
    """A plain sqlite3 connection that the ``with`` block closes (sqlite3's own only commits)."""
    return contextlib.closing(sqlite3.connect(path, **options))


def sqlite_shape(path: Path) -> dict[str, Any]:
    """A SQLite schema as the engine sees it: columns, keys, indexes, foreign keys.

    Types are compared by SQLite's affinity (``REAL`` and ``DOUBLE`` store the same);
    a primary key's NOT NULL is left out (a legacy ``TEXT PRIMARY KEY`` lacks it and the
    master never writes a NULL id).
    """

    def affinity(declared: str) -> str:
        upper = declared.upper()
        if "INT" in upper:
            return "INTEGER"
        if any(t in upper for t in ("CHAR", "CLOB", "TEXT")):
            return "TEXT"
        if any(t in upper for t in ("REAL", "FLOA", "DOUB")):
            return "REAL"
        return "NUMERIC"

    with open_sqlite(path) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        shape: dict[str, Any] = {}
        for table in sorted(tables):
            columns = {
                name: (affinity(kind), bool(notnull) and not pk, default, pk)
                for _, name, kind, notnull, default, pk in conn.execute(
                    f"PRAGMA table_info({table})"
                )
            }
            indexes = {
                (bool(unique), tuple(c[2] for c in conn.execute(f"PRAGMA index_info('{name}')")))
                for _, name, unique, *_ in conn.execute(f"PRAGMA index_list({table})")
            }
            keys = {
                (row[2], row[3], row[4], row[6])  # table, from, to, on delete
                for row in conn.execute(f"PRAGMA foreign_key_list({table})")
            }
            autoincrement = bool(
                re.search(
                    "AUTOINCREMENT",
                    conn.execute(
                        "SELECT sql FROM sqlite_master WHERE name = ?", (table,)
                    ).fetchone()[0],
                )
            )
            shape[table] = (columns, indexes, keys, autoincrement)
    return shape


#: The hand-written migrations 10 and 11 as main's master (commit d236410) ran them,
#: before its branches met the switch to Alembic: revisions 0010 and 0011 replace them.
BRANCH_LEGACY = (
    # 10: rollouts
    """
    ALTER TABLE instances ADD COLUMN desired_version TEXT NOT NULL DEFAULT '';
    UPDATE instances SET desired_version = version;
    CREATE TABLE rollouts (
        id TEXT PRIMARY KEY,
        module_id TEXT NOT NULL,
        system_id TEXT NOT NULL,
        state TEXT NOT NULL,
        started_at REAL NOT NULL,
        rollout TEXT NOT NULL
    );
    CREATE INDEX rollouts_module ON rollouts(module_id, started_at);
    CREATE INDEX rollouts_started ON rollouts(started_at);
    """,
    # 11: join confirmation, planned nodes by index
    """
    ALTER TABLE nodes ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX nodes_planned ON nodes(planned, hostname);
    """,
)


def legacy_file(path: Path, version: int) -> Path:
    """A SQLite file as a master of the hand-written migrations left it at ``version``."""
    with open_sqlite(path, isolation_level=None) as conn:
        for script in (*LEGACY, *BRANCH_LEGACY)[:version]:
            for statement in (s for s in script.split(";") if s.strip()):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
    return path


@pytest.mark.parametrize("version", [1, 2, 5, 8, 9, 10, 11])
def test_a_legacy_sqlite_file_is_finished_and_handed_to_alembic(
    tmp_path: Path, version: int
) -> None:
    path = legacy_file(tmp_path / "old.db", version)
    Database.open(sqlite_path=tmp_path / "new.db").close()
    db = Database.open(sqlite_path=path)
    assert db.schema_version == migrations.head()
    assert db.scalar("PRAGMA user_version") == migrations.head()
    db.close()
    assert sqlite_shape(path) == sqlite_shape(tmp_path / "new.db")


def test_instances_of_a_file_before_rollouts_want_the_version_they_run(tmp_path: Path) -> None:
    path = legacy_file(tmp_path / "old.db", 9)
    with open_sqlite(path) as conn, conn:
        conn.execute(
            "INSERT INTO instances(id, module_id, system_id, node_id, package, version, sha256,"
            " desired_state, state, created_at, updated_at)"
            " VALUES('i1', 'm1', 's1', 'n1', 'web', '1.2.0', 'x', 'running', 'running', 1, 1)"
        )
        conn.execute("INSERT INTO nodes(id, hostname, created_at) VALUES('n1', 'web-1', 1)")
    db = Database.open(sqlite_path=path)
    try:
        row = db.one("SELECT version, desired_version FROM instances")
        assert row is not None and (row["version"], row["desired_version"]) == ("1.2.0", "1.2.0")
        assert db.scalar("SELECT confirmed FROM nodes") == 1  # nodes that exist have joined
    finally:
        db.close()


@pytest.fixture
def legacy_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "ops.db").write_bytes(gzip.decompress(LEGACY_DB.read_bytes()))
    return data


@pytest.mark.anyio
async def test_a_database_made_by_the_old_master_is_upgraded_in_place(
    legacy_data: Path, tmp_path: Path
) -> None:
    path = legacy_data / "ops.db"
    with open_sqlite(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 9
    settings = MasterSettings(
        server=MasterServer(data_dir=str(legacy_data)),
        auth=MasterAuth(join_token="join-token-for-tests", password_cost=14),
    )
    app = create_app(settings)
    async with app.test_app():
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with AsyncClient("http://master.test", transport=transport) as admin:
            await admin.login("admin", "legacy-admin-password")
            assert {u.username for u in await admin.list_users()} == {"admin", "olga"}
            [system] = await admin.list_systems()
            assert system.name == "billing" and system.description == "the billing system"
            [module] = await admin.list_modules(system.id)
            assert (module.package, module.version, module.env) == ("web", "1.0.0", {"PORT": "80"})
            assert [n.hostname for n in await admin.list_nodes()] == ["db-1"]
            assert [r.name for r in await admin.list_receivers()] == ["pager"]
            assert [r.name for r in await admin.list_alert_rules()] == ["cpu high"]
            assert len(await admin.list_silences()) == 1
            old = (await admin.list_audit(limit=100)).items
            assert {"system.create", "package.upload", "node.plan"} <= {e.action for e in old}
            # It keeps working: new rows next to the old ones, ids continuing.
            await admin.create_system("shop")
            newest = (await admin.list_audit(limit=1)).items[0]
            assert newest.action == "system.create" and newest.id > max(e.id for e in old)
    Database.open(sqlite_path=tmp_path / "new.db").close()
    assert sqlite_shape(path) == sqlite_shape(tmp_path / "new.db")
    with open_sqlite(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.head()


def test_a_database_of_a_newer_master_is_refused(target: dict[str, Any], tmp_path: Path) -> None:
    Database.open(**target).close()
    engine = migrations.migration_engine(**target)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    engine.dispose()
    with pytest.raises(migrations.SchemaTooNew, match="schema 99, newer than this master's"):
        Database.open(**target)
    # A hand-migrated file from a master with more scripts than the frozen list.
    path = legacy_file(tmp_path / "legacy.db", 9)
    with open_sqlite(path) as conn:
        conn.execute("PRAGMA user_version = 42")
    with pytest.raises(migrations.SchemaTooNew, match="schema 42"):
        Database.open(sqlite_path=path)


def test_masters_starting_together_on_one_new_database_migrate_it_once(
    postgres: PostgresForTests,
) -> None:
    url = postgres.server.create_database("together")
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            opened = list(pool.map(lambda _: Database.open(url=url), range(4)))
        assert {db.schema_version for db in opened} == {migrations.head()}
        for db in opened:
            db.close()
        assert schema_diff(url=url) == []
    finally:
        postgres.server.drop_database("together")


# --- the PostgreSQL side of the Database facade ---------------------------------------------


@pytest.fixture
def pg_url(postgres: PostgresForTests) -> Iterator[str]:
    name, url = postgres.fresh()
    yield url
    postgres.drop(name)


@pytest.fixture
def pg(pg_url: str) -> Iterator[PostgresDatabase]:
    db = Database.open(url=pg_url)
    assert isinstance(db, PostgresDatabase)
    yield db
    db.close()


def test_postgres_reads_the_master_s_sql(pg: PostgresDatabase) -> None:
    # ? outside quotes is a parameter; ? and % inside quotes are text; % is not psycopg's.
    pg.execute("INSERT INTO kv(key, value) VALUES(?, 'what? 100% sure')", ("question",))
    row = pg.one("SELECT key, value, ? AS n FROM kv WHERE value LIKE '%?%'", (7,))
    assert row is not None
    assert (row["key"], row["value"], row["n"], row[0]) == (
        "question",
        "what? 100% sure",
        7,
        "question",
    )
    assert row.keys() == ["key", "value", "n"] and tuple(row) == ("question", "what? 100% sure", 7)
    # Flags are 0/1 integers on both engines; Python's bools are sent as numbers.
    pg.execute(
        "INSERT INTO users(id, username, password_hash, role, created_at, disabled)"
        " VALUES('u1', 'ann', 'x', 'admin', 1.5, ?)",
        (True,),
    )
    assert pg.scalar("SELECT disabled FROM users WHERE disabled = ?", (True,)) == 1
    assert pg.scalar("SELECT created_at FROM users") == 1.5


AUDIT_INSERT = (
    "INSERT INTO audit(ts, actor_kind, actor, ip, action, target, params, result, status)"
    " VALUES(?, 'system', 'test', '', ?, '', '{}', 'ok', 200)"
)


def test_postgres_ids_and_transactions(pg: PostgresDatabase) -> None:
    first = pg.insert(AUDIT_INSERT, (1.0, "one"))
    assert pg.insert(AUDIT_INSERT, (2.0, "two")) == first + 1
    with pytest.raises(RuntimeError), pg.transaction():
        pg.execute("DELETE FROM audit")
        with pg.transaction():  # nested: part of the outer one
            pg.insert(AUDIT_INSERT, (3.0, "three"))
        raise RuntimeError("roll back")
    assert [r["action"] for r in pg.all("SELECT action FROM audit ORDER BY id")] == ["one", "two"]
    with pg.transaction():
        pg.execute("UPDATE audit SET status = 201")
    assert pg.scalar("SELECT COUNT(*) FROM audit WHERE status = 201") == 2


def test_the_write_counter_moves_alike_on_both_engines(target: dict[str, Any]) -> None:
    db = Database.open(**target)
    try:
        start = db.changes
        db.all("SELECT * FROM kv")
        db.scalar("SELECT COUNT(*) FROM audit")
        db.execute("UPDATE kv SET value = 'x' WHERE key = 'nothing'")  # changed no row
        db.execute("SELECT 1")
        assert db.changes == start
        db.set_kv("a", "1")
        assert db.changes == start + 1
        db.insert(AUDIT_INSERT, (1.0, "one"))
        db.executemany("INSERT INTO kv(key, value) VALUES(?, ?)", [("b", "2"), ("c", "3")])
        assert db.changes == start + 3
        with db.transaction():  # reads only: nothing to notice
            db.all("SELECT * FROM kv")
        assert db.changes == start + 3
        with db.transaction():
            db.execute("DELETE FROM kv WHERE key = ?", ("c",))
            assert db.changes == start + 4
        assert db.changes == start + 5  # the commit
        # What was read after a write that is rolled back must not outlive the rollback.
        with pytest.raises(RuntimeError), db.transaction():
            db.set_kv("d", "4")
            read_at = db.changes
            assert db.get_kv("d") == "4"
            raise RuntimeError("roll back")
        assert db.get_kv("d") is None and db.changes == read_at + 1
        db.changed()  # a write around the facade (SQLite's backup API in a restore)
        assert db.changes == read_at + 2
    finally:
        db.close()


def test_postgres_opens_a_lost_connection_again(pg: PostgresDatabase, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as other:
        other.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(psycopg.OperationalError):  # the statement the loss interrupted
        pg.scalar("SELECT 1")
    assert pg.scalar("SELECT 1") == 1  # the next one has a new connection
    pg.close()
    with pytest.raises(psycopg.OperationalError):  # closed on purpose: never opened again
        pg.scalar("SELECT 1")


def test_urls_are_shown_without_their_password() -> None:
    url = "postgresql://gdos:s3cr%40t@db.example:5432/gdos?sslmode=require"
    assert redact_url(url) == "postgresql://gdos:***@db.example:5432/gdos?sslmode=require"
    assert redact_url("postgresql://db.example/gdos") == "postgresql://db.example/gdos"
    settings = MasterSettings(database=MasterDatabase(url=url))
    assert "s3cr" not in repr(settings)
