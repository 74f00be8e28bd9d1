"""This master among several: node leases and the elected master (docs/scale-out.md).

With ``-bus`` several masters share one PostgreSQL and one NATS. Two kinds of lease
rows in the database settle who does what:

* **Node leases** (``node_leases``): the master a worker is connected to owns the node. It
  takes the lease when the worker's hello is accepted (the newest connection wins: a
  worker is connected to one master at a time, so a connection elsewhere means the old
  master is gone or the worker moved) and renews it while the channel is open; when the
  channel closes it stops renewing, and the lease runs out after the node's offline
  grace. Every master reads the fresh leases others hold (:attr:`Cluster.remote`) and
  shows those nodes online, so a failover shorter than the grace never shows a node
  offline.
* **Master leases** (``master_leases``, row ``master:<id>``): each running master renews
  its own, so the others know it is alive: a batch job or rollout whose master's lease
  ran out is taken up by the leader (closed, or resumed).
* **The leader lease** (``master_leases``, row ``leader``): the elected master runs the work that
  must happen once (alert evaluation and notifications, scheduled backups, recovery of
  batch jobs and rollouts). It renews the lease every second; another master takes it
  once it expired, so a dead leader is replaced within ``cluster.leader_ttl`` + 1
  seconds (16 s by default). A leader whose renewal fails steps down
  after two thirds of the lease, before anyone else may take it.

Expiry times are wall-clock Unix times written by the masters themselves: their clocks
must agree (NTP) to well under the offline grace.

With one master and no bus (the default) nothing here touches the database: the master
owns every node it holds and is the leader from the start.

Lease writes do not move :attr:`Database.changes <gdos_master.db.Database.changes>` (no
cache reads them), so renewing them never empties the master's caches.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable

from gdos_master.db import Database

__all__ = ["Cluster", "new_master_id"]

log = logging.getLogger("gdos.master.cluster")

LEADER = "leader"


def new_master_id() -> str:
    """A name for this master process: host name and a random suffix (``web1-3fa2c9``)."""
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    return f"{(host or 'master')[:48].strip('-.') or 'master'}-{uuid.uuid4().hex[:6]}"


class Cluster:
    """Leases of one master (see the module docstring).

    Parameters:
        db: the shared database.
        master_id: this master's name (:func:`new_master_id` unless configured).
        clustered: False for the default single master: no lease is ever written.
        node_ttl: seconds a node lease lasts without renewal (push interval + grace).
        leader_ttl: seconds the leader lease lasts without renewal.
    """

    def __init__(
        self,
        db: Database,
        *,
        master_id: str,
        clustered: bool,
        node_ttl: float,
        leader_ttl: float = 15.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.master_id = master_id
        self.clustered = clustered
        self.node_ttl = node_ttl
        self.leader_ttl = leader_ttl
        self._clock = clock
        self._monotonic = monotonic
        #: Nodes another master holds a fresh lease on (read by :meth:`refresh_remote`).
        self.remote: dict[str, str] = {}
        #: Whether this master runs the work that must happen once.
        self.leader = not clustered
        self.term = 0
        self._leader_until = -1.0  # monotonic time this master's leadership is sure until
        #: Called with True when this master becomes the leader, False when it stops.
        self.on_leader: list[Callable[[bool], Awaitable[None]]] = []
        #: Whether the last lease statement reached the database.
        self.db_ok = True
        #: Wall-clock time the database was found unreachable, while it is (for /healthz).
        self.db_lost_since: float | None = None
        #: Nodes connected here whose lease could not be written (the database was away).
        self.untaken: set[str] = set()
        #: After an outage of the database: (when it was lost, until when) leases that ran
        #: out meanwhile are still believed (see :meth:`refresh_remote`).
        self._after_outage: tuple[float, float] | None = None
        #: Seconds between two rounds of :meth:`tick`.
        self.period = min(leader_ttl / 3, node_ttl / 3, 1.0)

    # --- node leases ----------------------------------------------------------------------------

    def take_node(self, node_id: str) -> None:
        """The node's worker connected here: this master owns it now (the newest wins)."""
        if not self.clustered:
            return
        self.remote.pop(node_id, None)
        try:
            self.db.write_unseen(
                "INSERT INTO node_leases(node_id, master_id, expires_at, connected)"
                " VALUES(?, ?, ?, 1) ON CONFLICT(node_id) DO UPDATE SET"
                " master_id = excluded.master_id, expires_at = excluded.expires_at,"
                " connected = 1",
                (node_id, self.master_id, self._clock() + self.node_ttl),
            )
        except Exception as exc:  # taken by the next round that reaches the database
            log.error("could not take the lease of node %s: %s", node_id, exc)
            self.untaken.add(node_id)
        else:
            self.untaken.discard(node_id)

    def release_node(self, node_id: str) -> None:
        """The node's channel here closed: the lease runs out after the grace, unrenewed."""
        if not self.clustered:
            return
        self.untaken.discard(node_id)
        try:
            self.db.write_unseen(
                "UPDATE node_leases SET connected = 0, expires_at = ?"
                " WHERE node_id = ? AND master_id = ?",
                (self._clock() + self.node_ttl, node_id, self.master_id),
            )
        except Exception as exc:  # the lease runs out unrenewed anyway
            log.error("could not release the lease of node %s: %s", node_id, exc)

    def renew_nodes(self) -> int:
        """Renew every lease this master holds on a connected node; how many."""
        if not self.clustered:
            return 0
        return self.db.write_unseen(
            "UPDATE node_leases SET expires_at = ? WHERE master_id = ? AND connected = 1",
            (self._clock() + self.node_ttl, self.master_id),
        )

    def refresh_remote(self) -> dict[str, str]:
        """Read the fresh leases other masters hold: ``{node id: master id}``.

        For one ``node_ttl`` after an outage of the database, a lease that ran out while the
        database was away counts as fresh: its master could not renew it either, and renews
        it in its own first round after the outage, which may come up to a round after
        ours. Without this, the other masters' nodes were shown offline here for up to a
        second after an outage longer than the grace.
        """
        if not self.clustered:
            return self.remote
        now = self._clock()
        fresh_after = now
        if self._after_outage is not None:
            lost_at, until = self._after_outage
            if now < until:
                fresh_after = min(now, lost_at)
            else:
                self._after_outage = None
        rows = self.db.all(
            "SELECT node_id, master_id FROM node_leases WHERE master_id <> ? AND expires_at > ?",
            (self.master_id, fresh_after),
        )
        self.remote = {r["node_id"]: r["master_id"] for r in rows}
        return self.remote

    def owner(self, node_id: str) -> str | None:
        """The master holding a fresh lease on ``node_id`` (read now), or None."""
        if not self.clustered:
            return None
        row = self.db.one(
            "SELECT master_id FROM node_leases WHERE node_id = ? AND expires_at > ?",
            (node_id, self._clock()),
        )
        return None if row is None else str(row["master_id"])

    def forget_nodes(self, node_ids: Iterable[str]) -> None:
        """Drop the leases of deleted nodes."""
        if self.clustered:
            for node_id in node_ids:
                self.db.write_unseen("DELETE FROM node_leases WHERE node_id = ?", (node_id,))

    # --- masters ------------------------------------------------------------------------------

    def renew_self(self) -> None:
        """Renew this master's own lease (``master:<id>``): it shows the others it is alive."""
        if self.clustered:
            self.db.write_unseen(
                "INSERT INTO master_leases(name, master_id, expires_at, term) VALUES(?, ?, ?, 1)"
                " ON CONFLICT(name) DO UPDATE SET expires_at = excluded.expires_at",
                (f"master:{self.master_id}", self.master_id, self._clock() + self.leader_ttl),
            )

    def live_masters(self) -> set[str]:
        """The masters whose own lease is fresh (this one always; only it without a bus)."""
        if not self.clustered:
            return {self.master_id}
        rows = self.db.all(
            "SELECT master_id FROM master_leases WHERE name LIKE 'master:%' AND expires_at > ?",
            (self._clock(),),
        )
        return {str(r["master_id"]) for r in rows} | {self.master_id}

    # --- the leader -----------------------------------------------------------------------------

    def try_lead(self) -> bool:
        """Take or renew the leader lease; True while this master holds it."""
        if not self.clustered:
            return True
        now = self._clock()
        started = self._monotonic()
        self.db.write_unseen(
            "INSERT INTO master_leases(name, master_id, expires_at, term) VALUES(?, ?, ?, 1)"
            " ON CONFLICT(name) DO UPDATE SET"
            " term = CASE WHEN master_leases.master_id = excluded.master_id"
            " THEN master_leases.term ELSE master_leases.term + 1 END,"
            " master_id = excluded.master_id, expires_at = excluded.expires_at"
            " WHERE master_leases.master_id = excluded.master_id OR master_leases.expires_at < ?",
            (LEADER, self.master_id, now + self.leader_ttl, now),
        )
        row = self.db.one("SELECT master_id, term FROM master_leases WHERE name = ?", (LEADER,))
        held = row is not None and row["master_id"] == self.master_id
        if held:
            assert row is not None
            self.term = int(row["term"])
            # Sure until two thirds of the lease: others wait for all of it.
            self._leader_until = started + self.leader_ttl * 2 / 3
        return held

    def leader_id(self) -> str | None:
        """The master holding a fresh leader lease (this one with one master), or None."""
        if not self.clustered:
            return self.master_id
        row = self.db.one(
            "SELECT master_id FROM master_leases WHERE name = ? AND expires_at > ?",
            (LEADER, self._clock()),
        )
        return None if row is None else str(row["master_id"])

    def resign(self) -> None:
        """Give the leader lease up at once (a clean shutdown): another takes it now."""
        if self.clustered and self.leader:
            self.leader = False
            self.db.write_unseen(
                "UPDATE master_leases SET expires_at = 0 WHERE name = ? AND master_id = ?",
                (LEADER, self.master_id),
            )
        if self.clustered:
            self.db.write_unseen(
                "DELETE FROM master_leases WHERE name = ?", (f"master:{self.master_id}",)
            )

    async def _set_leader(self, leader: bool) -> None:
        if leader == self.leader:
            return
        self.leader = leader
        if leader:
            log.warning("this master (%s) is the leader now (term %d)", self.master_id, self.term)
        else:
            log.warning("this master (%s) is no longer the leader", self.master_id)
        for callback in self.on_leader:
            try:
                await callback(leader)
            except Exception:
                log.exception("leader change handler failed")

    def note_db_lost(self, exc: BaseException) -> None:
        """A request met the database away: report the outage now, not at the next round.

        Without this, a refusal (503, ``lost: database``) and ``/healthz`` could disagree
        for up to a round, and the console's banner would come and go. The next round that
        reaches the database ends it as usual. A single master keeps no such state.
        """
        if self.clustered and self.db_ok:
            log.error("lease renewal failed (database unreachable?): %s", exc)
            self.db_lost_since = self._clock()
            self.db_ok = False

    async def tick(self) -> None:
        """One round: renew node leases, read others', take or renew the leader lease."""
        try:
            self.renew_self()
            if not self.db_ok and self.db_lost_since is not None:  # back after an outage
                self._after_outage = (self.db_lost_since, self._clock() + self.node_ttl)
            self.renew_nodes()
            self.refresh_remote()
            held = self.try_lead()
            self.db_ok = True
            self.db_lost_since = None
        except Exception as exc:  # the database is away: keep what we know, step down in time
            if self.db_ok:
                log.error("lease renewal failed (database unreachable?): %s", exc)
                self.db_lost_since = self._clock()
            self.db_ok = False
            held = self.leader and self._monotonic() < self._leader_until
        await self._set_leader(held)
