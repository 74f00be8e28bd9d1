"""Settings for the master and the worker, and the one loader that fills them.

Each setting has a key ``section.name``. Four sources fill it, the first that
has it wins::

    flag      -port :9090   or  --port=:9090      (seed flags, one or two dashes;
                                                   a boolean flag alone means true)
    env       OPS_MASTER_SERVER_LISTEN=:9090      (OPS_WORKER_... for the worker)
    file      ./config.yaml  (master) / ./worker.yaml (worker), or -config PATH
    default   the value in the class below

Unknown keys in a file or unknown flags are errors that suggest the closest
valid name. The settings classes are plain attrs values: servers take them in
their constructors and never read the environment themselves.

Example::

    settings = load_master_settings(["-port", ":9090"], env=os.environ)
    settings.server.listen  # ":9090"
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import yaml

from gdos_sdk.codec import suggest
from gdos_sdk.errors import ConfigError
from gdos_sdk.forwarded import parse_networks

__all__ = [
    "FLAG",
    "HELP",
    "SECRET",
    "MasterSettings",
    "WorkerSettings",
    "check_master_url",
    "flag_takes_next",
    "is_loopback_host",
    "iter_options",
    "load_master_settings",
    "load_settings",
    "load_worker_settings",
    "master_url_list",
    "parse_listen",
    "plain_http_warning",
]

FLAG = "gdos_flag"
HELP = "gdos_help"
SECRET = "gdos_secret"
LIST = "gdos_list"  # a text option that also takes a YAML list, kept as "a,b,c"

S = TypeVar("S")

# The accepted range of auth.password_cost (log2 of scrypt's N).
MIN_PASSWORD_COST = 14
MAX_PASSWORD_COST = 20


def _opt(
    default: Any, help: str, *, flag: str | None = None, secret: bool = False, many: bool = False
) -> Any:
    # Secrets stay out of repr() so a logged settings object never leaks them.
    return attrs.field(
        default=default,
        repr=not secret,
        metadata={FLAG: flag, HELP: help, SECRET: secret, LIST: many},
    )


# --- master ---------------------------------------------------------------------------------


@attrs.frozen
class MasterServer:
    listen: str = _opt(":8080", "address to listen on: ':8080', '127.0.0.1:8080'", flag="port")
    data_dir: str = _opt("./data", "folder for the database, packages and state", flag="data_dir")
    tls_cert: str = _opt("", "PEM certificate file; with tls_key, serve HTTPS", flag="tls_cert")
    tls_key: str = _opt("", "PEM private key file for tls_cert", flag="tls_key")
    public_url: str = _opt(
        "",
        "URL workers and browsers use; printed at start. With several masters, a worker"
        " dials a terminal opened here for a node on another master back to this URL, so"
        " its connect.master_url must list it",
        flag="public_url",
    )
    trusted_proxies: str = _opt(
        "",
        "comma-separated addresses or CIDR networks of reverse proxies whose X-Forwarded-For"
        " names the client (login limits, audit); empty: the TCP peer is the client",
        flag="trusted_proxies",
    )
    parent_pid: int = _opt(
        0,
        "exit when process PID ends (throw-away clusters: LocalCluster sets it; 0: never)",
        flag="parent_pid",
    )


@attrs.frozen
class MasterDatabase:
    url: str = _opt(
        "",
        "PostgreSQL instead of SQLite: postgresql://user:password@host:5432/dbname"
        " (docs/database.md); empty: SQLite in path",
        flag="db_url",
        secret=True,
    )
    path: str = _opt("", "SQLite file; default {data_dir}/ops.db", flag="db_path")
    flush_interval: float = _opt(30.0, "seconds between flushes of in-memory node state")


@attrs.frozen
class MasterCluster:
    bus: str = _opt(
        "",
        "NATS server(s) linking several masters on one PostgreSQL: nats://host:4222"
        " (comma-separated for a NATS cluster; docs/scale-out.md); empty: one master, no bus",
        flag="bus",
        secret=True,
    )
    master_id: str = _opt(
        "",
        "this master's name among several (letters, digits, . _ -); empty: generated at each"
        " start from the host name and a random suffix",
        flag="master_id",
    )
    leader_ttl: float = _opt(
        15.0,
        "seconds the elected master's lease lasts; renewed every third of it, taken over by"
        " another master once it expired (5 to 300)",
    )


@attrs.frozen
class MasterStorage:
    type: str = _opt("local", "package storage back end: local or minio", flag="store_type")
    local_dir: str = _opt("", "folder for the local back end; default {data_dir}/storage")
    max_package_bytes: int = _opt(512 * 1024 * 1024, "largest package upload accepted, in bytes")
    minio_endpoint: str = _opt("", "MinIO/S3 host:port", flag="minio_endpoint")
    minio_access_key: str = _opt("", "MinIO access key", flag="minio_access_key", secret=True)
    minio_secret_key: str = _opt("", "MinIO secret key", flag="minio_secret_key", secret=True)
    minio_bucket: str = _opt("gdos", "MinIO bucket (created if missing)", flag="minio_bucket")
    minio_secure: bool = _opt(False, "use TLS to reach MinIO")
    worker_fetch: str = _opt(
        "presigned",
        "with minio: workers fetch packages straight from MinIO by a presigned URL"
        " (presigned) or through the master (master)",
    )
    presign_expiry: int = _opt(600, "seconds a presigned package URL stays valid (1 to 604800)")


@attrs.frozen
class MasterAuth:
    admin_username: str = _opt("admin", "name of the admin created on first start")
    admin_password: str = _opt(
        "",
        "password of the admin created on first start; if empty, a random one is printed once"
        " and must be changed at the first login (a configured one need not be)",
        secret=True,
    )
    join_token: str = _opt(
        "",
        "cluster join token for workers; generated and kept in the database if empty",
        flag="join_token",
        secret=True,
    )
    require_approval: bool = _opt(False, "new nodes wait for an admin's approval")
    max_pending_nodes: int = _opt(
        1000, "nodes that may wait for approval at once; a join beyond that is refused"
    )
    session_hours: float = _opt(12.0, "browser session lifetime")
    login_attempts: int = _opt(
        10, "failed logins allowed per account per window, from all addresses together"
    )
    login_attempts_per_ip: int = _opt(
        30, "failed logins allowed per client address (IPv6: per /64) per window, any user"
    )
    login_window: float = _opt(300.0, "seconds of the login rate-limit window")
    password_cost: int = _opt(
        17,
        "scrypt cost as log2(N), 14 to 20: 17 (OWASP) takes 128 MiB and about 0.5 s per hash;"
        " older hashes are redone at this cost on login",
    )
    hash_workers: int = _opt(
        2, "password hashes computed at once (each holds 2^password_cost x 1 KiB of memory)"
    )
    hash_queue: int = _opt(
        32, "logins that may wait for a hash worker; more are answered 429 at once"
    )
    max_sockets_per_user: int = _opt(
        20, "live-channel WebSockets one user may hold open at once (console tabs, scripts)"
    )


@attrs.frozen
class MasterFleet:
    heartbeat_interval: float = _opt(1.0, "seconds between heartbeats of a watched node")
    heartbeat_budget: float = _opt(
        500.0,
        "heartbeats per second the master aims for: unwatched nodes of a fleet larger than"
        " this push every (nodes / budget) seconds, samples still at 1 s resolution",
    )
    max_push_interval: float = _opt(15.0, "longest push interval of an unwatched node")
    offline_grace: float = _opt(5.0, "a node is offline after its push interval + this")
    command_timeout: float = _opt(60.0, "seconds to wait for a worker to answer a command")
    gc_freeze: bool = _opt(
        True,
        "move long-lived objects out of the garbage collector's scans (see"
        " docs/architecture.md, 'Garbage collection'); false keeps Python's defaults",
    )
    gc_churn_limit: int = _opt(
        500,
        "disconnects after which a full garbage collection frees their frozen objects"
        " (at least as many as there are open agent connections)",
    )


@attrs.frozen
class MasterMetrics:
    window: float = _opt(3600.0, "seconds of 1 s samples kept in memory")
    minute_window: float = _opt(86400.0, "seconds of 1 min aggregates kept in memory")
    max_series: int = _opt(
        1_000_000,
        "time series kept in memory in all (about 20 KB each at full retention); samples of"
        " new series past it are dropped",
    )
    max_series_per_target: int = _opt(
        256,
        "series kept per node or instance (a node has 12 plus two per network interface and"
        " one per file system); new metric names past it are dropped",
    )
    max_sample_age: float = _opt(
        900.0,
        "a sample older than this (seconds, by the master's clock) is dropped; covers a"
        " worker's 5 min buffer after an outage plus clock skew",
    )
    max_sample_ahead: float = _opt(
        60.0, "a sample more than this many seconds in the future (clock skew) is dropped"
    )


@attrs.frozen
class MasterAlerts:
    startup_grace: float = _opt(
        30.0, "seconds after a master start before node_offline alerts are evaluated"
    )
    webhook_attempts: int = _opt(5, "delivery attempts per webhook notification")
    webhook_timeout: float = _opt(10.0, "seconds to wait for a webhook to answer")
    webhook_allow: str = _opt(
        "",
        "networks, addresses and host names webhook receivers may reach although they are"
        " denied by default (loopback, link-local, cloud metadata): comma-separated, e.g."
        " '127.0.0.1/32, ::1, hooks.internal' (docs/security.md)",
    )


@attrs.frozen
class MasterBackup:
    interval_hours: float = _opt(
        0.0,
        "hours between scheduled backups (0 = off); an admin may change the schedule in the"
        " console, which then wins over this value",
    )
    retention: int = _opt(7, "scheduled backups kept; older scheduled ones are deleted")
    include_packages: bool = _opt(False, "scheduled backups also carry the stored packages")
    max_upload_bytes: int = _opt(
        16 * 1024**3, "largest backup archive accepted by upload, and unpacked size of any archive"
    )


@attrs.frozen
class MasterTerminal:
    idle_timeout: float = _opt(
        1800.0, "seconds without input or output after which a web terminal is closed (0 = never)"
    )
    max_sessions_per_node: int = _opt(5, "open web terminal sessions allowed per node")
    max_sessions_per_user: int = _opt(
        10, "open web terminal sessions one user may hold, on all nodes together"
    )
    reattach_grace: float = _opt(
        60.0, "seconds a terminal's shell survives its browser dropping, waiting for a reattach"
    )
    scrollback_bytes: int = _opt(
        256 * 1024, "recent output kept per session and replayed to a reattaching browser"
    )
    record_input: bool = _opt(False, "also record keystrokes in session recordings")
    max_recording_bytes: int = _opt(
        64 * 1024**2, "largest recording of one session; later output is not recorded"
    )
    open_timeout: float = _opt(15.0, "seconds a worker has to open a terminal and dial back")


@attrs.frozen
class MasterLog:
    level: str = _opt("info", "debug, info, warning or error", flag="log_level")
    format: str = _opt("text", "text, or json: one JSON object per line", flag="log_format")


@attrs.frozen
class MasterSettings:
    """Everything the master can be told. See docs/configuration.md."""

    server: MasterServer = attrs.field(factory=MasterServer)
    database: MasterDatabase = attrs.field(factory=MasterDatabase)
    cluster: MasterCluster = attrs.field(factory=MasterCluster)
    storage: MasterStorage = attrs.field(factory=MasterStorage)
    auth: MasterAuth = attrs.field(factory=MasterAuth)
    fleet: MasterFleet = attrs.field(factory=MasterFleet)
    metrics: MasterMetrics = attrs.field(factory=MasterMetrics)
    alerts: MasterAlerts = attrs.field(factory=MasterAlerts)
    backup: MasterBackup = attrs.field(factory=MasterBackup)
    terminal: MasterTerminal = attrs.field(factory=MasterTerminal)
    log: MasterLog = attrs.field(factory=MasterLog)

    @property
    def db_path(self) -> Path:
        return Path(self.database.path or Path(self.server.data_dir) / "ops.db")

    @property
    def storage_dir(self) -> Path:
        return Path(self.storage.local_dir or Path(self.server.data_dir) / "storage")


# --- worker ---------------------------------------------------------------------------------


@attrs.frozen
class WorkerServer:
    listen: str = _opt(
        "127.0.0.1:8081",
        "address of the worker's own status port (/healthz); loopback unless you need it"
        " elsewhere (':8081' listens on every interface)",
        flag="port",
    )
    parent_pid: int = _opt(
        0,
        "exit when process PID ends, after stopping every instance (throw-away clusters:"
        " LocalCluster sets it; 0: never, and a worker that exits leaves its instances"
        " running)",
        flag="parent_pid",
    )


@attrs.frozen
class WorkerConnect:
    master_url: str = _opt(
        "http://127.0.0.1:8080",
        "URL of the master, or of several masters on one database separated by commas (a"
        " list in YAML): the worker is connected to one at a time, in this order, and moves"
        " to the next when it stops answering (docs/scale-out.md)",
        flag="master",
        many=True,
    )
    join_token: str = _opt(
        "", "cluster join token (first contact only)", flag="join_token", secret=True
    )
    claim_token: str = _opt(
        "",
        "a planned node's one-time claim token (from POST /nodes): the worker takes that"
        " node, with its id and queued instances, without waiting for approval",
        flag="claim_token",
        secret=True,
    )
    reconnect_initial: float = _opt(
        0.5,
        "first reconnect delay, seconds; with several masters, also the longest random wait"
        " before the next one is dialled",
    )
    reconnect_max: float = _opt(
        30.0, "longest reconnect delay, seconds (with several masters: once every one failed)"
    )
    ca_file: str = _opt("", "CA bundle to verify an HTTPS master")
    insecure: bool = _opt(
        False,
        "accept a plain http:// master_url that is not on loopback (root commands, terminal"
        " traffic and secrets then cross the network unencrypted)",
        flag="insecure",
    )
    ping_interval: float = _opt(
        2.0,
        "seconds between WebSocket pings on the agent channel, or half the node's push"
        " interval if that is longer (liveness check of the master; 0: none)",
    )
    ping_timeout: float = _opt(
        3.0,
        "seconds to wait for a ping's answer; a channel without one is dropped and the next"
        " master dialled: a silent master is noticed within ping interval + ping_timeout +"
        " 1 s (6 s for a node pushing every second; docs/scale-out.md)",
    )


@attrs.frozen
class WorkerRuntime:
    work_dir: str = _opt("./work", "folder for instances, package cache and state", flag="work_dir")
    sample_interval: float = _opt(1.0, "seconds between metric samples")
    node_name: str = _opt("", "hostname to report; default the machine's")
    fetch_attempts: int = _opt(
        5,
        "tries to download a package before a deploy fails; waits 0.5, 1, 2, 4 ... s between"
        " (5 tries ride out about 7.5 s of storage trouble)",
    )
    keep_versions: int = _opt(
        3,
        "versions of its package each instance keeps extracted on disk, the one it runs"
        " included: moving back to one of them (a rollback) needs no download; older ones"
        " are removed after an upgrade",
    )
    default_user: str = _opt(
        "nobody",
        "account services run as when neither the module nor the manifest names one, if the"
        " worker runs as root (a worker that is not root runs them as itself; ignored on"
        " Windows); 'root' makes every operator deploy run as root (docs/security.md)",
    )


@attrs.frozen
class WorkerTerminal:
    shell: str = _opt(
        "", "program (and arguments) web terminals run; default the worker user's login shell"
    )


@attrs.frozen
class WorkerLog:
    level: str = _opt("info", "debug, info, warning or error", flag="log_level")
    format: str = _opt("text", "text, or json: one JSON object per line", flag="log_format")


@attrs.frozen
class WorkerSettings:
    """Everything a worker can be told. See docs/configuration.md."""

    server: WorkerServer = attrs.field(factory=WorkerServer)
    connect: WorkerConnect = attrs.field(factory=WorkerConnect)
    runtime: WorkerRuntime = attrs.field(factory=WorkerRuntime)
    terminal: WorkerTerminal = attrs.field(factory=WorkerTerminal)
    log: WorkerLog = attrs.field(factory=WorkerLog)


# --- loader ---------------------------------------------------------------------------------


@attrs.frozen
class Option:
    """One setting: where it lives and how it is spelt in each source."""

    section: str
    name: str
    type: type
    default: Any
    flag: str | None
    help: str
    secret: bool
    many: bool = False  # also takes a YAML list (kept as comma-separated text)

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    def env_name(self, prefix: str) -> str:
        return f"{prefix}{self.section.upper()}_{self.name.upper()}"


def iter_options(cls: type[Any]) -> list[Option]:
    """Every option of a settings class, in declaration order."""
    found: list[Option] = []
    for section in attrs.fields(cls):
        section_cls = type(section.default.factory())
        for f in attrs.fields(section_cls):
            md = f.metadata
            found.append(
                Option(
                    section=section.name,
                    name=f.name,
                    type=type(f.default),
                    default=f.default,
                    flag=md.get(FLAG),
                    help=md.get(HELP, ""),
                    secret=bool(md.get(SECRET)),
                    many=bool(md.get(LIST)),
                )
            )
    return found


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _bool_flags() -> frozenset[str]:
    return frozenset(
        o.flag
        for cls in (MasterSettings, WorkerSettings)
        for o in iter_options(cls)
        if o.flag and o.type is bool
    )


def flag_takes_next(name: str, following: str | None) -> bool:
    """Whether flag ``name`` (without dashes) takes the token ``following`` as its value.

    Every flag takes a value except a boolean one, which may stand alone: ``-insecure``
    means ``-insecure true``; it takes the next token only if that is a boolean word.

    Example::

        flag_takes_next("insecure", "-port")  # False
        flag_takes_next("port", ":9090")  # True
    """
    if following is None:
        return False
    if name in _bool_flags():
        return following.strip().lower() in _TRUE | _FALSE
    return True


def _coerce(option: Option, raw: Any, source: str) -> Any:
    where = f"{option.key} (from {source})"
    if option.type is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE or text == "":
            return False
        raise ConfigError(f"{where}: expected true/false, got {raw!r}")
    if option.type is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: expected an integer, got {raw!r}")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {raw!r}") from None
    if option.type is float:
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: expected a number, got {raw!r}")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {raw!r}") from None
    if option.many and isinstance(raw, list):
        for item in raw:
            if not isinstance(item, str) or "," in item:
                raise ConfigError(f"{where}: each entry of the list must be one text, got {item!r}")
        return ",".join(raw)
    if isinstance(raw, dict | list):
        raise ConfigError(f"{where}: expected a single value, got {type(raw).__name__}")
    return "" if raw is None else str(raw)


def _parse_flags(
    argv: Sequence[str],
    options: list[Option],
    extra_flags: Sequence[str],
    other_flags: Sequence[str] = (),
) -> tuple[dict[str, str], dict[str, str]]:
    """Split argv into option values by key and extra flags (like ``config``) by name.

    ``other_flags`` are flags the command handles before calling the loader (``-autostart``,
    ``-to``): not accepted here, but named in the "did you mean" of an unknown flag.
    """
    by_flag = {o.flag: o for o in options if o.flag}
    values: dict[str, str] = {}
    extras: dict[str, str] = {}
    known = sorted({*by_flag, *extra_flags, *other_flags})
    args = list(argv)
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("-") or token in {"-", "--"}:
            raise ConfigError(f"unexpected argument {token!r}; flags look like -port :8080")
        name = token.lstrip("-")
        value: str | None = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name not in by_flag and name not in extra_flags:
            hint = suggest(name, known)
            tip = f"; did you mean -{hint}?" if hint else f"; known flags: -{', -'.join(known)}"
            raise ConfigError(f"unknown flag {token!r}{tip}")
        if value is None:
            following = args[i + 1] if i + 1 < len(args) else None
            if (
                name in by_flag
                and by_flag[name].type is bool
                and not flag_takes_next(name, following)
            ):
                value = "true"  # a boolean flag standing alone
            elif following is None:
                raise ConfigError(f"flag -{name} needs a value")
            else:
                value = following
                i += 1
        if name in by_flag:
            values[by_flag[name].key] = value
        else:
            extras[name] = value
        i += 1
    return values, extras


def _read_file(path: Path, options: list[Option]) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    sections = {o.section for o in options}
    keys = {o.key for o in options}
    flat: dict[str, Any] = {}
    for section, body in data.items():
        if section not in sections:
            hint = suggest(str(section), sections)
            tip = f"; did you mean {hint!r}?" if hint else ""
            raise ConfigError(f"{path}: unknown section {section!r}{tip}")
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping")
        for name, value in body.items():
            key = f"{section}.{name}"
            if key not in keys:
                names = [o.name for o in options if o.section == section]
                hint = suggest(str(name), names)
                tip = f"; did you mean {section}.{hint}?" if hint else ""
                raise ConfigError(f"{path}: unknown key {key!r}{tip}")
            flat[key] = value
    return flat


def load_settings(
    cls: type[S],
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    env_prefix: str,
    default_file: str,
    cwd: Path | None = None,
    other_flags: Sequence[str] = (),
) -> S:
    """Fill ``cls`` from flags > env > file > defaults.

    Parameters:
        cls: :class:`MasterSettings` or :class:`WorkerSettings`.
        argv: command-line flags (without the program name).
        env: the environment to read (pass ``os.environ`` explicitly).
        env_prefix: ``OPS_MASTER_`` or ``OPS_WORKER_``.
        default_file: file read when no ``-config`` flag is given, if it exists.
        other_flags: flags the caller takes out of ``argv`` itself; named in hints only.
    """
    options = iter_options(cls)
    flag_values, extras = _parse_flags(
        argv, options, extra_flags=("config",), other_flags=other_flags
    )
    base = cwd or Path.cwd()
    file_values: dict[str, Any] = {}
    config_path = extras.get("config") or env.get(f"{env_prefix}CONFIG")
    if config_path:
        file_values = _read_file(base / config_path, options)
    elif (base / default_file).is_file():
        file_values = _read_file(base / default_file, options)

    env_names = {o.env_name(env_prefix): o for o in options}
    for name in env:
        if name.startswith(env_prefix) and name not in env_names and name != f"{env_prefix}CONFIG":
            hint = suggest(name, list(env_names))
            if hint:  # a near miss is almost certainly a typo worth stopping for
                raise ConfigError(f"unknown environment variable {name}; did you mean {hint}?")

    sections: dict[str, dict[str, Any]] = {}
    for option in options:
        if option.key in flag_values:
            value = _coerce(option, flag_values[option.key], f"flag -{option.flag}")
        elif option.env_name(env_prefix) in env:
            value = _coerce(option, env[option.env_name(env_prefix)], option.env_name(env_prefix))
        elif option.key in file_values:
            value = _coerce(option, file_values[option.key], "config file")
        else:
            value = option.default
        sections.setdefault(option.section, {})[option.name] = value

    built: dict[str, Any] = {}
    for section in attrs.fields(cls):  # type: ignore[arg-type]
        section_cls = type(section.default.factory())
        built[section.name] = section_cls(**sections.get(section.name, {}))
    return cls(**built)


def load_master_settings(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    other_flags: Sequence[str] = (),
) -> MasterSettings:
    """Master settings from flags, ``OPS_MASTER_*``, ``./config.yaml`` and defaults."""
    settings = load_settings(
        MasterSettings,
        argv,
        env=os.environ if env is None else env,
        env_prefix="OPS_MASTER_",
        default_file="config.yaml",
        cwd=cwd,
        other_flags=other_flags,
    )
    _check_log(settings.log)
    if settings.storage.type not in {"local", "minio"}:
        raise ConfigError(f"storage.type must be 'local' or 'minio', not {settings.storage.type!r}")
    if settings.storage.worker_fetch not in {"presigned", "master"}:
        raise ConfigError(
            "storage.worker_fetch must be 'presigned' or 'master',"
            f" not {settings.storage.worker_fetch!r}"
        )
    if not 1 <= settings.storage.presign_expiry <= 604800:
        raise ConfigError("storage.presign_expiry must be between 1 and 604800 seconds (7 days)")
    if not MIN_PASSWORD_COST <= settings.auth.password_cost <= MAX_PASSWORD_COST:
        raise ConfigError(
            f"auth.password_cost must be between {MIN_PASSWORD_COST} and {MAX_PASSWORD_COST}"
            f" (log2 of scrypt's N), not {settings.auth.password_cost}"
        )
    if settings.auth.max_pending_nodes < 1:
        raise ConfigError("auth.max_pending_nodes must be >= 1")
    if settings.auth.hash_workers < 1 or settings.auth.hash_queue < 0:
        raise ConfigError("auth.hash_workers must be >= 1 and auth.hash_queue >= 0")
    if settings.backup.interval_hours < 0 or settings.backup.retention < 1:
        raise ConfigError("backup.interval_hours must be >= 0 and backup.retention >= 1")
    metrics = settings.metrics
    if metrics.max_series < 1 or metrics.max_series_per_target < 1:
        raise ConfigError("metrics.max_series and metrics.max_series_per_target must be >= 1")
    if metrics.max_sample_age < 0 or metrics.max_sample_ahead < 0:
        raise ConfigError("metrics.max_sample_age and metrics.max_sample_ahead must be >= 0")
    parse_listen(settings.server.listen, default_host="0.0.0.0")
    try:
        parse_networks(settings.server.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    scheme = settings.database.url.partition("://")[0]
    if settings.database.url and scheme not in {"postgresql", "postgres"}:
        raise ConfigError(
            f"database.url must start with postgresql:// (not {scheme}://);"
            " leave it empty for SQLite in database.path"
        )
    _check_cluster(settings)
    if bool(settings.server.tls_cert) != bool(settings.server.tls_key):
        raise ConfigError("server.tls_cert and server.tls_key go together: give both or neither")
    return settings


_MASTER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _check_cluster(settings: MasterSettings) -> None:
    """Several masters need one shared PostgreSQL; the bus and the id must be well formed."""
    cluster = settings.cluster
    if cluster.master_id and not _MASTER_ID.match(cluster.master_id):
        raise ConfigError(
            f"cluster.master_id {cluster.master_id!r} must be 1 to 63 letters, digits, '.', '_'"
            " or '-', starting with a letter or digit"
        )
    if not 5 <= cluster.leader_ttl <= 300:
        raise ConfigError(
            f"cluster.leader_ttl must be between 5 and 300 seconds, not {cluster.leader_ttl:g}"
        )
    if not cluster.bus:
        return
    for server in cluster.bus.split(","):
        parts = urllib.parse.urlsplit(server.strip())
        if parts.scheme not in {"nats", "tls"} or not parts.hostname:
            raise ConfigError(
                f"cluster.bus: {server.strip()!r} is not a NATS server URL;"
                " expected nats://host:4222 (or tls://host:4222), comma-separated for several"
            )
    if not settings.database.url:
        raise ConfigError(
            "-bus (cluster.bus) links several masters, and they must share one PostgreSQL"
            " database: give -db_url postgresql://... too (a SQLite file belongs to one"
            " master; docs/scale-out.md)"
        )


def load_worker_settings(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    other_flags: Sequence[str] = (),
) -> WorkerSettings:
    """Worker settings from flags, ``OPS_WORKER_*``, ``./worker.yaml`` and defaults."""
    settings = load_settings(
        WorkerSettings,
        argv,
        env=os.environ if env is None else env,
        env_prefix="OPS_WORKER_",
        default_file="worker.yaml",
        cwd=cwd,
        other_flags=other_flags,
    )
    _check_log(settings.log)
    parse_listen(settings.server.listen, default_host="0.0.0.0")
    check_master_url(settings.connect)
    attempts = settings.runtime.fetch_attempts
    if not 1 <= attempts <= 20:
        raise ConfigError(f"runtime.fetch_attempts must be between 1 and 20, got {attempts}")
    if settings.runtime.keep_versions < 1:
        raise ConfigError(
            "runtime.keep_versions must be at least 1 (the version an instance runs),"
            f" got {settings.runtime.keep_versions}"
        )
    for name in ("ping_interval", "ping_timeout"):
        if getattr(settings.connect, name) < 0:
            raise ConfigError(f"connect.{name} must be >= 0 (0 turns it off)")
    return settings


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1`` (no name is resolved).

    Example::

        is_loopback_host("127.0.0.1")  # True
        is_loopback_host("0.0.0.0")  # False: every interface
    """
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def master_url_list(value: str) -> list[str]:
    """The URLs of ``connect.master_url``: comma-separated, blanks and empty entries dropped.

    Example::

        master_url_list("https://m1:8443, https://m2:8443/")  # ["https://m1:8443", "https://m2:8443"]
    """
    return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]


