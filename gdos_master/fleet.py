"""The live fleet: which nodes are connected, their latest samples, their open requests.

Nothing here touches the database. Heartbeats only update memory; a node is
online while its agent channel is open and its last heartbeat is younger
than ``heartbeat_interval + offline_grace``. :meth:`Fleet.sweep`, called
about twice a second, closes channels that went quiet so a half-open TCP
connection cannot keep a dead node "online".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable

import attrs

from gdos_master.prometheus import INSTANCE_RATES, NODE_RATES, RateTotals
from gdos_sdk.codec import converter
from gdos_sdk.errors import RemoteError, TransportError
from gdos_sdk.metrics.names import instance_values, node_values
from gdos_sdk.metrics.series import SeriesStore
from gdos_sdk.models import InstanceSample, NodeSample
from gdos_sdk.protocol import Command, Configure, InstanceStatus, Request, Response, encode

__all__ = ["AgentConnection", "Fleet", "IngestStats", "NodeRuntime"]

log = logging.getLogger("gdos.master.fleet")

Sender = Callable[[str], Awaitable[None]]


class AgentConnection:
    """One worker's open agent channel: send commands, match their responses.

    Example::

        status = await conn.request(StartCommand(instance_id="..."), timeout=30)
    """

    def __init__(self, node_id: str, send: Sender, close: Callable[[], Awaitable[None]]) -> None:
        self.node_id = node_id
        self.id = uuid.uuid4().hex
        self._send = send
        self._close = close
        self._pending: dict[str, asyncio.Future[Response]] = {}
        self.closed = False

    async def send(self, text: str) -> None:
        if self.closed:
            raise TransportError(f"node {self.node_id} is not connected")
        await self._send(text)

    async def request(self, command: Command, timeout: float) -> InstanceStatus | None:
        """Send ``command``; return the worker's result or raise its error."""
        return (await self.ask(command, timeout)).result

    async def ask(self, command: Command, timeout: float) -> Response:
        """Send ``command``; return the worker's whole (successful) response or raise its error."""
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self.send(encode(Request(id=request_id, command=command, timeout=timeout)))
            try:
                response = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise TransportError(
                    f"node {self.node_id} did not answer {command.kind} within {timeout:g} s"
                ) from None
        finally:
            self._pending.pop(request_id, None)
        if not response.ok:
            error = response.error
            raise RemoteError(
                error.message if error else "worker reported an error",
                details={"code": error.code if error else "unknown", "node_id": self.node_id},
            )
        return response

    def resolve(self, response: Response) -> None:
        future = self._pending.get(response.id)
        if future is not None and not future.done():
            future.set_result(response)

    async def close(self) -> None:
        """Fail every open request and close the socket."""
        if self.closed:
            return
        self.closed = True
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
    last_heartbeat: float = 0.0  # monotonic
    last_seen: float = 0.0  # wall clock, flushed to the database now and then
    latest_text: str | None = None
    latest_ts: float = 0.0
    instance_texts: dict[str, str] = attrs.field(factory=dict)
    approved: bool = True
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


@attrs.define
class IngestStats:
    """The master's own ingest counters (exported at /metrics)."""

    heartbeats: int = 0
    node_samples: int = 0
    instance_samples: int = 0
    disconnects: int = 0
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.offline_grace = offline_grace
        self.offline_after = heartbeat_interval + offline_grace
        self.heartbeat_budget = heartbeat_budget
        self.max_push_interval = max_push_interval
        self.store = store if store is not None else SeriesStore()
        self.stats = IngestStats()
        # Byte and CPU counters for /metrics, integrated from the samples' rates.
        self.totals = RateTotals()
        self._clock = clock
        self.nodes: dict[str, NodeRuntime] = {}
        self.on_offline: list[Callable[[str], None]] = []
        # Called with (node id, node samples, instance samples) after each heartbeat.
        self.on_samples: list[Callable[[str, list[NodeSample], list[InstanceSample]], None]] = []

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
        rt.last_heartbeat = self._clock()
        rt.last_seen = time.time()
        rt.push_interval = self.desired_interval(rt)
        if old is not None and old is not conn:
            await old.close()

    def initial_interval(self, node_id: str) -> float:
        """The push interval to put in a node's welcome."""
        return self.desired_interval(self.runtime(node_id))

    async def disconnect(self, conn: AgentConnection) -> None:
        rt = self.nodes.get(conn.node_id)
        await conn.close()
        self.stats.disconnects += 1
        if rt is not None and rt.connection is conn:
            rt.connection = None
            rt.latest_text = None
            rt.instance_texts = {}
            for callback in self.on_offline:
                callback(conn.node_id)

    def heartbeat(
        self, node_id: str, nodes: list[NodeSample], instances: list[InstanceSample]
    ) -> None:
        """Record liveness and every sample of a heartbeat batch (no database write)."""
        rt = self.runtime(node_id)
        rt.last_heartbeat = self._clock()
        now = time.time()
        rt.last_seen = now
        store = self.store
        node_target = f"node:{node_id}"
        totals = self.totals
        for sample in nodes:
            values = node_values(sample)
            store.add(node_target, values, sample.ts)
            totals.add(node_target, sample.ts, values, NODE_RATES)
        if nodes:
            newest = max(nodes, key=lambda s: s.ts)
            if rt.latest_text is None or newest.ts >= rt.latest_ts:
                rt.latest_text = json.dumps(converter.unstructure(newest))
                rt.latest_ts = newest.ts
            self.stats.lag.record(max(0.0, now - newest.ts), now)
        latest: dict[str, InstanceSample] = {}
        for isample in instances:
            target = f"instance:{isample.instance_id}"
            ivalues = instance_values(isample)
            store.add(target, ivalues, isample.ts)
            totals.add(target, isample.ts, ivalues, INSTANCE_RATES)
            seen = latest.get(isample.instance_id)
            if seen is None or isample.ts >= seen.ts:
                latest[isample.instance_id] = isample
        if instances or nodes:
            rt.instance_texts = {
                iid: json.dumps(converter.unstructure(s)) for iid, s in latest.items()
            }
        self.stats.heartbeats += 1
        self.stats.node_samples += len(nodes)
        self.stats.instance_samples += len(instances)
        for callback in self.on_samples:
            callback(node_id, nodes, instances)

    def is_online(self, node_id: str) -> bool:
        rt = self.nodes.get(node_id)
        if rt is None or rt.connection is None or rt.connection.closed:
            return False
        return self._clock() - rt.last_heartbeat <= rt.push_interval + self.offline_grace

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
        if wanted < rt.push_interval:
            # The last heartbeat came at the old, slower pace: start the shorter deadline now
            # (the worker pushes at once on a Configure), so the node cannot flap offline.
            rt.last_heartbeat = self._clock()
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

    def connection(self, node_id: str) -> AgentConnection | None:
        """The node's channel if it is online and approved, else None."""
        rt = self.nodes.get(node_id)
        if rt is None or not rt.approved or not self.is_online(node_id):
            return None
        return rt.connection

    def instance_sample(self, node_id: str, instance_id: str) -> InstanceSample | None:
        rt = self.nodes.get(node_id)
        return None if rt is None else rt.instance_sample(instance_id)

    async def sweep(self) -> list[str]:
        """Close channels whose heartbeats stopped; return the nodes that went offline."""
        now = self._clock()
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
        """Free a destroyed instance's series."""
        self.store.drop(f"instance:{instance_id}")
        self.totals.drop(f"instance:{instance_id}")

    def online_count(self) -> int:
        return sum(1 for node_id in self.nodes if self.is_online(node_id))
