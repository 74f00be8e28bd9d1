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
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
from quart import Quart, Response, current_app, request
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
from gdos_master.bus import Bus
from gdos_master.cluster import Cluster, new_master_id
from gdos_master.commands import CommandRuns
from gdos_master.console import STATIC_DIR, register_console
from gdos_master.db import Database, redact_url
from gdos_master.destinations import DestinationPolicy
from gdos_master.fastlane import FastLane
from gdos_master.fleet import Fleet, SampleWindow
from gdos_master.headers import AnswerHeaders, SecurityHeaders
from gdos_master.heap import HeapKeeper
from gdos_master.jointoken import JoinTokenState
from gdos_master.live import register_live_socket
from gdos_master.logview import InstanceLogs
from gdos_master.mesh import Mesh
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
from gdos_master.relay import CommandRelay, RemoteConnection
from gdos_master.rollouts import Rollouts
from gdos_master.routing import (
    check_password_fresh,
    close_if_body_sent,
    error_response,
    json_response,
    unexpected_error,
)
from gdos_master.systems import Systems
from gdos_master.terminal import TerminalRelay
from gdos_master.terminal_ws import register_terminal_sockets
from gdos_sdk.config import MasterSettings
from gdos_sdk.errors import (
    ConfigError,
    ConflictError,
    GdosError,
    PermissionDenied,
    TransportError,
)
from gdos_sdk.filemodes import private_dir, secure_tree
from gdos_sdk.forwarded import TrustedProxies, parse_networks
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
    bus: Bus
    cluster: Cluster
    initial_password: str | None = None
    tls: bool = False
    # Disabled unless the serving process (gdos_master.cli) turns it on.
    heap: HeapKeeper = attrs.field(factory=lambda: HeapKeeper(enabled=False))
    # What API tokens, sessions and node credentials resolved to, while the database is
    # unchanged (gdos_master.auth.CredentialCache).
    credentials: CredentialCache = attrs.field(factory=CredentialCache)
    # Reverse proxies whose X-Forwarded-For is believed (server.trusted_proxies).
    proxies: TrustedProxies = attrs.field(factory=TrustedProxies)
    tasks: set[asyncio.Task[Any]] = attrs.field(factory=set)
    # The work only the elected master runs (docs/scale-out.md), while it is the leader.
    leader_tasks: set[asyncio.Task[Any]] = attrs.field(factory=set)
    backups: Backups = attrs.field(init=False)  # set by build_master: it needs the master
    commands: CommandRuns = attrs.field(init=False)  # fleet commands (build_master)
    batches: BatchRuns = attrs.field(init=False)  # ordered batch actions (build_master)
    rollouts: Rollouts = attrs.field(init=False)  # version changes of modules (build_master)
    logs: InstanceLogs = attrs.field(init=False)  # the log viewer (build_master)
    terminals: TerminalRelay = attrs.field(init=False)  # web terminals (build_master)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run a background coroutine, keeping a reference so it is not collected."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def start_leader_work(self) -> None:
        """Start the work that must happen once: this master is the leader.

        Alert evaluation and notifications, the backup schedule, and the rollouts a
        previous leader left running. With one master this runs at start, as always.
        """
        if self.cluster.clustered:
            # Taking over: what the previous leader left is read again from the database.
            self.alerts.load()
            self.batches.recover_orphans()
            self.rollouts.load()
        for coro in (self.alerts.run(), self.backups.run_schedule()):
            self.leader_tasks.add(self.spawn(coro))
        self.rollouts.start_background()

    async def stop_leader_work(self) -> None:
        """Stop the leader's loops (another master took the lease, or it ran out)."""
        tasks, self.leader_tasks = list(self.leader_tasks), set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    async def leader_changed(self, leader: bool) -> None:
        if leader:
            self.start_leader_work()
        else:
            await self.stop_leader_work()

    def lost(self) -> list[str]:
        """What a clustered master lost: ``"database"``, ``"bus"``, both or none."""
        return [
            name
            for name, ok in (("database", self.cluster.db_ok), ("bus", self.bus.connected))
            if not ok
        ]

    def outage(self) -> str:
        """What a clustered master lost ("the bus", "the database", both), or ""."""
        return " and ".join(f"the {name}" for name in self.lost())

    def outage_since(self) -> float | None:
        """Unix time the current outage began (the earliest loss still going on), or None."""
        times = [t for t in (self.cluster.db_lost_since, self.bus.lost_since) if t is not None]
        return min(times) if times and self.outage() else None

    async def run_cluster(self) -> None:
        """Renew this master's leases and follow the other masters' (clustered masters)."""
        cluster = self.cluster
        last_orphans = time.monotonic()
        while True:
            for node_id in [n for n in cluster.untaken if self.fleet.is_connected(n)]:
                cluster.take_node(node_id)
            await cluster.tick()
            self.fleet.remote = cluster.remote
            if cluster.leader and cluster.db_ok and time.monotonic() - last_orphans >= 5:
                last_orphans = time.monotonic()
                try:  # the jobs of a master that died meanwhile
                    self.batches.recover_orphans()
                    self.rollouts.load()
                    self.rollouts.start_background()
                except Exception:
                    log.exception("taking up the jobs of a lost master failed")
            await asyncio.sleep(cluster.period)

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
        last_flush = last_rebalance = clock()
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
                try:
                    self.nodes.flush_last_seen()
                except Exception as exc:  # PostgreSQL away: the next flush writes them
                    log.error("could not flush last-seen times: %s", exc)
            # Retention: every series once a minute, a 120th of the targets a tick (the
            # whole store at once, 150,000 series at 10,000 nodes, stalled the loop).
            self.fleet.store.trim_some(time.time(), parts=120)

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
        with contextlib.suppress(Exception):
            self.cluster.resign()  # another master takes the leader's work at once
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
        with contextlib.suppress(Exception):
            await self.bus.close()
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
    settings: MasterSettings,
    *,
    db: Database | None = None,
    storage: Storage | None = None,
    bus: Bus | None = None,
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
    nodes = Nodes(
        db,
        fleet,
        require_approval=settings.auth.require_approval,
        max_pending=settings.auth.max_pending_nodes,
    )
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
    master_id = bus.master_id if bus else settings.cluster.master_id or new_master_id()
    bus = bus or Bus.open(settings.cluster.bus, master_id=master_id)
    cluster = Cluster(
        db,
        master_id=master_id,
        clustered=bus.shared,
        node_ttl=fleet.offline_after,
        leader_ttl=settings.cluster.leader_ttl,
    )
    fleet.on_offline.append(cluster.release_node)
    master = Master(
        bus=bus,
        cluster=cluster,
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
        proxies=TrustedProxies(parse_networks(settings.server.trusted_proxies)),
    )
    master.backups = Backups(master)
    master.commands = CommandRuns(master)
    if bus.shared:  # a node connected to another master is reached through it
        commands = master.commands
        fleet.remote_channel = lambda node_id, owner: RemoteConnection(
            node_id, owner, bus, commands
        )
    master.batches = BatchRuns(master)
    master.rollouts = Rollouts(master)
    # Jobs a previous run of this master left running are closed, its rollouts resumed
    # when serving begins (they hold their instances now). Several masters: only those of
    # this master's id; a dead master's are the leader's to take up (start_leader_work).
    owner = master_id if cluster.clustered else None
    master.batches.recover(owner=owner)
    master.rollouts.load(owner=owner)
    master.cluster.on_leader.append(master.leader_changed)
    master.logs = InstanceLogs(master)
    master.terminals = TerminalRelay(master)
    return master


