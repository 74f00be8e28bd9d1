"""The master application: :func:`create_app` wires the domain objects into Quart.

Example::

    settings = load_master_settings([])
    app = create_app(settings)
    # hypercorn serves app; tests use app.test_client()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
from quart import Quart, Response, current_app, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import WebsocketMismatch

from gdos_master import __version__, jointoken
from gdos_master.accounts import Accounts
from gdos_master.agent import register_agent_socket
from gdos_master.alert_store import AlertStore
from gdos_master.alerting import AlertEngine, Notifier
from gdos_master.api import api
from gdos_master.auth import CredentialCache, LoginLimiter, authenticate
from gdos_master.backups import Backups
from gdos_master.batches import BatchRuns
from gdos_master.commands import CommandRuns
from gdos_master.console import STATIC_DIR, register_console
from gdos_master.db import Database
from gdos_master.destinations import DestinationPolicy
from gdos_master.fleet import Fleet, SampleWindow
from gdos_master.headers import SecurityHeaders
from gdos_master.heap import HeapKeeper
from gdos_master.jointoken import JoinTokenState
from gdos_master.live import register_live_socket
from gdos_master.logview import InstanceLogs
from gdos_master.nodes import Nodes
from gdos_master.orchestrator import Orchestrator
from gdos_master.packages import Packages
from gdos_master.passwords import PasswordHasher
from gdos_master.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from gdos_master.prometheus import (
    OPENMETRICS_CONTENT_TYPE,
    render_prometheus,
    wants_openmetrics,
)
from gdos_master.rollouts import Rollouts
from gdos_master.routing import (
    check_password_fresh,
    close_if_body_sent,
    error_response,
    json_response,
)
from gdos_master.systems import Systems
from gdos_master.terminal import TerminalRelay
from gdos_master.terminal_ws import register_terminal_sockets
from gdos_sdk.config import MasterSettings
from gdos_sdk.errors import ConfigError, ConflictError, GdosError, PermissionDenied
from gdos_sdk.filemodes import private_dir, secure_tree
from gdos_sdk.logformat import set_log_context
from gdos_sdk.metrics.series import SeriesStore
from gdos_sdk.models import JoinToken, Settings
from gdos_sdk.protocol import InstanceStatus
from gdos_sdk.storage import LocalStorage, MinioStorage, Storage

__all__ = ["Master", "create_app", "current_master"]

log = logging.getLogger("gdos.master")


@attrs.define
class Master:
    """Every long-lived object of a running master, built once by :func:`create_app`."""

    settings: MasterSettings
    db: Database
    storage: Storage
    fleet: Fleet
    accounts: Accounts
    nodes: Nodes
    packages: Packages
    systems: Systems
    orchestrator: Orchestrator
    limiter: LoginLimiter
    join_token: JoinTokenState
    alert_store: AlertStore
    alerts: AlertEngine
    initial_password: str | None = None
    tls: bool = False
    # Disabled unless the serving process (gdos_master.cli) turns it on.
    heap: HeapKeeper = attrs.field(factory=lambda: HeapKeeper(enabled=False))
    # What API tokens, sessions and node credentials resolved to, while the database is
    # unchanged (gdos_master.auth.CredentialCache).
    credentials: CredentialCache = attrs.field(factory=CredentialCache)
    tasks: set[asyncio.Task[Any]] = attrs.field(factory=set)
    backups: Backups = attrs.field(init=False)  # set by build_master: it needs the master
    commands: CommandRuns = attrs.field(init=False)  # fleet commands (build_master)
    batches: BatchRuns = attrs.field(init=False)  # ordered batch actions (build_master)
    rollouts: Rollouts = attrs.field(init=False)  # version changes of modules (build_master)
    logs: InstanceLogs = attrs.field(init=False)  # the log viewer (build_master)
    terminals: TerminalRelay = attrs.field(init=False)  # web terminals (build_master)

    def spawn(self, coro: Any) -> None:
        """Run a background coroutine, keeping a reference so it is not collected."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def spawn_reconcile(self, node_id: str, inventory: list[InstanceStatus] | None = None) -> None:
        """Reconcile a node in the background (after hello, or after approval)."""

        async def run() -> None:
            if inventory is None:
                conn = self.fleet.connection(node_id)
                if conn is None:
                    return
                # Without a fresh inventory, ask the worker again by reconnecting.
                await conn.close()
                return
            await self.orchestrator.reconcile(node_id, inventory)

        self.spawn(run())

    def cluster_settings(self) -> Settings:
        return Settings(
            join_token_source=self.join_token.source,
            require_approval=self.settings.auth.require_approval,
            heartbeat_interval=self.settings.fleet.heartbeat_interval,
            offline_after=self.fleet.offline_after,
            max_package_bytes=self.settings.storage.max_package_bytes,
            version=__version__,
        )

    def rotate_join_token(self) -> JoinToken:
        """A new join token, returned this once; the old one stops working now."""
        if self.settings.auth.join_token:
            raise ConflictError(
                "the join token is set in the configuration (auth.join_token); change it there"
            )
        self.join_token, token = jointoken.rotate(self.db)
        return JoinToken(join_token=token, rotated_at=datetime.now(UTC))

    async def run_housekeeping(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Detect silent nodes twice a second; flush last-seen times now and then."""
        last_flush = last_trim = last_rebalance = clock()
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await asyncio.sleep(0.5)
            # A late wake-up is a stalled loop: nobody's heartbeats were read meanwhile, so
            # the liveness clock stops for it before anyone is judged (Fleet.loop_late).
            self.fleet.loop_late(loop.time() - began - 0.5)
            await self.fleet.sweep()
            if clock() - last_rebalance >= 5:
                last_rebalance = clock()
                await self.fleet.rebalance()
                self.heap.tick(self.fleet.stats.disconnects, self.fleet.connection_count())
            if clock() - last_flush >= self.settings.database.flush_interval:
                last_flush = clock()
                self.nodes.flush_last_seen()
            if clock() - last_trim >= 60:
                last_trim = clock()
                self.fleet.store.trim(time.time())

    async def watch_loop(self, period: float = 0.1) -> None:
        """Measure how late the event loop wakes a sleeper (a stall shows up here)."""
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await asyncio.sleep(period)
            late = max(0.0, loop.time() - began - period)
            self.fleet.stats.loop_lag.record(late, time.time())
            self.fleet.loop_late(late)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.terminals.close()
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(BaseException):
                await task
        for rt in list(self.fleet.nodes.values()):
            if rt.connection is not None:
                await rt.connection.close()
        with contextlib.suppress(Exception):
            self.nodes.flush_last_seen()
        self.accounts.hasher.close()
        await self.storage.close()
        self.db.close()


def current_master() -> Master:
    """The :class:`Master` of the app handling the current request."""
    master: Master = current_app.extensions["gdos"]
    return master


def _make_storage(settings: MasterSettings) -> Storage:
    conf = settings.storage
    if conf.type == "local":
        return LocalStorage(settings.storage_dir)
    if conf.type == "minio":
        presign = conf.worker_fetch == "presigned"
        return MinioStorage(
            conf.minio_endpoint,
            access_key=conf.minio_access_key,
            secret_key=conf.minio_secret_key,
            bucket=conf.minio_bucket,
            secure=conf.minio_secure,
            presign_expiry=timedelta(seconds=conf.presign_expiry) if presign else None,
        )
    raise ConfigError(f"storage.type must be 'local' or 'minio', not {conf.type!r}")


def _repair_modes(settings: MasterSettings) -> None:
    """Make an older install's data private (0700 folders, 0600 files; docs/security.md)."""
    data_dir = Path(settings.server.data_dir).absolute()
    roots = [data_dir]
    storage = settings.storage_dir.absolute()
    if settings.storage.type == "local" and storage.is_dir() and data_dir not in storage.parents:
        roots.append(storage)  # a local_dir of its own
    for root in roots:
        changed = secure_tree(root)
        if changed:
            log.warning("made %d files and folders under %s private to this user", changed, root)


def _placement(db: Database) -> Callable[[str], list[str]]:
    """The instance ids the database places on a node (what it may send samples for)."""

    def instances_of(node_id: str) -> list[str]:
        return [r["id"] for r in db.all("SELECT id FROM instances WHERE node_id = ?", (node_id,))]

    return instances_of


def build_master(
    settings: MasterSettings, *, db: Database | None = None, storage: Storage | None = None
) -> Master:
    """Open the database and storage and build the domain objects."""
    data_dir = private_dir(Path(settings.server.data_dir))
    _repair_modes(settings)
    policy = DestinationPolicy.parse(settings.alerts.webhook_allow)  # before opening anything
    db = db or Database.open(sqlite_path=settings.db_path, url=settings.database.url)
    storage = storage or _make_storage(settings)
    metrics = settings.metrics
    fleet = Fleet(
        heartbeat_interval=settings.fleet.heartbeat_interval,
        offline_grace=settings.fleet.offline_grace,
        store=SeriesStore(
            window=int(metrics.window),
            minute_window=int(metrics.minute_window),
            ahead=int(metrics.max_sample_ahead),
            max_series=metrics.max_series,
            max_target_metrics=metrics.max_series_per_target,
        ),
        heartbeat_budget=settings.fleet.heartbeat_budget,
        max_push_interval=settings.fleet.max_push_interval,
        placement=_placement(db),
        window=SampleWindow(max_age=metrics.max_sample_age, max_ahead=metrics.max_sample_ahead),
    )
    auth = settings.auth
    hasher = PasswordHasher(
        cost=auth.password_cost, workers=auth.hash_workers, queue=auth.hash_queue
    )
    accounts = Accounts(db, session_hours=auth.session_hours, hasher=hasher)
    initial_password = accounts.ensure_admin(
        settings.auth.admin_username, settings.auth.admin_password
    )
    join_token = jointoken.load(db, configured=settings.auth.join_token)
    nodes = Nodes(db, fleet, require_approval=settings.auth.require_approval)
    packages = Packages(
        db, storage, max_bytes=settings.storage.max_package_bytes, tmp_dir=data_dir / "tmp"
    )
    systems = Systems(db)
    orchestrator = Orchestrator(
        db, fleet, systems, packages, command_timeout=settings.fleet.command_timeout
    )
    alert_store = AlertStore(db)
    notifier = Notifier(
        alert_store,
        attempts=settings.alerts.webhook_attempts,
        timeout=settings.alerts.webhook_timeout,
        policy=policy,
    )
    alerts = AlertEngine(
        alert_store, db, fleet, notifier, startup_grace=settings.alerts.startup_grace
    )
    alerts.load()
    master = Master(
        alert_store=alert_store,
        alerts=alerts,
        settings=settings,
        db=db,
        storage=storage,
        fleet=fleet,
        accounts=accounts,
        nodes=nodes,
        packages=packages,
        systems=systems,
        orchestrator=orchestrator,
        limiter=LoginLimiter(
            per_account=auth.login_attempts,
            per_ip=auth.login_attempts_per_ip,
            window=auth.login_window,
            trust_seconds=auth.session_hours * 3600,
        ),
        join_token=join_token,
        initial_password=initial_password,
        tls=bool(settings.server.tls_cert),
    )
    master.backups = Backups(master)
    master.commands = CommandRuns(master)
    master.batches = BatchRuns(master)
    master.batches.recover()  # jobs a previous run of the master left running
    master.rollouts = Rollouts(master)
    master.rollouts.load()  # resumed when serving begins (they hold their instances now)
    master.logs = InstanceLogs(master)
    master.terminals = TerminalRelay(master)
    return master


def create_app(
    settings: MasterSettings, *, db: Database | None = None, storage: Storage | None = None
) -> Quart:
    """Build the master's Quart app.

    Parameters:
        settings: the loaded :class:`~gdos_sdk.config.MasterSettings`.
        db: an open :class:`Database` (default: the one the settings name).
        storage: a storage back end (default from ``settings.storage``).
    """
    master = build_master(settings, db=db, storage=storage)
    app = Quart("gdos_master", static_folder=None)
    # Uploads stream through Packages.upload, which enforces the real limit with a
    # JSON error; this outer bound only stops a body that ignores it entirely.
    # (Backup uploads are bounded the same way by backup.max_upload_bytes.)
    app.config["MAX_CONTENT_LENGTH"] = (
        max(settings.storage.max_package_bytes, settings.backup.max_upload_bytes) + 1024 * 1024
    )
    app.config["BODY_TIMEOUT"] = 3600
    app.extensions["gdos"] = master

    api.register(app)
    register_agent_socket(app)
    register_live_socket(app)
    register_terminal_sockets(app)
    _register_errors(app)
    _register_request_ids(app)
    register_console(app)
    headers = SecurityHeaders.for_console(STATIC_DIR / "index.html", tls=master.tls)

    @app.after_request
    async def security_headers(response: Response) -> Response:
        return headers.apply(response)

    @app.route("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.route("/metrics")
    async def prometheus() -> Response:
        try:
            principal = await authenticate(master)
            if principal.kind == "node":
                raise PermissionDenied("node credentials are accepted only on agent endpoints")
            check_password_fresh(principal)
        except GdosError as exc:
            return error_response(exc)
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        return Response(
            render_prometheus(master, openmetrics=openmetrics),
            content_type=OPENMETRICS_CONTENT_TYPE if openmetrics else PROMETHEUS_CONTENT_TYPE,
        )

    @app.before_serving
    async def start_background() -> None:
        master.spawn(master.run_housekeeping())
        master.spawn(master.alerts.run())
        master.spawn(master.watch_loop())
        master.spawn(master.backups.run_schedule())
        master.rollouts.start_background()
        master.heap.churn_limit = master.settings.fleet.gc_churn_limit
        master.heap.start(master.fleet.stats.disconnects)

    @app.after_serving
    async def stop_background() -> None:
        await master.close()

    return app


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _register_request_ids(app: Quart) -> None:
    """Give each HTTP request an id: in every log line it causes and in ``X-Request-ID``.

    A caller's own ``X-Request-ID`` (a proxy's) is kept when it is a plain token. The node or
    instance a route names joins the log lines too.
    """

    @app.before_request
    async def bind_request_id() -> None:
        given = request.headers.get("X-Request-ID", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        g.request_id = request_id
        args = request.view_args or {}
        set_log_context(
            request_id=request_id, node_id=args.get("node_id"), instance_id=args.get("instance_id")
        )

    @app.after_request
    async def echo_request_id(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers["X-Request-ID"] = request_id
        return response


def _register_errors(app: Quart) -> None:
    @app.errorhandler(GdosError)
    async def gdos_error(exc: GdosError) -> Response:
        return error_response(exc)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return await http_error(exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response(
            {"error": {"code": "internal_error", "message": "internal error; see the master log"}},
            500,
        )

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        code = {
            400: "bad_request",
            404: "not_found",
            405: "method_not_allowed",
            413: "too_large",
        }.get(exc.code or 500, "http_error")
        message = exc.description or exc.name
        if exc.code == 404:
            message = f"no route {request.method} {request.path}"
        elif isinstance(exc, WebsocketMismatch):
            message = f"{request.path} is a WebSocket endpoint: connect with Upgrade: websocket"
        response = json_response({"error": {"code": code, "message": message}}, exc.code or 500)
        for name, value in exc.get_headers():  # e.g. a 405's Allow, which RFC 9110 requires
            if name.lower() != "content-type":
                response.headers[name] = value
        return close_if_body_sent(response)
