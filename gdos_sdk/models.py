"""Domain models shared by the master's API, the SDK client and the UI.

Everything here is an ``attrs`` class that the one converter in
:mod:`gdos_sdk.codec` turns into JSON and back. Frozen classes are values on
the wire; the servers keep their mutable runtime state elsewhere.

Example::

    from gdos_sdk.codec import converter
    node = converter.structure(payload, Node)
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import attrs

from gdos_sdk.adoption import AdoptionSpec
from gdos_sdk.constraints import NOT_BLANK, Check
from gdos_sdk.display import displayed
from gdos_sdk.frames import import_pandas, series_frame
from gdos_sdk.states import DesiredState, Health, InstanceState

if TYPE_CHECKING:
    import pandas

__all__ = [
    "ALIAS",
    "ENV",
    "HEALTH_CHECK",
    "LABELS",
    "MIN_PASSWORD",
    "NAME",
    "PASSWORD",
    "USERNAME",
    "ApiToken",
    "AuditEntry",
    "DeployRequest",
    "Disk",
    "DiskUsage",
    "Fingerprint",
    "IngestStatus",
    "Instance",
    "InstanceSample",
    "JoinToken",
    "LoginRequest",
    "MasterHealth",
    "Me",
    "MetricLatest",
    "MetricRange",
    "MetricSeries",
    "MetricValue",
    "Module",
    "ModuleCreate",
    "ModuleKind",
    "ModulePatch",
    "NetRate",
    "Node",
    "NodePatch",
    "NodeSample",
    "NodeStatus",
    "Package",
    "PackageSummary",
    "Page",
    "PasswordChange",
    "PlannedNodeCreate",
    "Role",
    "Settings",
    "System",
    "SystemActionResult",
    "SystemCreate",
    "SystemPatch",
    "TokenCreate",
    "TokenCreated",
    "User",
    "UserCreate",
    "UserPatch",
]

T = TypeVar("T")

# --- the limits request bodies share (validated by the models, shown in the OpenAPI) --------

#: System and module names.
NAME = Check(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$",
    hint="1-64 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit",
)
USERNAME = Check(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$",
    hint="1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit",
)
#: Passwords are at least this long.
MIN_PASSWORD = 8
PASSWORD = Check(min_length=MIN_PASSWORD)
ENV = Check(
    keys=Check(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        hint="an environment variable name: letters, digits and '_', not starting with a digit",
    )
)
LABELS = Check(
    keys=Check(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$",
        hint="a label key: 1-63 letters, digits, '.', '_', '/' or '-',"
        " starting with a letter or digit",
    )
)
ALIAS = Check(max_length=100)
#: A field whose value is a service.json ``health_check`` object: its JSON Schema is the
#: manifest's own definition (``gdos_sdk.manifest.json_schema()["$defs"]``), which
#: HealthCheck.from_dict validates against.
HEALTH_CHECK: dict[str, Any] = {"$ref": "#/$defs/HealthCheck"}


class Role(enum.StrEnum):
    """What a user may do: ``viewer`` reads, ``operator`` also acts, ``admin`` also governs."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ROLE_RANKS[self]

    def allows(self, needed: Role) -> bool:
        """True when this role is at least ``needed``."""
        return self.rank >= needed.rank


_ROLE_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class ModuleKind(enum.StrEnum):
    """``package``: deployed from a package; ``adopted``: a process GDOS did not deploy."""

    PACKAGE = "package"
    ADOPTED = "adopted"


class NodeStatus(enum.StrEnum):
    """``planned``: registered by an admin, no worker yet; ``pending``: awaiting approval."""

    ONLINE = "online"
    OFFLINE = "offline"
    PENDING = "pending"
    PLANNED = "planned"


# --- metrics and fingerprint --------------------------------------------------------------


@displayed
@attrs.frozen
class Disk:
    """A mounted file system as seen when the worker started."""

    device: str
    mountpoint: str
    fstype: str
    total_bytes: int


