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
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import attrs

from gdos_sdk.errors import RemoteError, TransportError
from gdos_sdk.models import InstanceSample, NodeSample
from gdos_sdk.protocol import Command, InstanceStatus, Request, Response, encode

__all__ = ["AgentConnection", "Fleet", "NodeRuntime"]

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
        return response.result

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
    """In-memory state of one node."""

    node_id: str
    connection: AgentConnection | None = None
    last_heartbeat: float = 0.0  # monotonic
    last_seen: float = 0.0  # wall clock, flushed to the database now and then
    latest: NodeSample | None = None
    instances: dict[str, InstanceSample] = attrs.field(factory=dict)
    approved: bool = True


class Fleet:
    """Registry of connected workers, keyed by node id."""

    def __init__(
        self,
        *,
        heartbeat_interval: float,
        offline_grace: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.offline_after = heartbeat_interval + offline_grace
        self._clock = clock
        self.nodes: dict[str, NodeRuntime] = {}
        self.on_offline: list[Callable[[str], None]] = []

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
        if old is not None and old is not conn:
            await old.close()

    async def disconnect(self, conn: AgentConnection) -> None:
        rt = self.nodes.get(conn.node_id)
        await conn.close()
        if rt is not None and rt.connection is conn:
            rt.connection = None
            rt.latest = None
            rt.instances.clear()
            for callback in self.on_offline:
                callback(conn.node_id)

    def heartbeat(self, node_id: str, node: NodeSample, instances: list[InstanceSample]) -> None:
        rt = self.runtime(node_id)
        rt.last_heartbeat = self._clock()
        rt.last_seen = time.time()
        rt.latest = node
        rt.instances = {s.instance_id: s for s in instances}

    def is_online(self, node_id: str) -> bool:
        rt = self.nodes.get(node_id)
        if rt is None or rt.connection is None or rt.connection.closed:
            return False
        return self._clock() - rt.last_heartbeat <= self.offline_after

    def connection(self, node_id: str) -> AgentConnection | None:
        """The node's channel if it is online and approved, else None."""
        rt = self.nodes.get(node_id)
        if rt is None or not rt.approved or not self.is_online(node_id):
            return None
        return rt.connection

    def instance_sample(self, node_id: str, instance_id: str) -> InstanceSample | None:
        rt = self.nodes.get(node_id)
        return None if rt is None else rt.instances.get(instance_id)

    async def sweep(self) -> list[str]:
        """Close channels whose heartbeats stopped; return the nodes that went offline."""
        now = self._clock()
        stale = [
            rt.connection
            for rt in self.nodes.values()
            if rt.connection is not None and now - rt.last_heartbeat > self.offline_after
        ]
        for conn in stale:
            log.warning("node %s missed heartbeats; marking offline", conn.node_id)
            await self.disconnect(conn)
        return [c.node_id for c in stale]

    async def forget(self, node_id: str) -> None:
        """Drop a deleted node, closing its channel."""
        rt = self.nodes.pop(node_id, None)
        if rt is not None and rt.connection is not None:
            await rt.connection.close()

    def online_count(self) -> int:
        return sum(1 for node_id in self.nodes if self.is_online(node_id))
