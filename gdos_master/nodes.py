"""Nodes: registration by join token, planned nodes, approval, rename, delete.

A node's durable facts (hostname, fingerprint, credential hash, alias) live
in SQLite and change rarely; its liveness lives in :class:`Fleet`. Joining
writes once; heartbeats write nothing; ``last_seen`` is flushed periodically
and when a channel closes.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime

from gdos_master.auth import NODE_PREFIX
from gdos_master.db import Database, Row
from gdos_master.fleet import Fleet
from gdos_master.security import hash_secret, new_secret
from gdos_sdk.codec import converter, unstructure
from gdos_sdk.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ValidationError,
)
from gdos_sdk.models import Fingerprint, Node, NodePatch, NodeStatus, PlannedNodeCreate
from gdos_sdk.protocol import Hello

__all__ = ["CLAIM_PREFIX", "Nodes"]

#: Prefix of a planned node's one-time claim token.
CLAIM_PREFIX = "gdosp_"

_NODE_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")

# Every node with its instance count, in one statement (portable SQL).
_LIST = (
    "SELECT n.*, COALESCE(c.n, 0) AS instance_count FROM nodes n"
    " LEFT JOIN (SELECT node_id, COUNT(*) AS n FROM instances GROUP BY node_id) c"
    " ON c.node_id = n.id ORDER BY n.hostname, n.id"
)


def _fixed_status(row: Row) -> NodeStatus | None:
    """A node's status when its row alone tells it (planned, pending); None when the fleet
    decides (online or offline)."""
    if row["planned"]:
        return NodeStatus.PLANNED
    if not row["approved"]:
        return NodeStatus.PENDING
    return None


def _matches(row: Row, needle: str) -> bool:
    """Whether ``needle`` (lower case) is in the node's hostname, alias, id or an address."""
    return (
        needle in row["hostname"].lower()
        or needle in row["alias"].lower()
        or needle in row["id"]
        or any(needle in a for a in json.loads(row["addresses"]))
    )


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class Nodes:
    """Node records joined with live state from the fleet."""

    def __init__(
        self, db: Database, fleet: Fleet, *, require_approval: bool, max_pending: int = 1000
    ) -> None:
        self.db = db
        self.fleet = fleet
        self.require_approval = require_approval
        self.max_pending = max_pending
        self._fingerprints: dict[str, tuple[str, Fingerprint]] = {}
        # node id -> (the row, status and last-seen time it was rendered from, its latest
        # sample's text, its JSON)
        self._rendered: dict[str, tuple[Row, NodeStatus, float, str | None, str]] = {}
        # The listing's rows (node id, row, status known without the fleet) and the
        # database change counter they were read at.
        self._rows: list[tuple[str, Row, NodeStatus | None]] = []
        self._rows_at = -1

    def _status(self, row: Row) -> NodeStatus:
        fixed = _fixed_status(row)
        if fixed is not None:
            return fixed
        return NodeStatus.ONLINE if self.fleet.is_online(row["id"]) else NodeStatus.OFFLINE

    def _model(self, row: Row, instance_count: int = 0, *, claim_token: str | None = None) -> Node:
        rt = self.fleet.nodes.get(row["id"])
        last_seen = row["last_seen"]
        if rt is not None and rt.last_seen:
            last_seen = max(last_seen or 0.0, rt.last_seen)
        fingerprint = self._fingerprint(row["id"], row["fingerprint"])
        status = self._status(row)
        return Node(
            id=row["id"],
            hostname=row["hostname"],
            alias=row["alias"],
            status=status,
            addresses=json.loads(row["addresses"]),
            labels=json.loads(row["labels"]),
            fingerprint=fingerprint,
            created_at=_ts(row["created_at"]),
            last_seen=_ts(last_seen),
            agent_version=row["agent_version"],
            approved=bool(row["approved"]),
            latest=rt.latest if rt is not None and status == NodeStatus.ONLINE else None,
            instance_count=instance_count,
            claim_token=claim_token,
            claims=row["claims"],
        )

    def _fingerprint(self, node_id: str, raw: str | None) -> Fingerprint | None:
        """Parsed fingerprint, cached by its JSON text (listing 5,000 nodes stays cheap)."""
        if not raw:
            return None
        cached = self._fingerprints.get(node_id)
        if cached is not None and cached[0] == raw:
            return cached[1]
        parsed = converter.structure(json.loads(raw), Fingerprint)
        self._fingerprints[node_id] = (raw, parsed)
        return parsed

    def list_nodes(self, *, status: str | None = None, search: str | None = None) -> list[Node]:
        return [
            self._model(row, row["instance_count"])
            for row in self._listed(self.db.all(_LIST), status, search)
        ]

    def _listed(self, rows: list[Row], status: str | None, search: str | None) -> list[Row]:
        """The rows whose node is in ``status`` and whose hostname, alias, id or an address
        contains ``search`` (case-insensitive)."""
        if status:
            wanted = NodeStatus(status)
            rows = [r for r in rows if self._status(r) == wanted]
        if search:
            needle = search.lower()
            rows = [r for r in rows if _matches(r, needle)]
        return rows

    def list_json(self, *, status: str | None = None, search: str | None = None) -> str:
        """:meth:`list_nodes` as the API's JSON text, each row rendered once per change.

        ``GET /nodes`` is what consoles and scripts poll. The rows (nodes and instance
        counts, one statement) are read again only when the master has written anything
        since (the database's write counter :attr:`~gdos_master.db.Database.changes`, as
        for :class:`~gdos_master.auth.CredentialCache`), and a row is rendered again only when
        it was read again or its status, last-seen time or latest sample changed;
        otherwise its JSON from last time is used. A node without a live channel (planned,
        never connected, gone) costs one lookup in the fleet per request.
        """
        version = self.db.changes
        if version != self._rows_at:
            self._rows = [(r["id"], r, _fixed_status(r)) for r in self.db.all(_LIST)]
            self._rows_at = version
        listed = self._rows
        if search:
            needle = search.lower()
            listed = [entry for entry in listed if _matches(entry[1], needle)]
        wanted = NodeStatus(status) if status else None
        fleet = self.fleet
        runtimes = fleet.nodes
        cache = self._rendered
        parts: list[str] = []
        for node_id, row, fixed in listed:
            rt = runtimes.get(node_id)
            latest = None
            seen = 0.0
            if rt is None:  # online only if another master holds it (several masters)
                remote = node_id in fleet.remote
                node_status = fixed or (NodeStatus.ONLINE if remote else NodeStatus.OFFLINE)
            else:
                seen = rt.last_seen
                node_status = fixed or (
                    NodeStatus.ONLINE if fleet.is_online(node_id) else NodeStatus.OFFLINE
                )
                if node_status is NodeStatus.ONLINE:
                    latest = rt.latest_text
            if wanted is not None and node_status is not wanted:
                continue
            found = cache.get(node_id)
            if (
                found is None
                or found[0] is not row
                or found[1] is not node_status
                or found[2] != seen
                or found[3] is not latest
            ):
                model = self._model(row, row["instance_count"])
                text = json.dumps(unstructure(model), separators=(",", ":"), ensure_ascii=False)
                found = cache[node_id] = (row, node_status, seen, latest, text)
            parts.append(found[4])
        if len(cache) > len(self._rows):  # deleted nodes
            current = {entry[0] for entry in self._rows}
            for node_id in [n for n in cache if n not in current]:
                del cache[node_id]
        return "[" + ",".join(parts) + "]"

    def forget_cached(self) -> None:
        """Drop what was read or rendered from the database (after a restore, which copies
        pages rather than running statements)."""
        self._fingerprints.clear()
        self._rendered.clear()
        self._rows, self._rows_at = [], -1

    def row(self, node_id: str) -> Row:
        row = self.db.one("SELECT * FROM nodes WHERE id = ?", (node_id,))
        if row is None:
            raise NotFoundError(f"no node with id {node_id!r}")
        return row

    def get(self, node_id: str, *, claim_token: str | None = None) -> Node:
        count = int(self.db.scalar("SELECT COUNT(*) FROM instances WHERE node_id = ?", (node_id,)))
        return self._model(self.row(node_id), count, claim_token=claim_token)

    def patch(self, node_id: str, body: NodePatch) -> Node:
        self.row(node_id)
        with self.db.transaction():
            if body.alias is not None:
                self.db.execute("UPDATE nodes SET alias = ? WHERE id = ?", (body.alias, node_id))
            if body.labels is not None:
                self.db.execute(
                    "UPDATE nodes SET labels = ? WHERE id = ?", (json.dumps(body.labels), node_id)
                )
        return self.get(node_id)

    def plan(self, body: PlannedNodeCreate) -> Node:
        """Register a node before its worker exists; the answer carries its claim token.

        The worker claims the node with that token (``connect.claim_token``). A worker
        that only has the join token and reports the same hostname or address becomes a
        pending node instead, which takes this one over when an admin approves it.
        """
        existing = self.db.one("SELECT id FROM nodes WHERE hostname = ?", (body.hostname,))
        if existing is not None:
            raise ConflictError(f"a node with hostname {body.hostname!r} already exists")
        node_id = str(uuid.uuid4())
        token = new_secret(CLAIM_PREFIX)
        self.db.execute(
            "INSERT INTO nodes(id, hostname, alias, addresses, labels, planned, approved,"
            " created_at, claim_hash) VALUES(?,?,?,?,?,1,1,?,?)",
            (
                node_id,
                body.hostname,
                body.alias,
                json.dumps(body.addresses),
                json.dumps(body.labels),
                time.time(),
                hash_secret(token),
            ),
        )
        return self.get(node_id, claim_token=token)

    def new_claim_token(self, node_id: str) -> Node:
        """Issue a new claim token for a planned node (the old one stops working)."""
        row = self.row(node_id)
        if not row["planned"]:
            raise ConflictError("only a planned node has a claim token; this one has joined")
        token = new_secret(CLAIM_PREFIX)
        self.db.execute(
            "UPDATE nodes SET claim_hash = ? WHERE id = ?", (hash_secret(token), node_id)
        )
        return self.get(node_id, claim_token=token)

    def claimed_by(self, token: str) -> str:
        """The planned node a claim token names, or :class:`AuthError`."""
        # Spent once the worker confirmed its credential (confirm): until then the same
        # token claims the node again, as the worker's welcome may have been lost.
        row = self.db.one(
            "SELECT id FROM nodes WHERE claim_hash = ? AND (planned = 1 OR confirmed = 0)",
            (hash_secret(token),),
        )
        if row is None:
            raise AuthError("unknown or already used claim token")
        return str(row["id"])

    async def approve(self, node_id: str) -> Node:
        """Approve a pending node; one that matched a planned node takes that node over.

        Taking over moves the planned node's instances (and its alias and labels, where
        the new node has none) to this node and deletes the planned record.
        """
        row = self.row(node_id)
        if row["planned"]:
            raise ConflictError("a planned node has no worker yet; nothing to approve")
        planned = None
        if row["claims"]:
            planned = self.db.one(
                "SELECT * FROM nodes WHERE id = ? AND planned = 1", (row["claims"],)
            )
        with self.db.transaction():
            self.db.execute("UPDATE nodes SET approved = 1, claims = NULL WHERE id = ?", (node_id,))
            if planned is not None:
                self.db.execute(
                    "UPDATE instances SET node_id = ? WHERE node_id = ?", (node_id, planned["id"])
                )
                self.db.execute(
                    "UPDATE nodes SET alias = CASE WHEN alias = '' THEN ? ELSE alias END,"
                    " labels = CASE WHEN labels = '{}' THEN ? ELSE labels END WHERE id = ?",
                    (planned["alias"], planned["labels"], node_id),
                )
                self.db.execute("DELETE FROM nodes WHERE id = ?", (planned["id"],))
        if planned is not None:
            await self.fleet.forget(planned["id"])
        rt = self.fleet.nodes.get(node_id)
        if rt is not None:
            rt.approved = True
        return self.get(node_id)

    async def delete(self, node_id: str, *, force: bool) -> int:
        """Delete a node (revoking its credential); instances only with ``force``."""
        self.row(node_id)
        count = int(self.db.scalar("SELECT COUNT(*) FROM instances WHERE node_id = ?", (node_id,)))
        if count and not force:
            raise ConflictError(
                f"node has {count} instance(s); destroy them first or pass force=true",
                details={"instances": count},
            )
        dropped = [
            r["id"] for r in self.db.all("SELECT id FROM instances WHERE node_id = ?", (node_id,))
        ]
        with self.db.transaction():
            self.db.execute("DELETE FROM instances WHERE node_id = ?", (node_id,))
            self.db.execute("DELETE FROM nodes WHERE id = ?", (node_id,))
        for instance_id in dropped:
            self.fleet.forget_instance(instance_id)
        await self.fleet.forget(node_id)
        return count

    # --- the agent side -------------------------------------------------------------------

    def join(
        self, hello: Hello, *, via_join_token: bool, node_id: str, claim: str = ""
    ) -> tuple[str, str | None]:
        """Record a worker's hello; return (node id to use, new credential or None).

        * ``claim`` (the planned node a valid claim token named): the worker takes that
          node, its id and its queued instances, approved (an admin planned it);
        * the join token: a brand-new node. One whose hostname or address matches a
          planned node waits for approval, whatever ``require_approval`` says, and
          takes that node over when approved (:meth:`approve`): a self-reported
          hostname never claims a node by itself.

        A join stays open until the worker confirms it (:meth:`confirm`, on its first frame
        after the welcome or its first connection with the credential). Until then the same
        worker may join again, with the join token or the claim token it used, and gets a
        new credential: a welcome lost on the way (the worker gave up waiting while the
        master was slow) must not lock the worker out. A join-token rejoin is refused once
        instances were placed on the node (they are only handed to the credential holder).
        """
        if not _NODE_ID.match(hello.node_id):
            raise ValidationError(f"invalid node id {hello.node_id!r}")
        fingerprint = json.dumps(unstructure(hello.fingerprint))
        now = time.time()
        credential: str | None = None
        if claim:
            credential = new_secret(NODE_PREFIX)
            self.db.execute(
                "UPDATE nodes SET hostname = ?, addresses = ?, fingerprint = ?,"
                " credential_hash = ?, planned = 0, approved = 1, agent_version = ?,"
                " last_seen = ?, confirmed = 0 WHERE id = ? AND (planned = 1 OR confirmed = 0)",
                (
                    hello.hostname,
                    json.dumps(hello.addresses),
                    fingerprint,
                    hash_secret(credential),
                    hello.agent_version,
                    now,
                    claim,
                ),
            )
            return claim, credential
        if via_join_token:
            existing = self.db.one("SELECT * FROM nodes WHERE id = ?", (hello.node_id,))
            if existing is not None and existing["planned"]:
                raise AuthError(
                    f"node {hello.node_id} is a planned node: a worker takes it with its claim"
                    " token (connect.claim_token), not with the join token"
                )
            if existing is not None:
                return self._rejoin(hello, existing, fingerprint, now)
            planned = self._planned_match(hello)
            credential = new_secret(NODE_PREFIX)
            approved = 0 if self.require_approval or planned is not None else 1
            if not approved:
                self._check_pending_room()
            node_id = hello.node_id
            self.db.execute(
                "INSERT INTO nodes(id, hostname, addresses, fingerprint, credential_hash,"
                " approved, agent_version, created_at, last_seen, claims, confirmed)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,0)",
                (
                    node_id,
                    hello.hostname,
                    json.dumps(hello.addresses),
                    fingerprint,
                    hash_secret(credential),
                    approved,
                    hello.agent_version,
                    now,
                    now,
                    None if planned is None else planned["id"],
                ),
            )
            return node_id, credential
        if hello.node_id != node_id:
            raise AuthError("node credential does not belong to the node id in hello")
        # The worker holds its credential: its join is confirmed (and a claim token spent).
        self.db.execute(
            "UPDATE nodes SET hostname = ?, addresses = ?, fingerprint = ?, agent_version = ?,"
            " last_seen = ?, confirmed = 1, claim_hash = NULL WHERE id = ?",
            (
                hello.hostname,
                json.dumps(hello.addresses),
                fingerprint,
                hello.agent_version,
                now,
                node_id,
            ),
        )
        return node_id, None

    def _check_pending_room(self) -> None:
        """Refuse a join that would make more than ``max_pending`` nodes wait for approval.

        The join token is one secret for the whole cluster; without a cap its holder could
        fill the database with pending nodes.
        """
        waiting = int(self.db.scalar("SELECT COUNT(*) FROM nodes WHERE approved = 0") or 0)
        if waiting >= self.max_pending:
            raise RateLimitedError(
                f"{waiting} nodes already wait for approval (auth.max_pending_nodes is"
                f" {self.max_pending}): approve or delete pending nodes, or raise the limit",
                details={"retry_after": 60},
            )

    def _rejoin(
        self, hello: Hello, existing: Row, fingerprint: str, now: float
    ) -> tuple[str, str | None]:
        """A join-token hello for a node that exists: allowed while its join is unconfirmed."""
        node_id = hello.node_id
        if existing["confirmed"]:
            raise ConflictError(
                f"node {node_id} has already joined; it must use its node credential"
                " (or an admin deletes the node first)"
            )
        if self.db.scalar("SELECT COUNT(*) FROM instances WHERE node_id = ?", (node_id,)):
            raise ConflictError(
                f"node {node_id} joined but never confirmed its credential, and instances"
                " were placed on it since; an admin deletes the node for it to join again"
            )
        credential = new_secret(NODE_PREFIX)
        self.db.execute(
            "UPDATE nodes SET hostname = ?, addresses = ?, fingerprint = ?, credential_hash = ?,"
            " agent_version = ?, last_seen = ? WHERE id = ? AND confirmed = 0",
            (
                hello.hostname,
                json.dumps(hello.addresses),
                fingerprint,
                hash_secret(credential),
                hello.agent_version,
                now,
                node_id,
            ),
        )
        return node_id, credential

    def confirm(self, node_id: str) -> None:
        """The worker has its welcome (it sent a frame after it): close its join.

        From now on only its credential connects it, and the claim token it used is spent.
        """
        self.db.execute(
            "UPDATE nodes SET confirmed = 1, claim_hash = NULL WHERE id = ? AND confirmed = 0",
            (node_id,),
        )

    def _planned_match(self, hello: Hello) -> Row | None:
        """The planned node a join-token hello names by hostname, else by an address.

        Both look only at planned nodes, through the ``nodes_planned`` index: a mass join
        of thousands of workers must not read the whole table once per worker.
        """
        row = self.db.one(
            "SELECT * FROM nodes WHERE planned = 1 AND hostname = ? LIMIT 1", (hello.hostname,)
        )
        if row is not None or not hello.addresses:
            return row
        wanted = set(hello.addresses)
        for found in self.db.all("SELECT id, addresses FROM nodes WHERE planned = 1"):
            if wanted.intersection(json.loads(found["addresses"])):
                return self.db.one("SELECT * FROM nodes WHERE id = ?", (found["id"],))
        return None

    def is_approved(self, node_id: str) -> bool:
        return bool(self.db.scalar("SELECT approved FROM nodes WHERE id = ?", (node_id,)))

    def flush_last_seen_one(self, node_id: str) -> None:
        rt = self.fleet.nodes.get(node_id)
        if rt is not None and rt.last_seen:
            self.db.execute("UPDATE nodes SET last_seen = ? WHERE id = ?", (rt.last_seen, node_id))

    def flush_last_seen(self) -> None:
        """Write in-memory last-seen times; one transaction, only for connected nodes."""
        updates = [
            (rt.last_seen, rt.node_id)
            for rt in self.fleet.nodes.values()
            if rt.connection is not None and rt.last_seen
        ]
        if updates:
            with self.db.transaction():
                self.db.executemany("UPDATE nodes SET last_seen = ? WHERE id = ?", updates)