@displayed
@attrs.frozen
class Fingerprint:
    """Hardware and OS facts a worker reports in its ``hello``."""

    os: str
    os_version: str
    kernel: str
    arch: str
    cpu_model: str
    cpu_cores: int
    cpu_physical_cores: int
    memory_bytes: int
    disks: list[Disk] = attrs.field(factory=list)
    macs: list[str] = attrs.field(factory=list)
    machine_id: str | None = None
    boot_time: float = 0.0
    python: str = ""


@displayed
@attrs.frozen
class DiskUsage:
    mountpoint: str
    total_bytes: int
    used_bytes: int
    percent: float


@displayed
@attrs.frozen
class NetRate:
    interface: str
    rx_bps: float
    tx_bps: float


@displayed
@attrs.frozen
class NodeSample:
    """One second of a node's vital signs."""

    ts: float
    cpu_percent: float
    load1: float
    load5: float
    load15: float
    mem_total: int
    mem_used: int
    mem_percent: float
    swap_total: int
    swap_used: int
    disk_read_bps: float
    disk_write_bps: float
    uptime_seconds: float
    disks: list[DiskUsage] = attrs.field(factory=list)
    net: list[NetRate] = attrs.field(factory=list)


@displayed
@attrs.frozen
class InstanceSample:
    """One second of an instance's process tree, summed over every process in it."""

    ts: float
    instance_id: str
    cpu_percent: float
    rss_bytes: int
    read_bps: float
    write_bps: float
    threads: int
    open_files: int
    processes: int


# --- resources ------------------------------------------------------------------------------


@displayed
@attrs.frozen
class Page(Generic[T]):
    """One page of a list endpoint."""

    items: list[T]
    total: int
    limit: int
    offset: int


@displayed
@attrs.frozen
class User:
    id: str
    username: str
    role: Role
    created_at: datetime
    disabled: bool = False
    # Set for the first admin's generated password: until it is changed
    # (POST /auth/password), every route but auth/me, logout and that one answers 403.
    must_change_password: bool = False


@displayed
@attrs.frozen
class Me:
    """Who the current credential belongs to."""

    user: User
    auth: str  # "session" or "token"
    csrf_token: str | None = None


@displayed
@attrs.frozen
class ApiToken:
    id: str
    name: str
    user_id: str
    username: str
    role: Role
    prefix: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked: bool = False


@displayed
@attrs.frozen
class TokenCreated:
    """A new API token; ``secret`` is shown this once and never again."""

    token: ApiToken
    secret: str


@displayed
@attrs.frozen
class Node:
    id: str
    hostname: str
    alias: str
    status: NodeStatus
    addresses: list[str] = attrs.field(factory=list)
    labels: dict[str, str] = attrs.field(factory=dict)
    fingerprint: Fingerprint | None = None
    created_at: datetime | None = None
    last_seen: datetime | None = None
    agent_version: str | None = None
    approved: bool = True
    latest: NodeSample | None = None
    instance_count: int = 0
    # A planned node's one-time claim token: only in the answer that creates it (or issues
    # a new one); a worker presents it to take this node. Never shown again.
    claim_token: str | None = None
    # A pending node whose hostname or address matched this planned node: approving it
    # hands it the planned node's instances (docs/security.md, "Planned nodes").
    claims: str | None = None


@displayed
@attrs.frozen
class Package:
    """One uploaded version of a package."""

    name: str
    version: str
    sha256: str
    size: int
    uploaded_at: datetime
    uploaded_by: str
    description: str = ""
    manifest: dict[str, Any] = attrs.field(factory=dict)


@displayed
@attrs.frozen
class PackageSummary:
    """A package name with its versions, newest first."""

    name: str
    latest: str
    versions: list[str]
    description: str = ""


@displayed
@attrs.frozen
class System:
    id: str
    name: str
    description: str
    created_at: datetime
    module_count: int = 0
    instance_count: int = 0


