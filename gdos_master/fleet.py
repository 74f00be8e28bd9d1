"""The live fleet: which nodes are connected, their latest samples, their open requests.

Nothing here writes the database. Heartbeats only update memory; a node is
online while its agent channel is open and its last heartbeat is younger
than ``push interval + offline_grace``. :meth:`Fleet.sweep`, called
about twice a second, closes channels that went quiet so a half-open TCP
connection cannot keep a dead node "online".

Ages are measured on the master's own liveness clock (:meth:`Fleet.now`): monotonic
time that stands still while the master's event loop was late (its timers report
how late they woke, :meth:`Fleet.loop_late`). While the loop is stalled (a garbage
collection, a burst of joins) nobody's frames are read, so a node is not late
because the master was.

A node is trusted with its own numbers only (docs/security.md, "Nodes and the
agent channel"): samples of a pending node are dropped, an instance sample counts
only for an instance the master's records place on the sending node (looked up
through ``placement``, cached per node), and a sample whose timestamp lies more
than :attr:`SampleWindow.max_age` behind or :attr:`SampleWindow.max_ahead` ahead of
the master's clock is dropped. The series store caps the series count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import attrs

from gdos_master.ingest import SampleBatch, instance_columns, node_columns, sample_text
from gdos_master.prometheus import INSTANCE_RATES, NODE_RATES, RateTotals
from gdos_sdk.codec import converter
from gdos_sdk.errors import (
    ConflictError,
    GdosError,
    ManifestError,
    RemoteError,
    TransportError,
    ValidationError,
)
from gdos_sdk.metrics.series import SeriesStore
from gdos_sdk.models import InstanceSample, NodeSample
from gdos_sdk.protocol import (
    PROTOCOL_VERSION,
    Command,
    Configure,
    InstanceStatus,
    Request,
    Response,
    encode,
)

__all__ = [
    "AgentConnection",
    "Fleet",
    "IngestStats",
    "LateHandler",
    "NodeRuntime",
    "SampleWindow",
    "worker_error",
]

log = logging.getLogger("gdos.master.fleet")

Sender = Callable[[str], Awaitable[None]]
Sample = dict[str, Any]  # a sample as the wire carried it, checked (gdos_master.ingest)
Placement = Callable[[str], Iterable[str]]

# A node's cached set of its instance ids is looked up again at most this often (seconds),
# and only when a heartbeat names an instance missing from it.
PLACEMENT_REFRESH = 1.0

# Event-loop lateness under this (seconds) is scheduling noise, not a stall of the master.
LATE_TOLERANCE = 0.05

# Called with a worker's answer that came after its request had timed out.
LateHandler = Callable[[Response], None]

# Worker error codes that say the request itself is at fault (the caller can act on it):
# they keep their own class and status instead of 502 "worker error".
_CALLER_ERRORS: dict[str, type[GdosError]] = {
    ConflictError.code: ConflictError,
    ValidationError.code: ValidationError,
    ManifestError.code: ManifestError,
}


def _sample_ts(sample: Sample) -> float:
    ts: float = sample["ts"]
    return ts


def worker_error(response: Response, node_id: str) -> GdosError:
    """The error a worker's failed ``response`` stands for.

    A conflict (``nothing to adopt``, ``stale pid file``) or invalid input is the caller's
    to fix and keeps its class (409, 422); anything else is a :class:`RemoteError` (502).
    ``details`` carries the worker's code and the node id either way.
    """
    error = response.error
    code = error.code if error else "unknown"
    message = error.message if error else "worker reported an error"
    cls = _CALLER_ERRORS.get(code, RemoteError)
    return cls(message, details={"code": code, "node_id": node_id})


class AgentConnection:
    """One worker's open agent channel: send commands, match their responses.

    Example::

        status = await conn.request(StartCommand(instance_id="..."), timeout=30)
    """

    def __init__(
        self,
        node_id: str,
        send: Sender,
        close: Callable[[], Awaitable[None]],
        *,
        protocol: int = PROTOCOL_VERSION,
    ) -> None:
        self.node_id = node_id
        self.protocol = protocol  # the worker's agent protocol (what commands it knows)
        self.id = uuid.uuid4().hex
        self._send = send
        self._close = close
        self._pending: dict[str, asyncio.Future[Response]] = {}
        self._late: dict[str, LateHandler] = {}
        self.closed = False
        # Set by Fleet.disconnect: the sweep and the agent route's clean-up both drop a
        # channel, and one lost channel must count once.
        self.dropped = False

    async def send(self, text: str) -> None:
        if self.closed:
            raise TransportError(f"node {self.node_id} is not connected")
        await self._send(text)

    async def request(
        self, command: Command, timeout: float, *, on_late: LateHandler | None = None
    ) -> InstanceStatus | None:
        """Send ``command``; return the worker's result or raise its error (see :meth:`ask`)."""
        return (await self.ask(command, timeout, on_late=on_late)).result

    async def ask(
        self, command: Command, timeout: float, *, on_late: LateHandler | None = None
    ) -> Response:
        """Send ``command``; return the worker's whole (successful) response or raise its error.

        A worker's error comes back as :func:`worker_error` translates it. When the worker
        does not answer within ``timeout`` this raises :class:`TransportError`; with
        ``on_late``, an answer that arrives later on this channel is handed to it (a deploy
        goes on on the worker after the master stopped waiting, and its outcome matters).
        """
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self.send(encode(Request(id=request_id, command=command, timeout=timeout)))
            try:
                response = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                if on_late is not None and not self.closed:
                    self._late[request_id] = on_late
                raise TransportError(
                    f"node {self.node_id} did not answer {command.kind} within {timeout:g} s"
                ) from None
        finally:
            self._pending.pop(request_id, None)
        if not response.ok:
            raise worker_error(response, self.node_id)
        return response

    def resolve(self, response: Response) -> None:
        future = self._pending.get(response.id)
        if future is not None:
            if not future.done():
                future.set_result(response)
            return
        late = self._late.pop(response.id, None)
        if late is not None:
            try:
                late(response)
            except Exception:  # a handler's bug must not end the channel's receive loop
                log.exception("late answer handler for node %s failed", self.node_id)

    async def close(self) -> None:
        """Fail every open request and close the socket."""
        if self.closed:
            return
        self.closed = True
        self._late.clear()  # the worker's next hello reports how those commands ended
        for future in self._pending.values():
            if not future.done():
                future.set_exception(TransportError(f"connection to node {self.node_id} lost"))
        with contextlib.suppress(Exception):
            await self._close()