def create_app(
    settings: MasterSettings,
    *,
    db: Database | None = None,
    storage: Storage | None = None,
    bus: Bus | None = None,
) -> Quart:
    """Build the master's Quart app.

    Parameters:
        settings: the loaded :class:`~gdos_sdk.config.MasterSettings`.
        db: an open :class:`Database` (default: the one the settings name).
        storage: a storage back end (default from ``settings.storage``).
        bus: the link to other masters (default from ``settings.cluster.bus``; tests join
            in-process masters with :class:`~gdos_master.bus.LocalBus` on one network).
    """
    master = build_master(settings, db=db, storage=storage, bus=bus)
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
    hub = register_live_socket(app)
    register_terminal_sockets(app)
    _register_errors(app)
    register_console(app)
    # Around the whole app (Quart's documented way to add ASGI middleware), so every answer
    # gets them, at a few list operations per request.
    security = SecurityHeaders.for_console(STATIC_DIR / "index.html", tls=master.tls)
    lane = FastLane(app, api, master)  # the API's plain reads, below Quart (fastlane.py)
    app.extensions["gdos_fastlane"] = lane
    app.asgi_app = AnswerHeaders(lane, security)  # type: ignore[method-assign]

    @app.route("/healthz")
    async def healthz() -> Response:
        if not master.cluster.clustered:
            return json_response({"status": "ok"})
        # Several masters: what this one depends on, for the load balancer and people.
        lost = master.lost()
        body = {
            "status": "unavailable" if lost else "ok",
            "master_id": master.cluster.master_id,
            "leader": master.cluster.leader,
            "bus": "lost" if "bus" in lost else "ok",
            "database": "lost" if "database" in lost else "ok",
            "lost_since": master.outage_since(),
        }
        return json_response(body, 503 if lost else 200)

    async def refuse_writes_in_an_outage() -> Response | None:
        # Several masters: a write that could not reach the others (or the database) is
        # refused rather than lost; the client retries (docs/scale-out.md).
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        lost = master.outage()
        if lost and request.path.startswith("/api/"):
            message = f"this master lost {lost}; writes are refused until it is back"
            return error_response(
                TransportError(message, details={"lost": master.lost(), "changed": False})
            )
        return None

    if master.cluster.clustered:  # one master: no hook on the request path at all
        app.before_request(refuse_writes_in_an_outage)

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
        master.spawn(master.watch_loop())
        if master.cluster.clustered:
            servers = ", ".join(redact_url(u) for u in settings.cluster.bus.split(","))
            log.info("master %s joins the bus at %s", master.cluster.master_id, servers)
            await master.bus.start()
            await CommandRelay(master.fleet, master.bus, master.commands).start()
            mesh = Mesh(master, hub)
            await mesh.start()
            master.spawn(mesh.run())
            master.spawn(master.run_cluster())  # the leader's work starts when elected
        else:
            master.start_leader_work()  # one master: the leader from the start
        master.heap.churn_limit = master.settings.fleet.gc_churn_limit
        master.heap.start(master.fleet.stats.disconnects)

    @app.after_serving
    async def stop_background() -> None:
        await master.close()

    return app


def _register_errors(app: Quart) -> None:
    @app.errorhandler(GdosError)
    async def gdos_error(exc: GdosError) -> Response:
        return error_response(exc)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return await http_error(exc)
        return unexpected_error(exc, request.method, request.path, current_master())

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
