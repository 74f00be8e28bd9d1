"""What clustered masters tell each other over the bus (docs/scale-out.md).

Started only with ``-bus``; a single master has none of this.

=========================== ===========================================================
``gdos.changed``            a master wrote to the database: the others move their
                            :attr:`Database.changes <gdos_master.db.Database.changes>`,
                            so their caches (credentials, node list, live views,
                            stored batch jobs and rollouts) read again, and read the
                            alert rules and silences again (the leader evaluates what
                            another master changed) and, unless they lead, the alert
                            states. Sent at most every :data:`CHANGE_EVERY` seconds.
``gdos.watching``           the nodes a master's live subscribers watch (``node:<id>``,
                            ``instance:<id>``), at once and every :data:`WATCH_EVERY`
                            seconds. The owner of such a node asks it for a sample a
                            second; a watch not repeated within :data:`WATCH_TTL` seconds
                            ends.
``gdos.samples``            every sample of the nodes connected to a master (checked
                            there), the heartbeats of :data:`SAMPLES_EVERY` seconds in
                            one message (at most :data:`SAMPLES_PER_MESSAGE` samples):
                            the others keep them (:meth:`Fleet.mirror
                            <gdos_master.fleet.Fleet.mirror>`), so charts, latest values,
                            live topics and the leader's alert rules see every node on
                            every master.
``gdos.alerts``             the leader's alert changes (firing, resolved ...): the others
                            read the alert states again and push the change to their
                            ``alerts`` subscribers.
``gdos.command_output``     a fleet command's output piece, from the node's owner to
                            the master running the command.
``gdos.account``            a user's rights or credentials changed on a master (role,
                            disabled, password, a revoked token, a logout): the others
                            read credentials again at once and check that user's open
                            live channels and terminals now, not at their periodic
                            re-check.
=========================== ===========================================================
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from gdos_master.live import SamplesTopic
from gdos_sdk.codec import unstructure
from gdos_sdk.protocol import CommandOutput, decode, encode

if TYPE_CHECKING:
    from gdos_master.app import Master
    from gdos_master.live import LiveHub

__all__ = ["Mesh"]

log = logging.getLogger("gdos.master.mesh")

CHANGE_EVERY = 0.1  # seconds: how late another master may learn of a write
WATCH_EVERY = 5.0
WATCH_TTL = 15.0
#: seconds of heartbeats sent in one ``gdos.samples`` message: a message per heartbeat
#: cost each master and the NATS server more than the samples in it (docs/benchmarks.md)
SAMPLES_EVERY = CHANGE_EVERY
SAMPLES_PER_MESSAGE = 1000  # about 450 KB: under NATS's default 1 MB payload limit


class Mesh:
    """This master's side of the messages in the module docstring."""

    def __init__(self, master: Master, hub: LiveHub) -> None:
        self.master = master
        self.hub = hub
        self.bus = master.bus
        self._foreign = 0  # moves of db.changes made for other masters' writes
        self._told = master.db.changes
        # node id -> {master id: time its watch ends}: masters watching nodes connected here
        self.watchers: dict[str, dict[str, float]] = {}
        self._sped_up: set[str] = set()  # nodes this mesh asked for a sample a second
        self._last_watch = 0.0
        self._told_watching: list[str] = []
        self._alerts_stale = False
        self._outbox: list[dict[str, Any]] = []  # heartbeats of this tick, to mirror

    async def start(self) -> None:
        bus = self.bus
        await bus.subscribe("gdos.changed", self._on_changed)
        await bus.subscribe("gdos.watching", self._on_watching)
        await bus.subscribe("gdos.samples", self._on_samples)
        await bus.subscribe("gdos.alerts", self._on_alert)
        await bus.subscribe("gdos.command_output", self._on_output)
        await bus.subscribe("gdos.account", self._on_account)
        self.master.fleet.on_samples.append(self._samples_here)
        self.master.alerts.on_change.append(self._alert_here)
        self.master.commands.elsewhere = self._output_here
        self.master.accounts.on_change.append(self._account_here)

    # --- the write signal -------------------------------------------------------------------

    async def _on_changed(self, subject: str, data: dict[str, Any]) -> None:
        self._foreign += 1
        self.master.db.changed()
        self._alerts_stale = True

    def refresh_alerts(self) -> None:
        """Read alert rules and silences again (and the states, unless this master leads)."""
        self._alerts_stale = False
        engine = self.master.alerts
        engine.reload()
        if not self.master.cluster.leader:
            engine.states = engine.store.states()

    async def tell_changes(self) -> None:
        """Publish ``gdos.changed`` if this master wrote since the last time."""
        own = self.master.db.changes - self._foreign
        if own != self._told and self.bus.connected:
            await self.bus.publish("gdos.changed", {"from": self.bus.master_id})
            self._told = own

    # --- watched nodes ----------------------------------------------------------------------

    def watched(self) -> list[str]:
        """The nodes this master's live subscribers watch and another master holds."""
        remote = self.master.fleet.remote
        nodes = {
            t.node_id
            for t in self.hub.topics.values()
            if isinstance(t, SamplesTopic) and t.subscribers and t.node_id in remote
        }
        return sorted(nodes)

    async def tell_watching(self, nodes: list[str]) -> None:
        await self.bus.publish("gdos.watching", {"from": self.bus.master_id, "nodes": nodes})
        self._told_watching = nodes

    async def _on_watching(self, subject: str, data: dict[str, Any]) -> None:
        who, until = str(data.get("from", "")), time.monotonic() + WATCH_TTL
        wanted = set(data.get("nodes") or [])
        for node_id in wanted:
            self.watchers.setdefault(node_id, {})[who] = until
        for node_id, masters in self.watchers.items():
            if node_id not in wanted:
                masters.pop(who, None)
        await self._apply_watches()

    async def _apply_watches(self) -> None:
        now = time.monotonic()
        for node_id in list(self.watchers):
            masters = {m: t for m, t in self.watchers[node_id].items() if t > now}
            if masters:
                self.watchers[node_id] = masters
            else:
                del self.watchers[node_id]
        fleet = self.master.fleet
        for node_id in set(self.watchers) - self._sped_up:
            self._sped_up.add(node_id)
            await fleet.watch(node_id, 1)
        for node_id in self._sped_up - set(self.watchers):
            self._sped_up.discard(node_id)
            await fleet.watch(node_id, -1)

    def _samples_here(self, node_id: str, nodes: list[Any], instances: list[Any]) -> None:
        if self.master.fleet.is_connected(node_id):  # not the ones mirrored from elsewhere
            self._outbox.append({"node_id": node_id, "nodes": nodes, "instances": instances})

    async def send_samples(self) -> int:
        """Publish the heartbeats gathered since the last call; how many messages it took."""
        batch, self._outbox = self._outbox, []
        messages, part, size = 0, list[dict[str, Any]](), 0
        for entry in batch:
            part.append(entry)
            size += len(entry["nodes"]) + len(entry["instances"])
            if size >= SAMPLES_PER_MESSAGE or entry is batch[-1]:
                data = {"from": self.bus.master_id, "batch": part}
                # checked samples: no NaN or infinity, so the fast encoder may write them
                await self._publish("gdos.samples", data, finite=True)
                messages, part, size = messages + 1, [], 0
        return messages

    async def _on_samples(self, subject: str, data: dict[str, Any]) -> None:
        fleet = self.master.fleet
        for entry in data.get("batch") or []:
            node_id = str(entry.get("node_id", ""))
            if not fleet.is_connected(node_id):  # a stale message after a move
                nodes = list(entry.get("nodes") or [])
                fleet.mirror(node_id, nodes, list(entry.get("instances") or []))

    # --- alerts and command output -----------------------------------------------------------

    def _alert_here(self, change: str, alert: Any) -> None:
        if self.master.cluster.leader:
            data = {"change": change, "alert": unstructure(alert)}
            self.master.spawn(self._publish("gdos.alerts", data))

    async def _on_alert(self, subject: str, data: dict[str, Any]) -> None:
        engine = self.master.alerts
        if not self.master.cluster.leader:
            engine.states = engine.store.states()  # the counts the alerts topic shows
        self.hub.on_alert(str(data.get("change", "")), data.get("alert"))

    def _output_here(self, node_id: str, message: CommandOutput) -> None:
        data = {"node_id": node_id, "message": encode(message)}
        self.master.spawn(self._publish("gdos.command_output", data))

    async def _on_output(self, subject: str, data: dict[str, Any]) -> None:
        message = decode(str(data.get("message", "")))
        if isinstance(message, CommandOutput):
            self.master.commands.output(str(data.get("node_id", "")), message, relayed=True)

    def _account_here(self, user_id: str) -> None:
        self.master.spawn(self._publish("gdos.account", {"user_id": user_id}))

    async def _on_account(self, subject: str, data: dict[str, Any]) -> None:
        user_id = str(data.get("user_id", ""))
        # The write is in the database already; its gdos.changed may come a moment later,
        # so the credential cache is made stale now, before the user's sockets are checked.
        self._foreign += 1
        self.master.db.changed()
        for listener in self.master.accounts.on_change:
            if listener == self._account_here:  # told by another master: not again
                continue
            try:
                listener(user_id)
            except Exception:
                log.exception("rights-change listener failed for user %s", user_id)

    async def _publish(self, subject: str, data: dict[str, Any], *, finite: bool = False) -> None:
        try:
            await self.bus.publish(subject, data, finite=finite)
        except Exception as exc:  # the bus is away: live views elsewhere miss this one
            log.debug("bus publish to %s failed: %s", subject, exc)

    async def run(self) -> None:
        """Send the write signal and the watch list; end watches nobody repeated."""
        while True:
            await asyncio.sleep(CHANGE_EVERY)
            try:
                await self.send_samples()
                await self.tell_changes()
                if self._alerts_stale:
                    self.refresh_alerts()
                watched = self.watched()
                due = time.monotonic() - self._last_watch >= WATCH_EVERY
                if due or watched != self._told_watching:  # a new watch starts at once
                    self._last_watch = time.monotonic()
                    await self.tell_watching(watched)
                    await self._apply_watches()
            except Exception as exc:
                log.debug("bus round failed: %s", exc)