@attrs.define
class NodeRuntime:
    """In-memory state of one node.

    The latest samples are kept as JSON text, not as model objects: text is invisible to
    the cyclic garbage collector, while thousands of nodes' sample objects, replaced every
    few seconds, would be promoted to the oldest generation and make its (stop-the-world)
    collections take seconds. They are decoded when someone asks.
    """

    node_id: str
    connection: AgentConnection | None = None
    last_heartbeat: float = 0.0  # Fleet.now(): the liveness clock
    last_seen: float = 0.0  # wall clock, flushed to the database now and then
    latest_text: str | None = None
    latest_ts: float = 0.0
    instance_texts: dict[str, str] = attrs.field(factory=dict)
    approved: bool = True
    # The instances the master's records place on this node (a cache of ``placement``).
    instance_ids: frozenset[str] = frozenset()
    instance_ids_at: float = -math.inf  # monotonic time of the last lookup
    push_interval: float = 1.0
    watchers: int = 0
    _decoded: tuple[str, NodeSample] | None = None

    @property
    def latest(self) -> NodeSample | None:
        text = self.latest_text
        if text is None:
            return None
        if self._decoded is None or self._decoded[0] is not text:
            self._decoded = (text, converter.structure(json.loads(text), NodeSample))
        return self._decoded[1]

    def instance_sample(self, instance_id: str) -> InstanceSample | None:
        text = self.instance_texts.get(instance_id)
        if text is None:
            return None
        return converter.structure(json.loads(text), InstanceSample)


