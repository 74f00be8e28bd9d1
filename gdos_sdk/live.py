"""The live channel (``/api/v1/live``) from Python: typed frames and the protocol, no I/O.

The master pushes changes over one WebSocket; a client subscribes to topics and gets a
snapshot of each (``frame.snapshot`` is true), then only changes. The topics, and the
frame each becomes here:

=================== ======================================================================
``fleet``           :class:`FleetFrame`: node counts by status, instance counts by state,
                    the five busiest nodes by CPU and by memory
``nodes``           :class:`NodesFrame`: changed table rows, removed ids, fresh samples
``node:<id>``       :class:`NodeSamplesFrame`: that node's samples as they arrive
``instances``       :class:`InstancesFrame`: changed instances and removed ids
``system:<id>``     :class:`InstancesFrame`, for one system's instances
``instance:<id>``   :class:`InstanceSamplesFrame`: that instance's samples
``alerts``          :class:`AlertsFrame`: firing/pending counts and alert state changes
``audit``           :class:`AuditFrame`: new audit entries (admins)
``command:<id>``    :class:`CommandFrame`: a fleet command's output and node results (admins)
``batch:<id>``      :class:`BatchFrame`: a batch job, whole, on each change
``rollout:<id>``    :class:`RolloutFrame`: a rollout, whole, on each change (its
                    ``revision`` grows; changes within one push interval come merged)
=================== ======================================================================

:class:`Session` holds what a connection must send and how to read what comes back;
:class:`~gdos_sdk.client.LiveStream` (blocking) and
:class:`~gdos_sdk.client.AsyncLiveStream` do the I/O with the ``websockets`` library, and
reconnect after a dropped socket, subscribing again (so a fresh snapshot follows).

Example::

    for frame in gdos.watch(f"node:{node.id}"):
        for sample in frame.samples:
            print(sample.ts, sample.cpu_percent)
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import attrs

from gdos_sdk.alerts import ActiveAlert
from gdos_sdk.batches import BatchJob
from gdos_sdk.codec import structure
from gdos_sdk.commands import CommandRun, NodeCommandResult
from gdos_sdk.display import displayed
from gdos_sdk.errors import GdosError, ProtocolError, ValidationError, error_from_body
from gdos_sdk.models import AuditEntry, Instance, InstanceSample, NodeSample, NodeStatus
from gdos_sdk.rollouts import Rollout

__all__ = [
    "CLOSE_AUTH",
    "CLOSE_SLOW",
    "LIVE_PATH",
    "MAX_FRAME",
    "AlertChange",
    "AlertsFrame",
    "AuditFrame",
    "BatchFrame",
    "CommandFrame",
    "CommandOutputPiece",
    "FleetFrame",
    "Frame",
    "InstanceSamplesFrame",
    "InstancesFrame",
    "LatestSample",
    "NodeRow",
    "NodeSamplesFrame",
    "NodesFrame",
    "RolloutFrame",
    "RowFingerprint",
    "Session",
    "TopNode",
    "check_topic",
    "handshake_headers",
    "live_url",
    "origin_of",
    "parse_frame",
    "ws_ssl_context",
]

LIVE_PATH = "/api/v1/live"
CLOSE_AUTH = 4401  # the credential no longer holds (logged out, revoked, role lowered)
CLOSE_SLOW = 4008  # the client fell behind; a reconnect starts again from a snapshot
MAX_FRAME = 64 * 1024 * 1024  # a command snapshot holds up to 2 MiB of output per node

_PLAIN_TOPICS = ("fleet", "nodes", "instances", "alerts", "audit")
_ID_TOPICS = ("node", "instance", "system", "command", "batch", "rollout")


# --- frames -----------------------------------------------------------------------------------


@displayed
@attrs.frozen
class LatestSample:
    """The few fields of a node's latest sample that a fleet table shows."""

    ts: float
    cpu_percent: float
    mem_percent: float
    mem_used: int
    mem_total: int
    load1: float


@displayed
@attrs.frozen
class RowFingerprint:
    """The few facts of a node's fingerprint that a fleet table shows."""

    os: str
    os_version: str
    arch: str
    cpu_model: str
    cpu_cores: int
    memory_bytes: int


@displayed
@attrs.frozen
class NodeRow:
    """A node as the ``nodes`` topic shows it (a table row; ``get_node`` has the rest)."""

    id: str
    hostname: str
    alias: str
    status: NodeStatus
    addresses: list[str] = attrs.field(factory=list)
    labels: dict[str, str] = attrs.field(factory=dict)
    instance_count: int = 0
    last_seen: datetime | None = None
    fingerprint: RowFingerprint | None = None
    latest: LatestSample | None = None
    #: a pending node: the id of the planned node it would take over when approved
    claims: str | None = None


@displayed
@attrs.frozen
class TopNode:
    """One of the busiest nodes in a :class:`FleetFrame`."""

    id: str
    hostname: str
    alias: str
    ts: float
    cpu_percent: float
    mem_percent: float
    mem_used: int
    mem_total: int
    load1: float