@displayed
@attrs.frozen
class Module:
    id: str
    system_id: str
    name: str
    package: str
    version: str
    env: dict[str, str] = attrs.field(factory=dict)
    args: list[str] | None = None
    start_order: int = 0
    created_at: datetime | None = None
    kind: ModuleKind = ModuleKind.PACKAGE
    adoption: AdoptionSpec | None = None  # kind "adopted": how to find the process
    # Replaces the package's service.json health_check for this module's instances.
    health_check: dict[str, Any] | None = None
    # The account the instances run as (replaces the manifest's; "" = the manifest's, else
    # the worker's runtime.default_user). Admin only: docs/security.md.
    user: str = ""
    group: str = ""
    # env names that are write-only besides the ones that look secret (docs/security.md).
    secret_env: list[str] = attrs.field(factory=list)
    # env names whose value is write-only: shown as "***" in ``env``, never read back.
    masked_env: list[str] = attrs.field(factory=list)


@displayed
@attrs.frozen
class Instance:
    """A module deployed on a node: desired state plus the worker's last report.

    ``version`` is the package version its worker reports; ``desired_version`` the one
    it should run (they differ while a rollout moves it, or until its offline node
    returns).
    """

    id: str
    module_id: str
    system_id: str
    node_id: str
    package: str
    version: str
    desired_state: DesiredState
    state: InstanceState
    health: Health = Health.NONE
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    exit_code: int | None = None
    reason: str = ""
    node_online: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    metrics: InstanceSample | None = None
    desired_version: str = ""


@displayed
@attrs.frozen
class AuditEntry:
    id: int
    ts: datetime
    actor_kind: str  # user, token, node, system, anonymous
    actor: str
    ip: str
    action: str
    target: str
    params: dict[str, Any]
    result: str  # ok, error
    status: int
    message: str = ""


@displayed
@attrs.frozen
class SystemActionResult:
    """Outcome of a batch action on one instance of a system."""

    instance_id: str
    ok: bool
    state: InstanceState | None = None
    error: str | None = None


@displayed
@attrs.frozen
class Settings:
    """Cluster settings an admin can read.

    The join token is not among them: the master keeps only its hash. It is printed once
    at the first start, and :class:`JoinToken` shows a new one once, on rotation.
    ``join_token_source`` says where it comes from: ``configuration`` (``auth.join_token``,
    rotated there) or ``database`` (generated; rotated through the API).
    """

    join_token_source: str
    require_approval: bool
    heartbeat_interval: float
    offline_after: float
    max_package_bytes: int
    version: str


@displayed
@attrs.frozen
class JoinToken:
    """A new cluster join token, shown this once: the master keeps only its hash.

    Workers that have joined keep their node credentials; the old token stops working at
    once.
    """

    join_token: str
    rotated_at: datetime


@displayed
@attrs.frozen
class MetricSeries:
    """One target's values of a metric, one per ``step`` seconds from ``start``.

    ``values[i]`` is the value at Unix second ``start + i * step`` (see :attr:`ts`), or
    ``None`` where there was no sample. Columnar on purpose: an hour of 1 s samples is
    one list of 3600 numbers, not 3600 objects, the times cost nothing on the wire, and
    :meth:`to_pandas` hands the list to numpy as it is.
    """

    target: str
    start: int
    step: int
    values: list[float | None]
    name: str = ""  # the node's alias or hostname, the instance's module name

    @property
    def ts(self) -> range:
        """The Unix second of each value."""
        return range(self.start, self.start + len(self.values) * self.step, self.step)

    def points(self) -> list[tuple[int, float]]:
        """``(unix seconds, value)`` of the values that are there (no ``None``)."""
        return [(t, v) for t, v in zip(self.ts, self.values, strict=True) if v is not None]

    def to_pandas(self) -> pandas.Series:
        """The values as a pandas Series with a UTC DatetimeIndex (needs pandas)."""
        frame = series_frame([self.target], [self.start], [self.step], [self.values])
        column: pandas.Series = frame[self.target]
        return column.rename(self.name or self.target)