def check_master_url(connect: WorkerConnect) -> None:
    """Refuse a master URL a worker must not dial: not http(s), or plain HTTP off loopback.

    ``connect.master_url`` may list several masters (comma-separated); each is checked,
    and the error names the bad one. The agent channel carries root commands, terminal
    sessions, module env and the node's credential; over ``http://`` anyone on the path
    reads and changes them. A loopback master (``./dev up``, tests) is fine; anything else
    needs ``https://`` or an explicit ``connect.insecure``.

    Raises:
        ConfigError: names the URL and ``-insecure``.
    """
    urls = master_url_list(connect.master_url)
    if not urls:
        raise ConfigError(
            f"connect.master_url names no master, got {connect.master_url!r}; give one URL"
            " or several separated by commas"
        )
    seen: set[str] = set()
    for index, url in enumerate(urls, 1):
        where = "connect.master_url" if len(urls) == 1 else f"connect.master_url entry {index}"
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where} must start with http:// or https://, got {url!r}")
        if url in seen:
            raise ConfigError(f"{where} lists {url} a second time")
        seen.add(url)
        host = urllib.parse.urlsplit(url).hostname or ""
        if url.startswith("http://") and not is_loopback_host(host) and not connect.insecure:
            raise ConfigError(
                f"refusing plain HTTP to {url}: the agent channel carries root commands,"
                " terminal sessions and secrets, so a master that is not on this machine must"
                " be reached by https:// (docs/security.md, 'TLS'); to accept plain HTTP"
                " anyway, pass -insecure (connect.insecure: true, OPS_WORKER_CONNECT_INSECURE=1)"
            )