@attrs.define
class RecentMax:
    """The largest value recorded in the last 10 to 20 seconds (two 10 s windows)."""

    last: float = 0.0
    _start: float = 0.0
    _current: float = 0.0
    _previous: float = 0.0

    def record(self, value: float, now: float) -> None:
        self.last = value
        if now - self._start >= 10.0:
            self._previous, self._current, self._start = self._current, 0.0, now
        self._current = max(self._current, value)

    @property
    def value(self) -> float:
        return max(self._previous, self._current)


@attrs.frozen
class SampleWindow:
    """How far a sample's timestamp may lie from the master's clock and still be kept.

    ``max_age`` covers the worker's buffer after an outage (5 minutes) plus the longest
    push interval and some clock skew; ``max_ahead`` allows for skew only. Samples outside
    are dropped (not clamped: moving them would invent values at the wrong time).
    """

    max_age: float = 900.0
    max_ahead: float = 60.0


@attrs.define
class IngestStats:
    """The master's own ingest counters (exported at /metrics)."""

    heartbeats: int = 0
    node_samples: int = 0
    instance_samples: int = 0
    disconnects: int = 0
    frames: int = 0  # agent frames received (any kind, any node)
    largest_frame: int = 0  # bytes of the largest agent frame received since start
    # samples not kept, by reason: pending (node not approved), not_owned (an instance the
    # records do not place on the sender), out_of_window (timestamp), capped (series caps)
    dropped: dict[str, int] = attrs.field(
        factory=lambda: dict.fromkeys(("pending", "not_owned", "out_of_window", "capped"), 0)
    )
    # seconds between a batch's newest sample and its arrival
    lag: RecentMax = attrs.field(factory=RecentMax)
    # how late the event loop wakes up a 0.1 s sleeper: the master's own responsiveness
    loop_lag: RecentMax = attrs.field(factory=RecentMax)

    @property
    def last_lag(self) -> float:
        return self.lag.last

    @property
    def recent_max_lag(self) -> float:
        return self.lag.value


