"""A throw-away GDOS on this machine: a master and workers on loopback, started from Python.

:class:`LocalCluster` starts ``gdos-master`` and ``gdos-worker`` as separate processes on
free ports under one folder, like dask's ``LocalCluster``. It stops all of them, and every
service process their workers started, when it closes: on :meth:`LocalCluster.close`
(or the end of a ``with`` block), when it is garbage-collected, at interpreter exit, and
when its Python process is killed outright (SIGKILL of a Jupyter kernel): the servers are
started with ``-parent_pid`` and end when it ends, a worker stopping its instances first
(:mod:`gdos_sdk.parentwatch`). Its workers run services as the account that runs the
cluster.

Example::

    from gdos_sdk import LocalCluster

    cluster = LocalCluster(workers=2)       # a temporary folder, free ports, an admin
    gdos = cluster.client()                 # an admin Client
    gdos.list_nodes()
    cluster.close()

The explicit form, as the end-to-end tests use it::

    with LocalCluster(Path("/tmp/c1")) as cluster:
        cluster.start_master()
        cluster.start_worker()
        with cluster.client() as gdos:
            print(gdos.list_nodes())
"""

from __future__ import annotations

import collections
import contextlib
import html
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import httpx
import psutil

from gdos_sdk.client import AsyncClient, Client
from gdos_sdk.executors.accounts import current_account

__all__ = [
    "LocalCluster",
    "ManagedProcess",
    "ProcessExited",
    "TlsFiles",
    "free_port",
    "kill_instances_under",
    "wait_until",
]


class ProcessExited(RuntimeError):
    """A server process died while we waited for it; waiting longer cannot help."""


T = TypeVar("T")


