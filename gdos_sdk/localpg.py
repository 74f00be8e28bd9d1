"""A throw-away PostgreSQL server for tests, benchmarks and trying GDOS on PostgreSQL.

:class:`LocalPostgres` runs the machine's own PostgreSQL binaries (Debian's
``postgresql`` package puts them in ``/usr/lib/postgresql/<major>/bin``) on a free
loopback port, with its data in a new temporary folder that is removed when the server
stops. PostgreSQL refuses to run as root: started by root, the server runs as the
``postgres`` account (which Debian's package creates) or else ``nobody``. Durability is
traded for speed (``fsync=off``): this is never a server to keep data in.

Example::

    with LocalPostgres() as pg:
        pg.create_database("gdos")
        url = pg.url("gdos")  # postgresql://gdos:...@127.0.0.1:PORT/gdos
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gdos_sdk.testing import free_port

assert sys.platform != "win32", "gdos_sdk.localpg runs PostgreSQL's POSIX server binaries"

__all__ = ["LocalPostgres", "find_bindir"]

#: Settings of the throw-away server: no durability, no unix socket, loopback only.
SERVER_OPTIONS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
}


def find_bindir() -> Path | None:
    """The folder of ``initdb`` and ``postgres``: ``$GDOS_PG_BINDIR``, Debian's, or PATH."""
    configured = os.environ.get("GDOS_PG_BINDIR")
    if configured:
        return Path(configured)
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:
        newest = max(found, key=lambda p: int(Path(p).parent.parent.name))
        return Path(newest).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


class LocalPostgres:
    """A PostgreSQL server under a temporary folder on ``127.0.0.1``; stopped by :meth:`stop`.

    Parameters:
        bindir: folder of the server binaries (default: :func:`find_bindir`).
        port: TCP port (default: a free one).
        user: the database superuser's name; its password is random.
    """

    def __init__(
        self, *, bindir: Path | None = None, port: int | None = None, user: str = "gdos"
    ) -> None:
        found = bindir or find_bindir()
        if found is None or not (found / "initdb").exists():
            raise FileNotFoundError(
                "PostgreSQL's server binaries (initdb, postgres) were not found: install"
                " Debian's postgresql package or set GDOS_PG_BINDIR"
            )
        self.bindir = found
        self.port = port or free_port()
        self.user = user
        self.password = secrets.token_urlsafe(16)
        self.root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "the server is not started"
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        assert self.root is not None, "the server is not started"
        return self.root / "server.log"

    def _run_as(self) -> dict[str, Any]:
        """subprocess arguments that drop root for the server (it refuses to run as root)."""
        if os.geteuid() != 0:
            return {}
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                account = pwd.getpwnam(name)
                return {"user": account.pw_uid, "group": account.pw_gid}
        raise RuntimeError("PostgreSQL will not run as root and no other account was found")

    def start(self, timeout: float = 60.0) -> LocalPostgres:
        """Create the cluster and start the server; wait until it accepts connections."""
        self.root = Path(tempfile.mkdtemp(prefix="gdos-pg-"))
        try:
            account = self._run_as()
            if account:
                os.chown(self.root, account["user"], account["group"])
            secret = self.root / "password"
            secret.write_text(self.password)
            if account:
                os.chown(secret, account["user"], account["group"])
            subprocess.run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    f"--pwfile={secret}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                timeout=timeout,
                **account,
            )
            secret.unlink()
            self._launch(account)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, account: dict[str, Any]) -> None:
        options = [f"-c{key}={value}" for key, value in SERVER_OPTIONS.items()]
        with open(self.log_path, "ab") as log:
            if account:
                os.chown(self.log_path, account["user"], account["group"])
            self._proc = subprocess.Popen(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    *options,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **account,
            )

    def halt(self) -> None:
        """Stop the server but keep its data: :meth:`resume` starts it again (outage tests)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: end sessions, then exit
            proc.wait(timeout=20)

    def resume(self, timeout: float = 60.0) -> None:
        """Start the server :meth:`halt` stopped, on the same port, with the same data."""
        self._launch(self._run_as())
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        ready = str(self.bindir / "pg_isready")
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited:\n{self.log_path.read_text()[-3000:]}")
            probe = subprocess.run(
                [ready, "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False, timeout=10
            )
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"PostgreSQL did not start:\n{self.log_path.read_text()[-3000:]}"
                )
            time.sleep(0.1)

    def url(self, database: str = "postgres") -> str:
        """A libpq URL for ``database`` with the superuser's password."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _sql(self, statement: str) -> None:
        import psycopg  # a test dependency (gdos[postgresql]); the server itself needs none

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create a database (a copy of ``template`` if given); return its URL."""
        copy = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
        self._sql(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing any connection still open to it."""
        self._sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (fast shutdown, then kill) and remove its folder."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: end sessions, then exit
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
