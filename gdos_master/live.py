"""The browser live channel (``/api/v1/live``): pages subscribe to topics, the master pushes.

Protocol (one JSON object per text frame)::

    client -> {"op": "subscribe", "topic": "nodes"}
    client -> {"op": "unsubscribe", "topic": "nodes"}
    server -> {"topic": "nodes", "data": {...}}
    server -> {"topic": "nodes", "error": {"code": "...", "message": "..."}}

Every subscription first gets a snapshot (``"snapshot": true``), then only
changes. Topics:

============== ================================================================
``fleet``      node counts by status, instance counts by state, top nodes by CPU
               and memory; the whole summary, sent again when it changes
``nodes``      ``rows`` (a node as ``GET /nodes`` renders it, cut to the fields a table
               shows, ``fingerprint`` and ``latest`` too), ``removed`` ids,
               and ``latest``: ``{node id: sample}`` for rows whose sample alone
               changed
``node:<id>``  ``samples``: that node's ``NodeSample`` as heartbeats arrive (the
               snapshot holds the samples seen since someone subscribed)
``instances``  ``rows`` (``Instance`` as the API renders it) and ``removed`` ids
``system:<id>`` the same, for one system's instances
``instance:<id>`` ``samples``: that instance's ``InstanceSample`` as they arrive
``audit``      ``items``: new audit entries, newest first (admins only)
``alerts``     ``firing`` and ``pending`` counts, and ``changes``: ``{"change": "firing" |
               "resolved" | "pending" | "cancelled", "alert": ActiveAlert}`` as the alert
               engine reports them (``reload: true`` instead when too many came at once)
``command:<id>`` a fleet command run: ``output`` pieces per node as they arrive, ``nodes``
               results as they end (admins only; see :mod:`gdos_master.commands`)
``batch:<id>`` an ordered batch action: the whole job on each change
               (see :mod:`gdos_master.batches`)
``rollout:<id>`` a rollout: the whole job on each change (its ``revision`` grows), per
               instance ``waiting``, ``preparing``, ``stopping``, ``starting``,
               ``verifying``, ``done`` ... (see :mod:`gdos_master.rollouts`)
============== ================================================================

One :class:`LiveHub` per master polls the in-memory state (the fleet, and
the database only when its change counter moved) every ``interval``
seconds, computes each topic's changes once, and hands the encoded frame to
every subscriber's bounded queue. A browser that does not keep up fills its
queue and is disconnected; it never blocks the master. Browsers authenticate
with their session cookie (and the ``Origin`` must match the ``Host``, so
another site cannot open the socket with the user's cookie); scripts with
``Authorization: Bearer``. Node credentials are refused. One user holds at most
``auth.max_sockets_per_user`` sockets. A socket's credential is checked again
every ``REAUTH_INTERVAL`` seconds and at once whenever the user's rights or
credentials change (:attr:`~gdos_master.accounts.Accounts.on_change`): a socket
whose credential no longer holds, or whose role went down, is closed with 4401
(the console then asks ``/auth/me`` and reconnects if it still may).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from quart import Quart, websocket

from gdos_master.audit import list_audit
from gdos_master.auth import Principal, authenticate_headers, authenticate_websocket
from gdos_master.routing import check_password_fresh, error_response
from gdos_sdk.alerts import AlertPhase
from gdos_sdk.codec import parse_json, unstructure
from gdos_sdk.errors import (
    AuthError,
    ConflictError,
    GdosError,
    NotFoundError,
    PermissionDenied,
    ValidationError,
)
from gdos_sdk.models import Node, Role

if TYPE_CHECKING:
    from gdos_master.app import Master

__all__ = ["LiveClient", "LiveHub", "register_live_socket"]

log = logging.getLogger("gdos.master.live")

INTERVAL = 0.5  # at most two frames per second per topic
QUEUE_SIZE = 64  # frames a browser may lag behind before it is dropped
MAX_TOPICS = 64
HISTORY = 120  # samples a node:/instance: topic keeps for late subscribers
AUDIT_RECENT = 20
REAUTH_INTERVAL = 10.0  # a logged-out or disabled user loses the socket this fast

CLOSE_AUTH = 4401
CLOSE_SLOW = 4008

_FINGERPRINT_KEYS = ("os", "os_version", "arch", "cpu_model", "cpu_cores", "memory_bytes")
_LATEST_KEYS = ("ts", "cpu_percent", "mem_percent", "mem_used", "mem_total", "load1")


class LiveClient:
    """One browser's subscriptions and its bounded outgoing queue."""

    def __init__(
        self,
        principal: Principal,
        *,
        queue_size: int = QUEUE_SIZE,
        reauth: Callable[[], Principal] | None = None,
    ) -> None:
        self.principal = principal
        #: Authenticates the socket's credential again (raises AuthError when it is gone).
        self.reauth = reauth
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.topics: set[str] = set()
        self.closing = asyncio.Event()
        self.close_code = 1000
        self.close_reason = ""

    def push(self, text: str) -> bool:
        """Queue a frame; False (and the client is marked for closing) when it is full."""
        if self.closing.is_set():
            return False
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.close(CLOSE_SLOW, "too slow: the live channel fell behind")
            return False
        return True

    def close(self, code: int, reason: str) -> None:
        if not self.closing.is_set():
            self.close_code, self.close_reason = code, reason
            self.closing.set()