class Fleet:
    """Registry of connected workers, keyed by node id."""

    def __init__(
        self,
        *,
        heartbeat_interval: float,
        offline_grace: float,
        store: SeriesStore | None = None,
        heartbeat_budget: float = 500.0,
        max_push_interval: float = 15.0,
        placement: Placement | None = None,
        window: SampleWindow | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.offline_grace = offline_grace
        self.offline_after = heartbeat_interval + offline_grace
        self.heartbeat_budget = heartbeat_budget
        self.max_push_interval = max_push_interval
        self.store = store if store is not None else SeriesStore()
        self.stats = IngestStats()
        # Which instance ids the master's records place on a node; without it, no instance
        # sample is accepted.
        self._placement = placement
        self.window = window if window is not None else SampleWindow()
        # Byte and CPU counters for /metrics, integrated from the samples' rates.
        self.totals = RateTotals()
        self._clock = clock
        self._wall = wall_clock
        # Seconds the event loop was known to be stalled, and until when (self._clock time).
        self._stalled = 0.0
        self._stalled_until = -math.inf
        self.nodes: dict[str, NodeRuntime] = {}
        # Nodes whose worker is connected to another master holding a fresh lease on them
        # ({node id: master id}; gdos_master.cluster): online here too, but not connected.
        self.remote: dict[str, str] = {}
        # Makes the channel to a node held by another master (gdos_master.relay), given
        # the node and that master's id; None with one master.
        self.remote_channel: Callable[[str, str], AgentConnection] | None = None
        self.on_offline: list[Callable[[str], None]] = []
        # Called with (node id, node samples, instance samples) after each heartbeat: the
        # samples kept, as checked dicts in the models' unstructured form.
        self.on_samples: list[Callable[[str, list[Sample], list[Sample]], None]] = []

    # --- the liveness clock ---------------------------------------------------------------------

    def now(self) -> float:
        """The liveness clock: monotonic seconds, less the time the event loop was stalled."""
        return self._clock() - self._stalled

    def loop_late(self, seconds: float) -> None:
        """A timer of the event loop fired ``seconds`` late: stop the liveness clock for that.

        Several timers may report the same stall; each stretch of time counts once. A few
        milliseconds of lateness are normal scheduling and do not count.
        """
        if seconds < LATE_TOLERANCE:
            return
        now = self._clock()
        began = max(now - seconds, self._stalled_until)
        if now > began:
            self._stalled += now - began
        self._stalled_until = max(self._stalled_until, now)

    @property
    def stalled(self) -> float:
        """Seconds the liveness clock stood still (the event loop's stalls, in all)."""
        return self._stalled

    def runtime(self, node_id: str) -> NodeRuntime:
        found = self.nodes.get(node_id)
        if found is None:
            found = self.nodes[node_id] = NodeRuntime(node_id=node_id)
        return found

    async def connect(self, conn: AgentConnection, *, approved: bool) -> None:
        """Make ``conn`` the node's channel, closing any older one (a reconnect race)."""
        rt = self.runtime(conn.node_id)
        old = rt.connection
        rt.connection = conn
        rt.approved = approved
        rt.last_heartbeat = self.now()
        rt.last_seen = self._wall()
        rt.push_interval = self.desired_interval(rt)
        if old is not None and old is not conn:
            await old.close()

    def initial_interval(self, node_id: str) -> float:
        """The push interval to put in a node's welcome."""
        return self.desired_interval(self.runtime(node_id))

    async def disconnect(self, conn: AgentConnection) -> None:
        """Drop ``conn`` (idempotent: a channel counts as one disconnect however it ended)."""
        rt = self.nodes.get(conn.node_id)
        await conn.close()
        if not conn.dropped:
            conn.dropped = True
            self.stats.disconnects += 1
        if rt is not None and rt.connection is conn:
            rt.connection = None
            rt.latest_text = None
            rt.instance_texts = {}
            for callback in self.on_offline:
                callback(conn.node_id)

    def touch(self, node_id: str) -> None:
        """Record that a node is alive (any frame counts), without reading what it sent."""
        rt = self.runtime(node_id)
        rt.last_heartbeat = self.now()
        rt.last_seen = self._wall()

    def frame(self, size: int) -> None:
        """Count one agent frame of ``size`` bytes (characters)."""
        self.stats.frames += 1
        if size > self.stats.largest_frame:
            self.stats.largest_frame = size

    def heartbeat(
        self, node_id: str, nodes: list[NodeSample], instances: list[InstanceSample]
    ) -> None:
        """:meth:`ingest` for samples given as models (tests, the general decoding path)."""
        self.ingest(node_id, SampleBatch.from_models(nodes, instances))

    def ingest(self, node_id: str, batch: SampleBatch) -> None:
        """Record liveness and the acceptable samples of a heartbeat batch (no database write).

        Kept: samples of an approved node, timestamped within :attr:`window` of the
        master's clock, and (instance samples) of instances placed on ``node_id``. They are
        stored a metric at a time (:mod:`gdos_master.ingest`): no model object per sample.
        """
        self.touch(node_id)
        rt = self.nodes[node_id]
        now = rt.last_seen
        self.stats.heartbeats += 1
        dropped = self.stats.dropped
        nodes, instances = batch.nodes, batch.instances
        if not rt.approved:
            dropped["pending"] += len(nodes) + len(instances)
            return
        oldest, newest = now - self.window.max_age, now + self.window.max_ahead
        given = len(nodes) + len(instances)
        nodes = [s for s in nodes if oldest <= s["ts"] <= newest]
        instances = [s for s in instances if oldest <= s["ts"] <= newest]
        dropped["out_of_window"] += given - len(nodes) - len(instances)
        if instances:
            given = len(instances)
            instances = self._owned(rt, instances)
            dropped["not_owned"] += given - len(instances)
        dropped["capped"] += self._keep(rt, nodes, instances, now, checked=batch.checked)
        self.stats.node_samples += len(nodes)
        self.stats.instance_samples += len(instances)
        if self.on_samples:
            for callback in self.on_samples:
                callback(node_id, nodes, instances)

    def mirror(self, node_id: str, nodes: list[Sample], instances: list[Sample]) -> None:
        """Keep the samples of a node connected to another master, which relayed them.

        That master checked them (window, approval, placement); here they are only stored,
        so that this master's charts, latest values and alerts show the node too. Liveness
        comes from the node's lease (:attr:`remote`), not from these.
        """
        rt = self.runtime(node_id)
        # checked there (no NaN or infinity): the latest-sample text may be written by orjson
        self._keep(rt, nodes, instances, self._wall(), checked=True, lag=False)
        if self.on_samples:
            for callback in self.on_samples:
                callback(node_id, nodes, instances)

    def _keep(
        self,
        rt: NodeRuntime,
        nodes: list[Sample],
        instances: list[Sample],
        now: float,
        *,
        checked: bool,
        lag: bool = True,
    ) -> int:
        """Store checked samples and the latest of each; how many the series caps refused.

        ``checked``: as :func:`~gdos_master.ingest.sample_text` takes it. ``lag``: record
        the ingest lag (this master's own workers' samples only).
        """
        node_id = rt.node_id
        store = self.store
        totals = self.totals
        capped = 0
        if nodes:
            target = f"node:{node_id}"
            columns = node_columns(nodes)
            capped += store.add_columns(target, columns)
            totals.add_many(
                target,
                [s["ts"] for s in nodes],
                {metric: values for metric, _, values in columns if metric in NODE_RATES},
            )
            newest_sample = max(nodes, key=_sample_ts)
            if rt.latest_text is None or newest_sample["ts"] >= rt.latest_ts:
                rt.latest_text = sample_text(newest_sample, checked=checked)
                rt.latest_ts = newest_sample["ts"]
            if lag:
                self.stats.lag.record(max(0.0, now - newest_sample["ts"]), now)
        latest: dict[str, Sample] = {}
        for instance_id, (times, icolumns) in instance_columns(instances).items():
            target = f"instance:{instance_id}"
            capped += store.add_columns(target, icolumns)
            totals.add_many(
                target,
                times,
                {metric: values for metric, _, values in icolumns if metric in INSTANCE_RATES},
            )
        for isample in instances:
            seen = latest.get(isample["instance_id"])
            if seen is None or isample["ts"] >= seen["ts"]:
                latest[isample["instance_id"]] = isample
        if instances or nodes:
            rt.instance_texts = {iid: sample_text(s, checked=checked) for iid, s in latest.items()}
        return capped

    def _owned(self, rt: NodeRuntime, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The samples of instances the master's records place on ``rt``'s node."""
        owned = rt.instance_ids
        if all(s["instance_id"] in owned for s in instances):
            return instances
        now = self._clock()
        if self._placement is not None and now - rt.instance_ids_at >= PLACEMENT_REFRESH:
            # A new instance (deployed since the last lookup), or a node lying: look again,
            # at most once per PLACEMENT_REFRESH so a stream of made-up ids costs little.
            rt.instance_ids = owned = frozenset(self._placement(rt.node_id))
            rt.instance_ids_at = now
        return [s for s in instances if s["instance_id"] in owned]

    def is_online(self, node_id: str) -> bool:
        """Connected here and heard from in time, or held by another master (:attr:`remote`)."""
        return self.is_connected(node_id) or node_id in self.remote

    def is_connected(self, node_id: str) -> bool:
        """The node's channel is open on this master and it was heard from in time."""
        rt = self.nodes.get(node_id)
        if rt is None or rt.connection is None or rt.connection.closed:
            return False
        return self.now() - rt.last_heartbeat <= rt.push_interval + self.offline_grace

    # --- push intervals -----------------------------------------------------------------------

    def desired_interval(self, rt: NodeRuntime) -> float:
        """1 s while watched; unwatched nodes share the heartbeat budget.

        A fleet of N nodes pushes about ``heartbeat_budget`` heartbeats per second: each
        unwatched node every ``N / budget`` seconds (rounded up to whole seconds, within
        ``[heartbeat_interval, max_push_interval]``). Samples keep 1 s resolution; only the
        batches grow.
        """
        if rt.watchers > 0:
            return self.heartbeat_interval
        share = math.ceil(len(self.nodes) / self.heartbeat_budget)
        return float(min(self.max_push_interval, max(self.heartbeat_interval, share)))

    async def watch(self, node_id: str, delta: int) -> None:
        """A browser started (+1) or stopped (-1) watching a node; adjust its push interval."""
        rt = self.runtime(node_id)
        rt.watchers = max(0, rt.watchers + delta)
        await self._apply_interval(rt)

    async def _apply_interval(self, rt: NodeRuntime) -> None:
        wanted = self.desired_interval(rt)
        if wanted == rt.push_interval:
            return
        conn = rt.connection
        if conn is not None and not conn.closed:
            try:
                # Bounded: a connection that cannot take a frame now is retried next time.
                await asyncio.wait_for(conn.send(encode(Configure(push_interval=wanted))), 5)
            except Exception:
                return
        # The deadline of the new pace starts now. Shorter: the last heartbeat came at the old,
        # slower pace (the worker pushes at once on a Configure). Longer: the worker moves to
        # a random phase within the new interval from the Configure on, which may come later
        # than the old deadline. Either way the node must not flap offline.
        rt.last_heartbeat = self.now()
        rt.push_interval = wanted

    async def rebalance(self) -> None:
        """Re-apply push intervals after the fleet crossed a multiple of the heartbeat budget."""
        changed = [
            rt
            for rt in list(self.nodes.values())
            if rt.connection is not None and self.desired_interval(rt) != rt.push_interval
        ]
        # Concurrently: one slow connection must not hold up the others (or the sweep that
        # runs in the same housekeeping loop).
        await asyncio.gather(*(self._apply_interval(rt) for rt in changed))

    def is_approved(self, node_id: str) -> bool:
        """Whether the node's samples and messages are read (False while it is pending)."""
        rt = self.nodes.get(node_id)
        return rt is not None and rt.approved

    def connection(self, node_id: str) -> AgentConnection | None:
        """The node's channel if it is online and approved, else None.

        A node connected to another master (:attr:`remote`) is reached through it: the
        channel is a :class:`~gdos_master.relay.RemoteConnection`.
        """
        rt = self.nodes.get(node_id)
        if rt is None or not rt.approved or not self.is_connected(node_id):
            owner = self.remote.get(node_id)
            if owner is not None and self.remote_channel is not None:
                return self.remote_channel(node_id, owner)
            return None
        return rt.connection

    def instance_sample(self, node_id: str, instance_id: str) -> InstanceSample | None:
        rt = self.nodes.get(node_id)
        return None if rt is None else rt.instance_sample(instance_id)

    async def sweep(self) -> list[str]:
        """Close channels whose heartbeats stopped; return the nodes that went offline."""
        now = self.now()
        stale = [
            rt.connection
            for rt in self.nodes.values()
            if rt.connection is not None
            and now - rt.last_heartbeat > rt.push_interval + self.offline_grace
        ]
        for conn in stale:
            log.warning("node %s missed heartbeats; marking offline", conn.node_id)
            await self.disconnect(conn)
        return [c.node_id for c in stale]

    async def forget(self, node_id: str) -> None:
        """Drop a deleted node, closing its channel and freeing its series."""
        rt = self.nodes.pop(node_id, None)
        self.store.drop(f"node:{node_id}")
        self.totals.drop(f"node:{node_id}")
        if rt is not None and rt.connection is not None:
            await rt.connection.close()

    def forget_instance(self, instance_id: str) -> None:
        """Free a destroyed instance's series; no node may report it any more."""
        self.store.drop(f"instance:{instance_id}")
        for rt in self.nodes.values():
            if instance_id in rt.instance_ids:
                rt.instance_ids = rt.instance_ids - {instance_id}
        self.totals.drop(f"instance:{instance_id}")

    def connection_count(self) -> int:
        """Open agent channels (online or not yet swept)."""
        return sum(1 for rt in self.nodes.values() if rt.connection is not None)

    def online_count(self) -> int:
        """Nodes online: connected here, or to another master (:attr:`remote`)."""
        here = sum(1 for node_id in self.nodes if self.is_connected(node_id))
        return here + sum(1 for node_id in self.remote if not self.is_connected(node_id))

    def online_ids(self) -> frozenset[str]:
        """The ids of the nodes online (see :meth:`is_online`)."""
        here = (n for n in self.nodes if self.is_connected(n))
        return frozenset(here).union(self.remote)