# Ports handed out lately: the kernel may give a port it just gave again once its socket
# is closed, and a caller that asks for several ports before starting anything (a server
# with one listener per component) would then get the same one twice.
_ISSUED: collections.deque[int] = collections.deque(maxlen=512)
_ISSUED_LOCK = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, and not handed out lately."""
    with _ISSUED_LOCK:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port: int = sock.getsockname()[1]
            if port not in _ISSUED:
                break
        _ISSUED.append(port)
        return port


def wait_until(
    predicate: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Call ``predicate`` until it returns something truthy, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ProcessExited:
            raise
        except Exception as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}{detail}")
        time.sleep(interval)


def _script(name: str) -> list[str]:
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-m", name.replace("-", "_")]


def kill_instances_under(root: Path) -> list[int]:
    """SIGKILL every process whose environment says it belongs to a work dir under ``root``."""
    killed: list[int] = []
    prefix = str(root)
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("GDOS_WORK_DIR", "").startswith(prefix):
            with contextlib.suppress(psutil.Error):
                proc.kill()
                killed.append(proc.pid)
    return killed


@attrs.define
class ManagedProcess:
    """A started server process with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int
    work_dir: Path | None = None  # a worker's work dir

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; always reaps."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.popen.wait()

    def kill(self) -> None:
        """SIGKILL (a crash, as far as the process can tell) and reap."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()
        self.popen.wait()


@attrs.frozen
class TlsFiles:
    """PEM files for an HTTPS master: its certificate and key, and the CA that signed it."""

    cert: Path
    key: Path
    ca: Path


@attrs.define
class _Processes:
    """What a cluster started: stopped by :meth:`stop` (also when the cluster is collected)."""

    root: Path
    remove_root: bool
    master: ManagedProcess | None = None
    workers: list[ManagedProcess] = attrs.field(factory=list)

    def stop(self) -> None:
        """Stop every worker, the master, every service under ``root``; remove a temp root."""
        for worker in self.workers:
            worker.terminate()
        if self.master is not None:
            self.master.terminate()
        kill_instances_under(self.root)
        if self.remove_root:
            shutil.rmtree(self.root, ignore_errors=True)


class LocalCluster:
    """A master and any number of workers on loopback, all under one folder.

    ``LocalCluster()`` or ``LocalCluster(workers=2)`` starts a complete cluster at once in
    a temporary folder (removed on close), on free ports, with a generated admin password
    (:attr:`admin_password`). ``LocalCluster(root)`` starts nothing: call
    :meth:`start_master` and :meth:`start_worker` (the end-to-end tests do).

    Every process it started (master, workers, their services) is stopped on
    :meth:`close`, at the end of a ``with`` block, when the cluster is garbage-collected,
    at interpreter exit, and when this Python process is killed (``tie_to_parent``: the
    servers get ``-parent_pid`` and end when it ends; a worker stops its instances first).

    Parameters:
        root: folder for every process's data and logs (default: a new temporary folder).
        workers: workers to start now, with the master (default: 1 without ``root``;
            with ``root``, none and no master: start them yourself).
        admin_password: the first admin's password (random if not given); it is
            configured, so the admin is not asked to change it at the first login.
        env: the environment of the processes (default: this process's).
        password_cost: the master's ``auth.password_cost``. A throw-away cluster hashes
            at the cheapest accepted cost (14) so that logins take milliseconds; pass
            ``None`` for the master's default (17, as in production).
        tls: serve the master over HTTPS with that certificate; workers dial ``wss://``,
            verifying it against ``tls.ca``.
        tie_to_parent: start the servers with ``-parent_pid`` (this process): they end
            when it ends, even by SIGKILL. Turn it off for servers meant to outlive it.
        db_url: the master's ``database.url`` (PostgreSQL; e.g. from
            :class:`~gdos_sdk.localpg.LocalPostgres`); empty: SQLite in its data folder.

    Example::

        with LocalCluster(workers=2) as cluster:
            gdos = cluster.client()
            print(cluster.console_url, [n.hostname for n in gdos.list_nodes()])
    """

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        workers: int | None = None,
        admin_password: str | None = None,
        env: dict[str, str] | None = None,
        password_cost: int | None = 14,
        tls: TlsFiles | None = None,
        tie_to_parent: bool = True,
        db_url: str = "",
    ) -> None:
        temporary = root is None
        folder = Path(tempfile.mkdtemp(prefix="gdos-cluster-")) if root is None else Path(root)
        self.root = folder.absolute()
        self.tls = tls
        self.db_url = db_url
        self.verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(tls.ca)) if tls is not None else True
        )
        self.root.mkdir(parents=True, exist_ok=True)
        self.password_cost = password_cost
        self.admin_password = admin_password or secrets.token_urlsafe(12)
        self.join_token = secrets.token_urlsafe(24)
        self.env = dict(os.environ if env is None else env)
        self.tie_to_parent = tie_to_parent
        self.master_port = 0
        self._admin_token: str | None = None
        self._processes = _Processes(self.root, remove_root=temporary)
        # Runs once: on close(), when the cluster is collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, self._processes.stop)
        count = workers if workers is not None else (1 if temporary else None)
        if count is not None:
            try:
                self.start_master()
                for _ in range(count):
                    self.start_worker()
            except BaseException:
                self.close()
                raise

    @property
    def master(self) -> ManagedProcess | None:
        """The master process (None before :meth:`start_master`)."""
        return self._processes.master

    @property
    def workers(self) -> list[ManagedProcess]:
        """The worker processes, in the order they were started."""
        return self._processes.workers

    @property
    def url(self) -> str:
        """The master's URL."""
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.master_port}"

    @property
    def console_url(self) -> str:
        """The web console (log in as ``admin`` with :attr:`admin_password`)."""
        return self.url + "/"

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str], port: int, log_name: str
    ) -> ManagedProcess:
        if self.closed:
            raise RuntimeError("this LocalCluster is closed")
        if self.tie_to_parent:
            argv = [*argv, "-parent_pid", str(os.getpid())]
        log_path = self.root / f"{log_name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                start_new_session=True,
            )
        return ManagedProcess(name=name, popen=popen, log_path=log_path, port=port)

    def start_master(
        self,
        *extra: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> ManagedProcess:
        """Start (or restart) the master; waits until /healthz answers.

        Returns:
            The master process.

        Raises:
            ProcessExited: it exited while starting (the message holds its log).
            TimeoutError: it did not answer within 30 s.
        """
        self.master_port = port or self.master_port or free_port()
        menv = {
            **self.env,
            "OPS_MASTER_AUTH_ADMIN_PASSWORD": self.admin_password,
            "OPS_MASTER_AUTH_JOIN_TOKEN": self.join_token,
            "OPS_MASTER_LOG_LEVEL": "info",
            # In the environment, not on the command line: ps shows no password.
            **({"OPS_MASTER_DATABASE_URL": self.db_url} if self.db_url else {}),
            **(env or {}),
        }
        if self.password_cost is not None:
            menv.setdefault("OPS_MASTER_AUTH_PASSWORD_COST", str(self.password_cost))
        argv = [
            *_script("gdos-master"),
            "-port",
            f"127.0.0.1:{self.master_port}",
            "-data_dir",
            str(self.root / "master"),
            *(
                ("-tls_cert", str(self.tls.cert), "-tls_key", str(self.tls.key))
                if self.tls is not None
                else ()
            ),
            *extra,
        ]
        master = self._spawn("master", argv, menv, self.master_port, "master")
        self._processes.master = master
        if wait:
            self.wait_healthy(master)
        return master

    def start_worker(
        self,
        *extra: str,
        work_dir: Path | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> ManagedProcess:
        """Start a worker joined to the master; waits until it reports connected.

        Returns:
            The worker process (:meth:`node_id` gives its node id).

        Raises:
            ProcessExited: it exited while starting (the message holds its log).
            TimeoutError: it did not connect within 30 s.
        """
        index = len(self.workers)
        work = work_dir or self.root / f"worker{index}"
        wport = port or free_port()
        wenv = {
            **self.env,
            "OPS_WORKER_CONNECT_JOIN_TOKEN": self.join_token,
            "OPS_WORKER_CONNECT_RECONNECT_MAX": "2",
            # A local cluster lives in one folder of whoever runs it: its services run as
            # that account too (a worker running as root would otherwise use "nobody").
            "OPS_WORKER_RUNTIME_DEFAULT_USER": current_account().name,
            **({"OPS_WORKER_CONNECT_CA_FILE": str(self.tls.ca)} if self.tls is not None else {}),
            **(env or {}),
        }
        argv = [
            *_script("gdos-worker"),
            "-master",
            self.url,
            "-port",
            f"127.0.0.1:{wport}",
            "-work_dir",
            str(work),
            *extra,
        ]
        worker = self._spawn(f"worker{index}", argv, wenv, wport, f"worker{index}")
        worker.work_dir = work
        self.workers.append(worker)
        if wait:
            self.wait_worker_connected(worker)
        return worker

    def worker_health(self, worker: ManagedProcess) -> dict[str, Any]:
        """What the worker's own ``/healthz`` says (``connected``, instance counts)."""
        response = httpx.get(f"http://127.0.0.1:{worker.port}/healthz", timeout=2)
        data: dict[str, Any] = response.json()
        return data

    def wait_healthy(self, proc: ManagedProcess, timeout: float = 30.0) -> None:
        """Wait until the process's ``/healthz`` answers 200."""

        def ready() -> bool:
            if not proc.alive():
                raise ProcessExited(f"{proc.name} exited:\\n{proc.output()[-3000:]}")
            url = f"{self.url if proc is self.master else f'http://127.0.0.1:{proc.port}'}/healthz"
            return httpx.get(url, timeout=2, verify=self.verify).status_code == 200

        wait_until(ready, timeout=timeout, what=f"{proc.name} health")

    def wait_worker_connected(self, worker: ManagedProcess, timeout: float = 30.0) -> str:
        """Wait until the worker's channel is up; return its node id."""

        def connected() -> bool:
            if not worker.alive():
                raise ProcessExited(f"{worker.name} exited:\\n{worker.output()[-3000:]}")
            return bool(self.worker_health(worker).get("connected"))

        wait_until(connected, timeout=timeout, what=f"{worker.name} to connect")
        return self.node_id(worker)

    def node_id(self, worker: ManagedProcess) -> str:
        """The worker's node id, from its work dir (the master's welcome settles it)."""
        assert worker.work_dir is not None, f"{worker.name} is not a worker"
        identity = json.loads((worker.work_dir / "node.json").read_text())
        return str(identity["node_id"])

    def node_ids(self) -> list[str]:
        """The node ids of the workers, in the order they were started."""
        return [self.node_id(w) for w in self.workers]

    def admin_token(self) -> str:
        """An admin API token (created once by logging in as admin)."""
        if self._admin_token is None:
            with Client(self.url, verify=self.verify) as client:
                client.login("admin", self.admin_password)
                self._admin_token = client.create_token("local-cluster").secret
        return self._admin_token

    def client(self, token: str | None = None) -> Client:
        """A :class:`~gdos_sdk.Client` of this cluster (the admin's unless ``token``)."""
        return Client(self.url, token=token or self.admin_token(), timeout=60, verify=self.verify)

    def async_client(self, token: str | None = None) -> AsyncClient:
        """An :class:`~gdos_sdk.AsyncClient` of this cluster (the admin's unless ``token``)."""
        return AsyncClient(
            self.url, token=token or self.admin_token(), timeout=60, verify=self.verify
        )

    def close(self) -> None:
        """Stop every worker, the master and every service process under ``root``.

        A temporary folder (no ``root`` given) is removed. Closing twice does nothing.
        """
        self._finalizer()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"<LocalCluster closed root={self.root}>"
        up = sum(1 for w in self.workers if w.alive())
        state = "running" if self.master is not None and self.master.alive() else "no master"
        workers = f"{up}/{len(self.workers)}"
        return f"<LocalCluster {self.url} {state} workers={workers} root={self.root}>"

    def _repr_html_(self) -> str:
        def alive(proc: ManagedProcess) -> str:
            return "running" if proc.alive() else f"exited ({proc.popen.returncode})"

        rows: list[tuple[str, str]] = []
        if self.closed:
            rows.append(("State", "closed"))
        else:
            link = html.escape(self.console_url)
            rows.append(("Console", f'<a href="{link}" target="_blank">{link}</a>'))
            rows.append(("Log in", "admin, password: <code>cluster.admin_password</code>"))
            if self.master is not None:
                rows.append(("Master", f"pid {self.master.pid}, {alive(self.master)}"))
            for worker in self.workers:
                try:
                    node = self.node_id(worker)[:8]
                except (OSError, ValueError, KeyError):
                    node = "?"
                rows.append((worker.name, f"node {node}…, pid {worker.pid}, {alive(worker)}"))
        rows.append(("Folder", html.escape(str(self.root))))
        body = "".join(
            f'<tr><th style="text-align:left;padding:2px 8px">{k}</th>'
            f'<td style="text-align:left;padding:2px 8px">{v}</td></tr>'
            for k, v in rows
        )
        return f'<div><b>GDOS LocalCluster</b><table class="gdos">{body}</table></div>'