def frame(topic: str, data: Any = None, *, error: GdosError | None = None) -> str:
    """Encode one server frame."""
    body: dict[str, Any] = {"topic": topic}
    if error is not None:
        body["error"] = {"code": error.code, "message": error.message}
    else:
        body["data"] = data
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


# --- what the topics read ---------------------------------------------------------------------


def _node_row(node: Node) -> dict[str, Any]:
    fp = node.fingerprint
    return {
        "id": node.id,
        "hostname": node.hostname,
        "alias": node.alias,
        "status": node.status.value,
        "addresses": list(node.addresses),
        "labels": dict(node.labels),
        "instance_count": node.instance_count,
        "last_seen": unstructure(node.last_seen),
        "fingerprint": None if fp is None else {key: getattr(fp, key) for key in _FINGERPRINT_KEYS},
        "claims": node.claims,  # the planned node a pending one would take over when approved
    }


class NodeCache:
    """Node rows built by :class:`~gdos_master.nodes.Nodes`, rebuilt only where something changed.

    Building all rows costs ~0.1 ms per node, too much to redo twice a second
    for thousands of nodes. A row is rebuilt when its database columns, its
    instance count or its liveness changed, detected by one narrow read that
    only runs after the database's change counter moved.
    """

    def __init__(self, master: Master) -> None:
        self.master = master
        self.rows: dict[str, dict[str, Any]] = {}
        self._signatures: dict[str, tuple[Any, ...]] = {}
        self.version = 0  # moves whenever a row is added, changed or removed
        self._changes = -1
        self._online: frozenset[str] = frozenset()

    @property
    def online(self) -> frozenset[str]:
        """Ids of the nodes whose channel is up (their rows may still say pending)."""
        return self._online

    def refresh(self) -> None:
        fleet = self.master.fleet
        online = fleet.online_ids()
        changes = self.master.db.changes
        if changes == self._changes and online == self._online and self._changes >= 0:
            return
        signatures = self._read_signatures(online)
        stale = [n for n, sig in signatures.items() if self._signatures.get(n) != sig]
        gone = set(self.rows) - set(signatures)
        if self._changes < 0 or len(stale) > max(100, len(signatures) // 4):
            self.rows = {n.id: _node_row(n) for n in self.master.nodes.list_nodes()}
        else:
            for node_id in gone:
                del self.rows[node_id]
            for node_id in stale:
                try:
                    self.rows[node_id] = _node_row(self.master.nodes.get(node_id))
                except NotFoundError:
                    self.rows.pop(node_id, None)
        if stale or gone or self._changes < 0:
            self.version += 1
        self._signatures = signatures
        self._changes, self._online = changes, online

    def _read_signatures(self, online: frozenset[str]) -> dict[str, tuple[Any, ...]]:
        db = self.master.db
        counts = {
            r[0]: r[1] for r in db.all("SELECT node_id, COUNT(*) FROM instances GROUP BY node_id")
        }
        rows = db.all(
            "SELECT id, hostname, alias, addresses, labels, approved, planned, agent_version,"
            " length(fingerprint), claims FROM nodes"
        )
        return {r[0]: (*r, counts.get(r[0], 0), r[0] in online) for r in rows}

    def latest(self, node_id: str) -> dict[str, Any] | None:
        """The node's latest sample, cut to the table's fields, while it is online."""
        row = self.rows.get(node_id)
        rt = self.master.fleet.nodes.get(node_id)
        if row is None or rt is None or rt.latest is None or row["status"] != "online":
            return None
        return {key: getattr(rt.latest, key) for key in _LATEST_KEYS}


class View:
    """What one tick reads, each piece at most once."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub
        self._instances: list[dict[str, Any]] | None = None
        self._nodes = False

    def nodes(self) -> NodeCache:
        if not self._nodes:
            self.hub.node_cache.refresh()
            self._nodes = True
        return self.hub.node_cache

    def instances(self) -> list[dict[str, Any]]:
        if self._instances is None:
            found = self.hub.master.orchestrator.list_instances()
            self._instances = [unstructure(i) for i in found]
        return self._instances


# --- topics -----------------------------------------------------------------------------------


class Topic:
    """A subscription target: ``poll`` moves it to the current state and returns the change."""

    role = Role.VIEWER

    def __init__(self, name: str) -> None:
        self.name = name
        self.subscribers: set[LiveClient] = set()

    def poll(self, view: View) -> Any | None:
        raise NotImplementedError

    def snapshot(self) -> Any:
        raise NotImplementedError


class FleetTopic(Topic):
    def __init__(self, name: str, master: Master) -> None:
        super().__init__(name)
        self.master = master
        self.summary: dict[str, Any] = {}
        self._states: dict[str, int] = {}
        self._key: tuple[int, frozenset[str]] | None = None

    def _instance_states(self, cache: NodeCache) -> dict[str, int]:
        # States change only by a database write or a node coming or going: count again
        # only then, not on every tick (every open page subscribes to this topic).
        key = (self.master.db.changes, cache.online)
        if key != self._key:
            found = self.master.orchestrator.list_instances()
            self._states = dict(collections.Counter(i.state.value for i in found))
            self._key = key
        return self._states

    def poll(self, view: View) -> Any | None:
        cache = view.nodes()
        statuses = collections.Counter(r["status"] for r in cache.rows.values())
        states = self._instance_states(cache)
        live = [(cache.rows[n], s) for n in cache.online if (s := cache.latest(n)) is not None]

        def top(key: str) -> list[dict[str, Any]]:
            best = heapq.nlargest(5, live, key=lambda pair: pair[1][key])
            return [
                {"id": r["id"], "hostname": r["hostname"], "alias": r["alias"], **s}
                for r, s in best
            ]

        summary = {
            "nodes": {
                "total": len(cache.rows),
                **{s: statuses.get(s, 0) for s in ("online", "offline", "pending", "planned")},
            },
            "instances": {"total": sum(states.values()), **states},
            "top_cpu": top("cpu_percent"),
            "top_mem": top("mem_percent"),
        }
        if summary == self.summary:
            return None
        self.summary = summary
        return summary

    def snapshot(self) -> Any:
        return {**self.summary, "snapshot": True}


class NodesTopic(Topic):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.rows: dict[str, dict[str, Any]] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self._version = -1

    def poll(self, view: View) -> Any | None:
        cache = view.nodes()
        changed: dict[str, dict[str, Any]] = {}
        removed: list[str] = []
        if cache.version != self._version:  # rows only move when the cache rebuilt some
            for node_id, row in cache.rows.items():
                before = self.rows.get(node_id)
                if before is not row and before != row:
                    changed[node_id] = row
            removed = [n for n in self.rows if n not in cache.rows]
            self.rows, self._version = dict(cache.rows), cache.version
        # Only online nodes have samples: thousands of planned or offline rows cost nothing.
        latest = {n: s for n in cache.online if (s := cache.latest(n)) is not None}
        moved = {n: s for n, s in latest.items() if n not in changed and s != self.latest.get(n)}
        self.latest = latest
        delta: dict[str, Any] = {}
        if changed:
            delta["rows"] = [{**r, "latest": latest.get(n)} for n, r in changed.items()]
        if removed:
            delta["removed"] = removed
        if moved:
            delta["latest"] = moved
        return delta or None

    def snapshot(self) -> Any:
        rows = [{**r, "latest": self.latest.get(n)} for n, r in self.rows.items()]
        return {"snapshot": True, "rows": rows}


class InstancesTopic(Topic):
    def __init__(self, name: str, system_id: str | None = None) -> None:
        super().__init__(name)
        self.system_id = system_id
        self.rows: dict[str, dict[str, Any]] = {}

    def poll(self, view: View) -> Any | None:
        current = {
            i["id"]: i
            for i in view.instances()
            if self.system_id is None or i["system_id"] == self.system_id
        }
        changed = [r for n, r in current.items() if self.rows.get(n) != r]
        removed = [n for n in self.rows if n not in current]
        self.rows = current
        delta: dict[str, Any] = {}
        if changed:
            delta["rows"] = changed
        if removed:
            delta["removed"] = removed
        return delta or None

    def snapshot(self) -> Any:
        return {"snapshot": True, "rows": list(self.rows.values())}


class SamplesTopic(Topic):
    """Every sample of one node or one instance, as heartbeats bring them.

    The hub feeds :meth:`add` from the fleet's ``on_samples`` hook, so a heartbeat
    that carries several samples (a node pushing at a slower pace) loses none.
    While the topic exists its node is "watched": the fleet asks it for one
    heartbeat a second.
    """

    def __init__(self, name: str, node_id: str, first: dict[str, Any] | None) -> None:
        super().__init__(name)
        self.node_id = node_id
        self.samples: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self.pending: list[dict[str, Any]] = [] if first is None else [first]

    def add(self, samples: list[dict[str, Any]]) -> None:
        """Samples as the fleet keeps them: dicts in the models' unstructured form."""
        self.pending.extend(samples)

    def poll(self, view: View) -> Any | None:
        if not self.pending:
            return None
        last = self.samples[-1]["ts"] if self.samples else float("-inf")
        fresh = sorted((s for s in self.pending if s["ts"] > last), key=lambda s: s["ts"])
        self.pending = []
        if not fresh:
            return None
        self.samples.extend(fresh)
        return {"samples": fresh}

    def snapshot(self) -> Any:
        return {"snapshot": True, "samples": list(self.samples)}


class AuditTopic(Topic):
    role = Role.ADMIN

    def __init__(self, name: str, master: Master) -> None:
        super().__init__(name)
        self.master = master
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=AUDIT_RECENT)
        self._changes = -1

    def poll(self, view: View) -> Any | None:
        changes = self.master.db.changes
        if changes == self._changes:
            return None
        self._changes = changes
        last = self.recent[0]["id"] if self.recent else 0
        page = list_audit(self.master.db, limit=AUDIT_RECENT if not last else 200, offset=0)
        new = [unstructure(e) for e in page.items if e.id > last]
        if not new:
            return None
        self.recent.extendleft(reversed(new))
        return {"items": new}

    def snapshot(self) -> Any:
        return {"snapshot": True, "items": list(self.recent)}