def plain_http_warning(server: MasterServer) -> str | None:
    """The warning for a master that listens beyond loopback without TLS, or None.

    Example::

        plain_http_warning(MasterServer(listen=":8080"))  # "listening on 0.0.0.0:8080 ..."
    """
    if server.tls_cert:
        return None
    host, port = parse_listen(server.listen, default_host="0.0.0.0")
    if is_loopback_host(host):
        return None
    shown = f"[{host}]" if ":" in host else host
    return (
        f"listening on {shown}:{port} WITHOUT TLS: passwords, API tokens, node credentials,"
        " terminal sessions and module secrets cross the network in clear. Serve HTTPS"
        " (-tls_cert and -tls_key; docs/security.md, 'TLS'), or listen on 127.0.0.1 behind a"
        " TLS proxy."
    )


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


def _check_log(log: MasterLog | WorkerLog) -> None:
    if log.level.lower() not in LOG_LEVELS:
        raise ConfigError(f"log.level must be one of {', '.join(LOG_LEVELS)}, not {log.level!r}")
    if log.format not in LOG_FORMATS:
        hint = suggest(log.format, LOG_FORMATS)
        tip = f"; did you mean {hint!r}?" if hint else ""
        raise ConfigError(f"log.format must be text or json, not {log.format!r}{tip}")


def parse_listen(value: str, *, default_host: str) -> tuple[str, int]:
    """``":8080"``, ``"8080"``, ``"127.0.0.1:8080"`` or ``"[::1]:8080"`` to (host, port).

    Example::

        parse_listen(":9090", default_host="0.0.0.0")  # ("0.0.0.0", 9090)
    """
    text = value.strip()
    host = default_host
    port_text = text
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise ConfigError(f"listen address {value!r} is not [host]:port")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        head, port_text = text.rsplit(":", 1)
        host = head or default_host
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"listen address {value!r} has no valid port") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} in {value!r} is out of range")
    return host, port