@displayed
@attrs.frozen
class MetricRange:
    """A metric of one or more targets over a time range: ``series``, one per target.

    ``step`` seconds per point, ``agg`` how the samples within a step were combined.

    Example::

        cpu = gdos.query_range("cpu", "node:*", start=timedelta(hours=1))
        cpu.to_pandas().plot()          # a column per node, a UTC DatetimeIndex
    """

    metric: str
    start: float
    end: float
    step: int
    agg: str
    series: list[MetricSeries] = attrs.field(factory=list)

    def __getitem__(self, target: str) -> MetricSeries:
        """The series of ``target`` (``node:<id>``), or KeyError."""
        for one in self.series:
            if one.target == target:
                return one
        raise KeyError(target)

    def to_pandas(
        self, *, long: bool = False, label: Literal["target", "name"] = "target"
    ) -> pandas.DataFrame:
        """The series as one DataFrame (needs pandas: ``pip install 'gdos[notebook]'``).

        By default a UTC ``DatetimeIndex`` named ``time`` and one column per series, named
        by ``target`` or, with ``label="name"``, by the node's or module's name (a name
        two targets share gets the target appended). A time one series lacks is ``NaN``
        there; rows where no series has a value are left out. With ``long=True``: one row
        per value present, columns ``time``, ``series``, ``name`` and ``value`` (tidy data
        for grouping and plotting libraries).
        """
        labels = [s.target for s in self.series]
        if label == "name":
            names = [s.name or s.target for s in self.series]
            labels = [
                n if names.count(n) == 1 else f"{n} ({s.target})"
                for n, s in zip(names, self.series, strict=True)
            ]
        return series_frame(
            labels,
            [s.start for s in self.series],
            [s.step for s in self.series],
            [s.values for s in self.series],
            long=long,
            extra={"name": [s.name for s in self.series]} if long else None,
        )


@displayed
@attrs.frozen
class MasterHealth:
    """What a master's ``/healthz`` says: whether it has what it needs to take changes.

    A single master (no ``-bus``) answers ``status`` only. Several masters also say which
    one answered, whether it is the leader, and the state (``ok`` or ``lost``) of the
    database and the bus; ``lost_since`` is the Unix time the current outage began.
    While anything is lost, ``status`` is ``unavailable`` and writes are refused (503).
    """

    status: str
    master_id: str | None = None
    leader: bool | None = None
    database: str | None = None
    bus: str | None = None
    lost_since: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the master takes changes (nothing is lost)."""
        return self.status == "ok"

    @property
    def lost(self) -> list[str]:
        """What is lost: ``"database"``, ``"bus"``, both or none."""
        return [name for name in ("database", "bus") if getattr(self, name) == "lost"]


@displayed
@attrs.frozen
class IngestStatus:
    """The master's own ingest counters (cheap to read; what the fleet benchmark polls)."""

    heartbeats: int
    node_samples: int
    instance_samples: int
    last_lag: float
    recent_max_lag: float
    loop_lag_max: float
    nodes_online: int
    series: int
    disconnects: int = 0
    gc_full_collections: int = 0
    gc_last_full_pause: float = 0.0
    gc_frozen_objects: int = 0


@displayed
@attrs.frozen
class MetricValue:
    ts: int
    value: float


@displayed
@attrs.frozen
class MetricLatest:
    """The newest value of every metric of a target."""

    target: str
    values: dict[str, MetricValue]

    def to_pandas(self) -> pandas.DataFrame:
        """One row per metric (the index), columns ``time`` (UTC) and ``value``."""
        pd = import_pandas()
        names = sorted(self.values)
        frame: pandas.DataFrame = pd.DataFrame(
            {
                "time": pd.to_datetime([self.values[n].ts for n in names], unit="s", utc=True),
                "value": [self.values[n].value for n in names],
            },
            index=pd.Index(names, name="metric"),
        )
        return frame