class AlertsTopic(Topic):
    """Firing and pending counts plus alert state changes, pushed as the engine reports them.

    The engine's ``on_change`` hook feeds :meth:`add`; the hub flushes on the next loop turn,
    so one evaluation that moves many alerts becomes one frame, not one per alert.
    """

    MAX_CHANGES = 200  # more in one frame: the page reloads the active list instead

    def __init__(self, name: str, master: Master) -> None:
        super().__init__(name)
        self.master = master
        self.counts: dict[str, int] = {}
        self.pending: list[dict[str, Any]] = []

    def add(self, change: str, alert: Any) -> None:
        self.pending.append({"change": change, "alert": unstructure(alert)})

    def _counts(self) -> dict[str, int]:
        engine = self.master.alerts
        pending = sum(1 for s in engine.states.values() if s.phase == AlertPhase.PENDING)
        return {"firing": engine.firing_count(), "pending": pending}

    def poll(self, view: View) -> Any | None:
        counts = self._counts()
        changes, self.pending = self.pending, []
        if counts == self.counts and not changes:
            return None
        self.counts = counts
        delta: dict[str, Any] = dict(counts)
        if len(changes) > self.MAX_CHANGES:
            delta["reload"] = True
        elif changes:
            delta["changes"] = changes
        return delta

    def snapshot(self) -> Any:
        return {"snapshot": True, **self.counts}