@displayed
@attrs.frozen
class FleetFrame:
    """``fleet``: the whole summary, each time it changes."""

    topic: str
    snapshot: bool = False
    nodes: dict[str, int] = attrs.field(factory=dict)
    instances: dict[str, int] = attrs.field(factory=dict)
    top_cpu: list[TopNode] = attrs.field(factory=list)
    top_mem: list[TopNode] = attrs.field(factory=list)


@displayed
@attrs.frozen
class NodesFrame:
    """``nodes``: rows that changed (all of them in a snapshot), removed ids, fresh samples.

    ``latest`` maps a node id to its new sample when only the sample changed.
    """

    topic: str
    snapshot: bool = False
    rows: list[NodeRow] = attrs.field(factory=list)
    removed: list[str] = attrs.field(factory=list)
    latest: dict[str, LatestSample] = attrs.field(factory=dict)


@displayed
@attrs.frozen
class NodeSamplesFrame:
    """``node:<id>``: samples as heartbeats bring them (a snapshot: those seen lately)."""

    topic: str
    snapshot: bool = False
    samples: list[NodeSample] = attrs.field(factory=list)

    @property
    def node_id(self) -> str:
        return self.topic.partition(":")[2]


@displayed
@attrs.frozen
class InstanceSamplesFrame:
    """``instance:<id>``: samples of one instance's process tree as they arrive."""

    topic: str
    snapshot: bool = False
    samples: list[InstanceSample] = attrs.field(factory=list)

    @property
    def instance_id(self) -> str:
        return self.topic.partition(":")[2]


@displayed
@attrs.frozen
class InstancesFrame:
    """``instances`` or ``system:<id>``: instances that changed, and removed ids."""

    topic: str
    snapshot: bool = False
    rows: list[Instance] = attrs.field(factory=list)
    removed: list[str] = attrs.field(factory=list)


@displayed
@attrs.frozen
class AuditFrame:
    """``audit``: new audit entries, newest first (a snapshot: the last few)."""

    topic: str
    snapshot: bool = False
    items: list[AuditEntry] = attrs.field(factory=list)


@displayed
@attrs.frozen
class AlertChange:
    """One alert moving: ``change`` is ``pending``, ``firing``, ``resolved`` or ``cancelled``."""

    change: str
    alert: ActiveAlert


@displayed
@attrs.frozen
class AlertsFrame:
    """``alerts``: the counts, and the changes since the last frame.

    ``reload`` is true when too many changed at once to list: read ``active_alerts()``.
    """

    topic: str
    snapshot: bool = False
    firing: int = 0
    pending: int = 0
    changes: list[AlertChange] = attrs.field(factory=list)
    reload: bool = False


@displayed
@attrs.frozen
class CommandOutputPiece:
    """Output of one node of a fleet command, as it arrived."""

    node_id: str
    stream: str  # stdout or stderr
    data: str


@displayed
@attrs.frozen
class CommandFrame:
    """``command:<id>``: a snapshot holds the whole ``run``; later frames hold the new
    ``output`` pieces and the ``nodes`` that ended (their results without output)."""

    topic: str
    snapshot: bool = False
    run: CommandRun | None = None
    output: list[CommandOutputPiece] = attrs.field(factory=list)
    nodes: list[NodeCommandResult] = attrs.field(factory=list)
    finished_at: float | None = None

    @property
    def run_id(self) -> str:
        return self.topic.partition(":")[2]


@displayed
@attrs.frozen
class BatchFrame:
    """``batch:<id>``: the whole job, each time it moves."""

    topic: str
    job: BatchJob
    snapshot: bool = False


@displayed
@attrs.frozen
class RolloutFrame:
    """``rollout:<id>``: the whole rollout, each time it changes.

    The master looks for changes twice a second and sends the rollout as it stands then,
    so steps closer together than that arrive merged: ``rollout.revision`` may grow by
    more than one between frames, and the rollout's last state always comes.
    """

    topic: str
    rollout: Rollout
    snapshot: bool = False


Frame: TypeAlias = (
    FleetFrame
    | NodesFrame
    | NodeSamplesFrame
    | InstanceSamplesFrame
    | InstancesFrame
    | AuditFrame
    | AlertsFrame
    | CommandFrame
    | BatchFrame
    | RolloutFrame
)


def check_topic(topic: str) -> str:
    """``topic`` if it names a live topic; else a ValidationError naming the choices."""
    if isinstance(topic, str):
        kind, colon, arg = topic.partition(":")
        if (not colon and kind in _PLAIN_TOPICS) or (colon and kind in _ID_TOPICS and arg):
            return topic
    raise ValidationError(
        f"unknown topic {topic!r}; expected fleet, nodes, node:<id>, instances, system:<id>,"
        " instance:<id>, command:<id>, batch:<id>, rollout:<id>, alerts or audit",
        details=[{"path": "topic", "message": "unknown topic"}],
    )


def _frame_class(topic: str) -> type[Any]:
    kind = topic.partition(":")[0]
    return {
        "fleet": FleetFrame,
        "nodes": NodesFrame,
        "node": NodeSamplesFrame,
        "instance": InstanceSamplesFrame,
        "instances": InstancesFrame,
        "system": InstancesFrame,
        "audit": AuditFrame,
        "alerts": AlertsFrame,
        "command": CommandFrame,
        "batch": BatchFrame,
        "rollout": RolloutFrame,
    }[kind]