# --- request bodies -------------------------------------------------------------------------


@displayed
@attrs.frozen
class LoginRequest:
    username: str
    password: str


@displayed
@attrs.frozen
class PasswordChange:
    """Your own new password; the current one proves it is you."""

    current_password: str
    new_password: str = attrs.field(validator=PASSWORD)


@displayed
@attrs.frozen
class UserCreate:
    username: str = attrs.field(validator=USERNAME)
    password: str = attrs.field(validator=PASSWORD)
    role: Role = Role.VIEWER


@displayed
@attrs.frozen
class UserPatch:
    role: Role | None = None
    password: str | None = attrs.field(default=None, validator=PASSWORD)
    disabled: bool | None = None


@displayed
@attrs.frozen
class TokenCreate:
    name: str = attrs.field(validator=Check(max_length=100, pattern=NOT_BLANK))
    role: Role | None = None
    expires_in_days: int | None = attrs.field(
        default=None, validator=Check(minimum=1, maximum=3650)
    )


@displayed
@attrs.frozen
class NodePatch:
    alias: str | None = attrs.field(default=None, validator=ALIAS)
    labels: dict[str, str] | None = attrs.field(default=None, validator=LABELS)


@displayed
@attrs.frozen
class PlannedNodeCreate:
    hostname: str = attrs.field(validator=Check(max_length=253, pattern=NOT_BLANK))
    alias: str = attrs.field(default="", validator=ALIAS)
    addresses: list[str] = attrs.field(factory=list)
    labels: dict[str, str] = attrs.field(factory=dict, validator=LABELS)


@displayed
@attrs.frozen
class SystemCreate:
    name: str = attrs.field(validator=NAME)
    description: str = ""


@displayed
@attrs.frozen
class SystemPatch:
    name: str | None = attrs.field(default=None, validator=NAME)
    description: str | None = None


@displayed
@attrs.frozen
class ModuleCreate:
    """A package module (``package`` + ``version``) or an adopted one (``adoption``)."""

    name: str = attrs.field(validator=NAME)
    package: str = ""
    version: str = ""
    env: dict[str, str] = attrs.field(factory=dict, validator=ENV)
    args: list[str] | None = None
    start_order: int = 0
    kind: ModuleKind = ModuleKind.PACKAGE
    adoption: AdoptionSpec | None = None
    health_check: dict[str, Any] | None = attrs.field(
        default=None, metadata={"schema": HEALTH_CHECK}
    )  # a service.json health_check object
    user: str = ""  # admin only
    group: str = ""  # admin only
    secret_env: list[str] = attrs.field(factory=list)


@displayed
@attrs.frozen
class ModulePatch:
    """Fields left ``None`` stay as they are; ``health_check: {}`` removes the override.

    ``env`` is the new set of visible variables, except that a write-only (secret)
    variable it does not name keeps its value, and so does one it names with the
    value ``"***"`` (what a read shows); ``null`` removes a variable. ``user: ""``
    and ``group: ""`` remove the module's account override. ``version`` may only
    repeat the module's version: it changes through a rollout (``POST
    /modules/{id}/rollouts``), which moves the instances too.
    """

    version: str | None = None
    env: dict[str, str | None] | None = attrs.field(default=None, validator=ENV)
    args: list[str] | None = None
    start_order: int | None = None
    adoption: AdoptionSpec | None = None
    health_check: dict[str, Any] | None = attrs.field(
        default=None,
        metadata={"schema": {"anyOf": [HEALTH_CHECK, {"type": "object", "maxProperties": 0}]}},
    )
    user: str | None = None
    group: str | None = None
    secret_env: list[str] | None = None


@displayed
@attrs.frozen
class DeployRequest:
    """Deploy ``module_id`` onto ``node_id``; ``start`` sets the desired state to running."""

    module_id: str
    node_id: str
    start: bool = True