# --- the hub ----------------------------------------------------------------------------------


class LiveHub:
    """Every topic with subscribers; :meth:`tick` pushes their changes.

    Example::

        hub = LiveHub(master)
        master.spawn(hub.run())
    """

    def __init__(self, master: Master, *, interval: float = INTERVAL) -> None:
        self.master = master
        self.interval = interval
        self.topics: dict[str, Topic] = {}
        self.clients: set[LiveClient] = set()
        self.node_cache = NodeCache(master)
        master.fleet.on_samples.append(self.on_samples)
        master.alerts.on_change.append(self.on_alert)
        master.accounts.on_change.append(self.recheck_user)
        self._alerts_flush: asyncio.Handle | None = None

    def connect(self, client: LiveClient) -> None:
        """Count a new socket; ConflictError when its user holds the most allowed already."""
        limit = self.master.settings.auth.max_sockets_per_user
        user_id = client.principal.user_id
        held = sum(1 for c in self.clients if c.principal.user_id == user_id)
        if held >= limit:
            raise ConflictError(
                f"{client.principal.username} already has {held} live-channel sockets open"
                " (auth.max_sockets_per_user); close a console tab or a script's socket"
            )
        self.clients.add(client)

    def recheck(self, client: LiveClient) -> None:
        """Authenticate the client's credential again: close it (4401) if it lost anything."""
        if client.reauth is None:
            return
        try:
            principal = client.reauth()
        except AuthError as exc:
            client.close(CLOSE_AUTH, exc.message[:100])
            return
        if not principal.role.allows(client.principal.role) or principal.must_change_password:
            client.close(CLOSE_AUTH, f"the role of {principal.username} changed; reconnect")
            return
        self.reauthorise(client, principal)

    def recheck_user(self, user_id: str) -> None:
        """The user's rights or credentials changed: check each of their sockets now."""
        for client in [c for c in self.clients if c.principal.user_id == user_id]:
            self.recheck(client)

    def on_alert(self, change: str, alert: Any) -> None:
        # Pushed now rather than on the next tick: a firing alert reaches the page at once.
        topic = self.topics.get("alerts")
        if not isinstance(topic, AlertsTopic) or not topic.subscribers:
            return
        topic.add(change, alert)
        if self._alerts_flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a synchronous caller): the next tick sends it
            self._alerts_flush = loop.call_soon(self._flush_alerts)

    def _flush_alerts(self) -> None:
        self._alerts_flush = None
        topic = self.topics.get("alerts")
        if isinstance(topic, AlertsTopic):
            self._flush(topic)

    def on_samples(self, node_id: str, nodes: list[Any], instances: list[Any]) -> None:
        # Samples go out as their heartbeat arrives, not on the next tick: a watched
        # node's chart is at most one push interval behind the machine.
        topic = self.topics.get(f"node:{node_id}")
        if isinstance(topic, SamplesTopic) and topic.subscribers:
            topic.add(nodes)
            self._flush(topic)
        touched: dict[str, SamplesTopic] = {}
        for sample in instances:
            name = f"instance:{sample['instance_id']}"
            topic = self.topics.get(name)
            if isinstance(topic, SamplesTopic) and topic.subscribers:
                topic.add([sample])
                touched[name] = topic
        for topic in touched.values():
            self._flush(topic)

    def _flush(self, topic: Topic) -> None:
        try:
            self._publish(topic, topic.poll(View(self)))
        except Exception:
            log.exception("live topic %s failed", topic.name)

    def _watch(self, topic: Topic, delta: int) -> None:
        """Watched nodes send a heartbeat every second (see ``Fleet.watch``)."""
        if isinstance(topic, SamplesTopic):
            self.master.spawn(self.master.fleet.watch(topic.node_id, delta))

    def _make_topic(self, name: str) -> Topic:
        kind, _, arg = name.partition(":")
        if name == "fleet":
            return FleetTopic(name, self.master)
        if name == "nodes":
            return NodesTopic(name)
        if name == "instances":
            return InstancesTopic(name)
        if name == "audit":
            return AuditTopic(name, self.master)
        if name == "alerts":
            return AlertsTopic(name, self.master)
        if kind == "command" and arg:
            topic: Topic = self.master.commands.topic(name, arg)
            return topic
        if kind == "batch" and arg:
            batch: Topic = self.master.batches.topic(name, arg)
            return batch
        if kind == "rollout" and arg:
            rollout: Topic = self.master.rollouts.topic(name, arg)
            return rollout
        if kind == "system" and arg:
            self.master.systems.get_system(arg)
            return InstancesTopic(name, system_id=arg)
        fleet = self.master.fleet
        if kind == "node" and arg:
            self.master.nodes.get(arg)
            rt = fleet.nodes.get(arg)
            text = rt.latest_text if rt is not None and fleet.is_online(arg) else None
            return SamplesTopic(name, arg, None if text is None else json.loads(text))
        if kind == "instance" and arg:
            node_id = self.master.orchestrator.get(arg).node_id
            rt = fleet.nodes.get(node_id)
            text = None if rt is None else rt.instance_texts.get(arg)
            return SamplesTopic(name, node_id, None if text is None else json.loads(text))
        raise ValidationError(
            f"unknown topic {name!r}; expected fleet, nodes, node:<id>, instances,"
            " system:<id>, instance:<id>, command:<id>, batch:<id>, rollout:<id>, alerts or"
            " audit"
        )

    def subscribe(self, client: LiveClient, name: str) -> None:
        """Add a subscription and queue its snapshot; raises for an unknown or forbidden topic."""
        if name not in client.topics and len(client.topics) >= MAX_TOPICS:
            raise ValidationError(f"at most {MAX_TOPICS} subscriptions per connection")
        topic = self.topics.get(name)
        if topic is None:
            topic = self._make_topic(name)
            self._check_role(client.principal, topic)
            topic.poll(View(self))
            self.topics[name] = topic
            self._watch(topic, 1)
        else:
            self._check_role(client.principal, topic)
            # Bring the topic's subscribers up to date, so the snapshot is their state too.
            self._publish(topic, topic.poll(View(self)))
        topic.subscribers.add(client)
        client.topics.add(name)
        self.clients.add(client)
        if not client.push(frame(name, topic.snapshot())):
            self.drop(client)

    def reauthorise(self, client: LiveClient, principal: Principal) -> None:
        """A client's credential was checked again: end subscriptions its role lost."""
        client.principal = principal
        for name in list(client.topics):
            topic = self.topics.get(name)
            if topic is None:
                continue
            try:
                self._check_role(principal, topic)
            except PermissionDenied as exc:
                self.unsubscribe(client, name)
                client.push(frame(name, error=exc))

    @staticmethod
    def _check_role(principal: Principal, topic: Topic) -> None:
        if not principal.role.allows(topic.role):
            raise PermissionDenied(f"topic {topic.name!r} needs the {topic.role.value} role")

    def unsubscribe(self, client: LiveClient, name: str) -> None:
        client.topics.discard(name)
        topic = self.topics.get(name)
        if topic is not None:
            topic.subscribers.discard(client)
            if not topic.subscribers:
                del self.topics[name]
                self._watch(topic, -1)

    def drop(self, client: LiveClient) -> None:
        """Forget a client (disconnected, too slow, or logged out)."""
        for name in list(client.topics):
            self.unsubscribe(client, name)
        self.clients.discard(client)

    def _publish(self, topic: Topic, data: Any | None) -> None:
        if data is None:
            return
        text = frame(topic.name, data)
        for client in list(topic.subscribers):
            if not client.push(text):
                self.drop(client)

    def tick(self) -> None:
        """Poll every subscribed topic once and push what changed."""
        view = View(self)
        for topic in list(self.topics.values()):
            if not topic.subscribers:
                continue
            try:
                data = topic.poll(view)
            except NotFoundError:  # its node, instance or system is gone: nothing new
                continue
            except Exception:
                log.exception("live topic %s failed", topic.name)
                continue
            self._publish(topic, data)

    async def run(self) -> None:
        """Tick forever (started by the app before serving)."""
        while True:
            await asyncio.sleep(self.interval)
            self.tick()