def parse_frame(message: Mapping[str, Any]) -> Frame:
    """One decoded server frame as its typed :data:`Frame`.

    Raises:
        GdosError: the frame is the master's error for its topic (an unknown topic,
            a role that does not allow it ...), rebuilt as its class.
        ProtocolError: the frame is not one this SDK understands.
    """
    topic = message.get("topic")
    error = message.get("error")
    if isinstance(error, dict):
        raise error_from_body(_ERROR_STATUS.get(str(error.get("code")), 400), {"error": error})
    data = message.get("data")
    if not isinstance(topic, str) or not isinstance(data, dict):
        raise ProtocolError(f"a live frame without a topic or data: {str(message)[:200]}")
    try:
        cls = _frame_class(topic)
    except KeyError:
        raise ProtocolError(f"a live frame for an unknown topic {topic!r}") from None
    body = dict(data)
    snapshot = bool(body.pop("snapshot", False))
    if cls is BatchFrame:
        body = {"job": body}
    elif cls is RolloutFrame:
        body = {"rollout": body}
    elif cls is CommandFrame and snapshot:
        body = {"run": body, "finished_at": body.get("finished_at")}
    try:
        found: Frame = structure(
            {**body, "topic": topic, "snapshot": snapshot}, cls, what=topic, extra_keys=True
        )
    except ValidationError as exc:
        raise ProtocolError(
            f"a {topic} frame this SDK cannot read: {exc.message}", details=exc.details
        ) from exc
    return found


_ERROR_STATUS = {"forbidden": 403, "not_found": 404, "unauthenticated": 401, "conflict": 409}


# --- the protocol of one connection -----------------------------------------------------------


@attrs.define
class Session:
    """The topics of one live stream and the first answers still awaited (no I/O).

    A connection sends :meth:`subscribe_all` after the handshake (and again after each
    reconnect); the stream is ready when every topic has answered (:attr:`waiting` is
    empty): with a snapshot, or with an error that :meth:`read` raises.
    """

    topics: list[str] = attrs.field(factory=list)
    waiting: set[str] = attrs.field(factory=set)

    def add(self, topic: str) -> str | None:
        """Remember ``topic``; the message to send (None when already subscribed)."""
        check_topic(topic)
        if topic in self.topics:
            return None
        self.topics.append(topic)
        self.waiting.add(topic)
        return _op("subscribe", topic)

    def remove(self, topic: str) -> str | None:
        """Forget ``topic``; the message to send (None when it was not subscribed)."""
        if topic not in self.topics:
            return None
        self.topics.remove(topic)
        self.waiting.discard(topic)
        return _op("unsubscribe", topic)

    def subscribe_all(self) -> list[str]:
        """What a fresh connection sends: a subscribe per topic (each answers a snapshot)."""
        self.waiting = set(self.topics)
        return [_op("subscribe", t) for t in self.topics]

    def read(self, text: str | bytes) -> Frame | None:
        """One received message as a frame; None for a topic no longer subscribed.

        Raises:
            GdosError: the master refused a topic (its error, rebuilt).
            ProtocolError: not a frame this SDK understands.
        """
        try:
            message = json.loads(text)
        except ValueError as exc:
            raise ProtocolError(f"the live channel sent something that is not JSON: {exc}") from exc
        if not isinstance(message, dict):
            raise ProtocolError("the live channel sent a JSON value that is not an object")
        topic = message.get("topic")
        if topic not in self.topics:
            return None  # an unsubscribed topic's last frame, still on its way
        self.waiting.discard(topic)
        try:
            return parse_frame(message)
        except GdosError:
            if "error" in message and isinstance(topic, str):
                self.remove(topic)
            raise


def _op(op: str, topic: str) -> str:
    return json.dumps({"op": op, "topic": topic})


def live_url(base_url: str) -> str:
    """The live channel's ``ws://`` / ``wss://`` URL for a master at ``base_url``."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValidationError(f"the master URL must be http:// or https://, not {base_url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path + LIVE_PATH, "", ""))


def origin_of(base_url: str) -> str:
    """``scheme://host:port`` of ``base_url`` (the ``Origin`` a session's socket must send)."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"


def handshake_headers(
    headers: Mapping[str, str], cookies: Iterable[tuple[str, str]]
) -> dict[str, str]:
    """The credential of an HTTP client as WebSocket handshake headers.

    A token goes as ``Authorization``; a session (after ``login()``) as its cookies.
    """
    found: dict[str, str] = {}
    auth = headers.get("Authorization") or headers.get("authorization")
    if auth:
        found["Authorization"] = auth
    jar = "; ".join(f"{name}={value}" for name, value in cookies)
    if jar:
        found["Cookie"] = jar
    return found


def ws_ssl_context(url: str, verify: bool | ssl.SSLContext) -> ssl.SSLContext | None:
    """The TLS context for a ``wss://`` URL as the HTTP client verifies (None for ``ws://``)."""
    if not url.startswith("wss://"):
        return None
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