# --- the WebSocket ----------------------------------------------------------------------------


def _check_origin() -> None:
    origin = websocket.headers.get("Origin", "")
    host = websocket.headers.get("Host", "")
    if not origin or urlsplit(origin).netloc.lower() != host.lower():
        raise PermissionDenied(
            f"cross-origin live channel refused (Origin {origin or '(none)'!r}, Host {host!r})"
        )


def register_live_socket(app: Quart) -> LiveHub:
    """Add ``/api/v1/live`` to ``app`` and start its hub when the app starts serving."""
    master: Master = app.extensions["gdos"]
    hub = LiveHub(master)
    app.extensions["gdos_live"] = hub

    @app.before_serving
    async def start_live_hub() -> None:
        master.spawn(hub.run())

    @app.websocket("/api/v1/live")
    async def live_ws() -> Any:
        headers, cookies = websocket.headers, websocket.cookies
        try:
            principal = authenticate_websocket(master)
            if principal.kind == "node":
                raise PermissionDenied("node credentials cannot open the live channel")
            check_password_fresh(principal)
            if principal.kind == "session":
                _check_origin()
            client = LiveClient(
                principal, reauth=lambda: authenticate_headers(master.db, headers, cookies)
            )
            hub.connect(client)
        except GdosError as exc:
            return error_response(exc)  # refused before accept(): an HTTP status
        try:
            await websocket.accept()
            ws = cast(Any, websocket)._get_current_object()
            await _serve(hub, client, ws)
        finally:
            hub.drop(client)
        return None

    return hub


async def _serve(hub: LiveHub, client: LiveClient, ws: Any) -> None:
    async def send() -> None:
        while True:
            await ws.send(await client.queue.get())

    async def receive() -> None:
        while True:
            _handle(hub, client, await ws.receive())

    async def recheck() -> None:
        while not client.closing.is_set():
            await asyncio.sleep(REAUTH_INTERVAL)
            hub.recheck(client)

    tasks = [
        asyncio.ensure_future(coro)
        for coro in (send(), receive(), recheck(), client.closing.wait())
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.debug("live channel closed: %r", task.exception())
    if client.closing.is_set():
        with contextlib.suppress(Exception):
            await ws.close(client.close_code, client.close_reason)


def _handle(hub: LiveHub, client: LiveClient, text: str | bytes) -> None:
    """Apply one client frame; a bad one is answered with an error frame."""
    topic: Any = ""
    try:
        try:
            message = parse_json(text)
        except ValueError as exc:
            raise ValidationError(f"frames must be JSON objects: {exc}") from None
        if not isinstance(message, dict):
            raise ValidationError("frames must be JSON objects")
        op, topic = message.get("op"), message.get("topic")
        if not isinstance(topic, str) or not topic:
            raise ValidationError("'topic' must be a non-empty string")
        if op == "subscribe":
            hub.subscribe(client, topic)
        elif op == "unsubscribe":
            hub.unsubscribe(client, topic)
        else:
            raise ValidationError(f"unknown op {op!r}; expected subscribe or unsubscribe")
    except GdosError as exc:
        if not client.push(frame(topic if isinstance(topic, str) else "", error=exc)):
            hub.drop(client)
