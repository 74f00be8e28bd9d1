"""Instances: desired state kept here, actual state reported by workers, reconciled.

Every action first records the desired state, then — if the node is online —
sends the command and waits for the worker's answer. When the node is
offline the action is accepted (the API answers 202) and applied when the
worker reconnects: on every ``hello`` the master compares the worker's
inventory with its own records and sends what closes the gap:

* an instance the master has and the worker lacks is deployed again;
* an instance whose desired state differs on the worker is started or stopped;
* an instance the worker has and the master does not (destroyed or deleted
  while the node was away) is destroyed on the worker;
* a restart asked for while the node was away is sent;
* an instance whose worker reports another package version than the one it should
  run (``desired_version``, set by rollouts) is upgraded in place — unless a running
  rollout holds it (:attr:`Orchestrator.held`), which then moves it itself, within
  its parallelism limit.

What runs on a worker is always known here: a deploy whose outcome is unknown
(the worker did not answer in time, the channel dropped) keeps its record as
``deploying`` and the worker's later answer or report settles it; an instance a
worker reports that has no record is an orphan, destroyed on the worker and
audited (``instance.orphan``). The rules are in docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from gdos_master.audit import record_audit
from gdos_master.db import Database, Row
from gdos_master.fleet import Fleet
from gdos_master.packages import Packages
from gdos_master.systems import Systems
from gdos_sdk.adoption import AdoptionSpec, ProcessCandidate
from gdos_sdk.errors import ConflictError, GdosError, NotFoundError, RemoteError, TransportError
from gdos_sdk.models import DeployRequest, Instance, ModuleKind
from gdos_sdk.protocol import (
    UPGRADE_PROTOCOL,
    CandidatesCommand,
    Command,
    DeployCommand,
    DestroyCommand,
    InstanceSpec,
    InstanceStatus,
    Response,
    RestartCommand,
    StartCommand,
    StopCommand,
    UpgradeCommand,
)
from gdos_sdk.states import DesiredState, Health, InstanceState

__all__ = ["Orchestrator"]

log = logging.getLogger("gdos.master.orchestrator")

_STATUS_FIELDS = (
    "state",
    "health",
    "pid",
    "started_at",
    "restarts",
    "exit_code",
    "reason",
    "version",
)

# Reports about an instance the master has just deleted (a destroy, a deploy the worker
# refused) may still be on their way; within this many seconds they are not orphans.
FORGET_AFTER = 60.0


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class Orchestrator:
    """Deploy, start, stop, restart, destroy and reconcile instances."""

    def __init__(
        self,
        db: Database,
        fleet: Fleet,
        systems: Systems,
        packages: Packages,
        *,
        command_timeout: float,
    ) -> None:
        self.db = db
        self.fleet = fleet
        self.systems = systems
        self.packages = packages
        self.command_timeout = command_timeout
        self._deleted: dict[str, float] = {}  # instance id -> when its record was deleted
        self._orphans: set[str] = set()  # orphans whose destroy is on its way
        self._tasks: set[asyncio.Task[None]] = set()
        #: Called with (node id, status) after every worker report about a known instance.
        self.on_status: list[Callable[[str, InstanceStatus], None]] = []
        #: Whether a running rollout moves this instance itself (the reconcile leaves its
        #: version alone then); set by the rollouts.
        self.held: Callable[[str], bool] = lambda instance_id: False

    # --- reading ----------------------------------------------------------------------------

    def _model(self, row: Row) -> Instance:
        online = self.fleet.is_online(row["node_id"])  # here or on another master
        state = InstanceState(row["state"])
        reason = row["reason"]
        if not online and state != InstanceState.UNKNOWN:
            reason = f"node offline; last reported {state.value}"
            state = InstanceState.UNKNOWN
        if row["restart_pending"]:
            reason = f"{reason}; restart queued" if reason else "restart queued"
        return Instance(
            id=row["id"],
            module_id=row["module_id"],
            system_id=row["system_id"],
            node_id=row["node_id"],
            package=row["package"],
            version=row["version"],
            desired_state=DesiredState(row["desired_state"]),
            state=state,
            health=Health(row["health"]),
            pid=row["pid"],
            started_at=row["started_at"],
            restarts=row["restarts"],
            exit_code=row["exit_code"],
            reason=reason,
            node_online=online,
            created_at=_ts(row["created_at"]),
            updated_at=_ts(row["updated_at"]),
            metrics=self.fleet.instance_sample(row["node_id"], row["id"]) if online else None,
            desired_version=row["desired_version"] or row["version"],
        )

    def _row(self, instance_id: str) -> Row:
        row = self.db.one("SELECT * FROM instances WHERE id = ?", (instance_id,))
        if row is None:
            raise NotFoundError(f"no instance with id {instance_id!r}")
        return row

    def get(self, instance_id: str) -> Instance:
        return self._model(self._row(instance_id))

    def list_instances(
        self,
        *,
        system_id: str | None = None,
        module_id: str | None = None,
        node_id: str | None = None,
        state: str | None = None,
    ) -> list[Instance]:
        where, args = [], []
        for column, value in (
            ("system_id", system_id),
            ("module_id", module_id),
            ("node_id", node_id),
        ):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.all(f"SELECT * FROM instances {clause} ORDER BY created_at", args)  # noqa: S608
        found = [self._model(r) for r in rows]
        if state:
            found = [i for i in found if i.state.value == state]
        return found

    # --- worker reports ---------------------------------------------------------------------

    def apply_status(self, node_id: str, status: InstanceStatus) -> bool:
        """Record a worker's report; writes only when something changed.

        Returns False when the master has no record of the instance (see :meth:`report`).
        """
        row = self.db.one(
            "SELECT * FROM instances WHERE id = ? AND node_id = ?", (status.instance_id, node_id)
        )
        if row is None:
            return False
        new = {
            "state": status.state.value,
            "health": status.health.value,
            "pid": status.pid,
            "started_at": status.started_at,
            "restarts": status.restarts,
            "exit_code": status.exit_code,
            "reason": status.reason,
            # An instance with processes but no usable record reports no version.
            "version": status.version or row["version"],
        }
        if any(row[k] != new[k] for k in _STATUS_FIELDS):
            self.db.execute(
                "UPDATE instances SET state = ?, health = ?, pid = ?, started_at = ?,"
                " restarts = ?, exit_code = ?, reason = ?, version = ?, updated_at = ?"
                " WHERE id = ?",
                (*[new[k] for k in _STATUS_FIELDS], time.time(), status.instance_id),
            )
        for listener in self.on_status:
            listener(node_id, status)
        return True

    def report(self, node_id: str, status: InstanceStatus) -> None:
        """A worker's ``instance_state`` report: record it, or deal with an orphan.

        An orphan is an instance the worker runs and the master has no record of. The
        master's records are the plan, so it is destroyed on the worker (as the reconcile
        on ``hello`` does), logged and audited; it never runs on unseen.
        """
        if self.apply_status(node_id, status) or self._recently_deleted(status.instance_id):
            return
        if status.instance_id in self._orphans:
            return
        self._orphans.add(status.instance_id)
        task = asyncio.get_running_loop().create_task(self._destroy_orphan(node_id, status))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _destroy_orphan(self, node_id: str, status: InstanceStatus) -> None:
        try:
            conn = self.fleet.connection(node_id)
            if conn is None:
                return  # the next hello lists it and the reconcile destroys it
            self._audit_orphan(node_id, status)
            try:
                await conn.request(DestroyCommand(status.instance_id), self.command_timeout)
            except GdosError as exc:
                log.warning(
                    "destroying orphan %s on node %s failed: %s",
                    status.instance_id,
                    node_id,
                    exc.message,
                )
        finally:
            self._orphans.discard(status.instance_id)

    def _audit_orphan(self, node_id: str, status: InstanceStatus) -> None:
        log.warning(
            "node %s runs instance %s (%s, pid %s) that the master has no record of;"
            " destroying it there",
            node_id,
            status.instance_id,
            status.state.value,
            status.pid,
        )
        record_audit(
            self.db,
            principal=None,
            ip="",
            action="instance.orphan",
            target=f"instance:{status.instance_id}",
            params={
                "node_id": node_id,
                "state": status.state.value,
                "pid": status.pid,
                "package": status.package,
                "version": status.version,
                "action": "destroy",
            },
            status=200,
            message="the worker reported an instance the master has no record of"
            " (destroyed while its node was away, or never recorded)",
            actor_kind="system",
            actor="master",
        )

    def _forget(self, instance_id: str) -> None:
        """Delete an instance's record (the worker confirmed that nothing of it is left)."""
        self.db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
        self.fleet.forget_instance(instance_id)
        now = time.monotonic()
        self._deleted = {k: t for k, t in self._deleted.items() if now - t < FORGET_AFTER}
        self._deleted[instance_id] = now

    def _recently_deleted(self, instance_id: str) -> bool:
        when = self._deleted.get(instance_id)
        return when is not None and time.monotonic() - when < FORGET_AFTER

    def _still_deploying(self, instance_id: str, reason: str) -> None:
        """Say why a record is still ``deploying`` (unless a report settled it meanwhile)."""
        self.db.execute(
            "UPDATE instances SET reason = ?, updated_at = ? WHERE id = ? AND state = ?",
            (reason, time.time(), instance_id, InstanceState.DEPLOYING.value),
        )

    def _note(self, instance_id: str, reason: str) -> None:
        """Put ``reason`` on an instance's record (its next report replaces it)."""
        self.db.execute(
            "UPDATE instances SET reason = ?, updated_at = ? WHERE id = ?",
            (reason, time.time(), instance_id),
        )

    def _deploy_answered(self, node_id: str, instance_id: str, response: Response) -> None:
        """A deploy's answer that came after the master stopped waiting for it."""
        if response.ok:
            if response.result is not None:
                self.apply_status(node_id, response.result)
            log.info("instance %s: the deploy on node %s finished late", instance_id, node_id)
            return
        message = response.error.message if response.error else "the worker reported an error"
        self._deploy_failed(node_id, instance_id, message)

    def _deploy_failed(self, node_id: str, instance_id: str, message: str) -> None:
        """The worker refused a deploy after the API answered: it left nothing behind."""
        log.warning("instance %s: deploy on node %s failed: %s", instance_id, node_id, message)
        updated = self.db.execute(
            "UPDATE instances SET state = ?, health = ?, pid = NULL, reason = ?, updated_at = ?"
            " WHERE id = ?",
            (
                InstanceState.FAILED.value,
                Health.NONE.value,
                f"deploy failed: {message}",
                time.time(),
                instance_id,
            ),
        )
        if not updated.rowcount:
            return  # destroyed meanwhile
        record_audit(
            self.db,
            principal=None,
            ip="",
            action="instance.deploy_failed",
            target=f"instance:{instance_id}",
            params={"node_id": node_id},
            status=502,
            message=message,
            actor_kind="system",
            actor="master",
        )

    # --- actions ----------------------------------------------------------------------------

    def spec_for(self, row: Row) -> InstanceSpec:
        module = self.systems.stored_module(row["module_id"])  # the real env, for the worker
        if module.kind == ModuleKind.ADOPTED:
            # Nothing to fetch: the worker finds the process by the adoption spec.
            return InstanceSpec(
                instance_id=row["id"],
                module_id=row["module_id"],
                system_id=row["system_id"],
                module_name=module.name,
                package="",
                version="",
                sha256="",
                size=0,
                download_path="",
                manifest={},
                env=module.env,
                adoption=module.adoption,
                health_check=module.health_check,
                user=module.user,
                group=module.group,
            )
        package = self.packages.get(row["package"], row["desired_version"] or row["version"])
        # A presigned URL lets the worker fetch straight from the object store;
        # without one (local disk, or worker_fetch: master) it asks the master.
        key = self.packages.storage_key(package.name, package.version)
        url = self.packages.storage.presigned_url(key)
        return InstanceSpec(
            instance_id=row["id"],
            module_id=row["module_id"],
            system_id=row["system_id"],
            module_name=module.name,
            package=package.name,
            version=package.version,
            sha256=package.sha256,
            size=package.size,
            download_path=url or f"/api/v1/agent/packages/{package.sha256}",
            manifest=package.manifest,
            env=module.env,
            args=module.args,
            health_check=module.health_check,
            user=module.user,
            group=module.group,
        )

    async def deploy(self, body: DeployRequest) -> tuple[Instance, bool]:
        """Create an instance of a module on a node; return (instance, applied now)."""
        module = self.systems.get_module(body.module_id)
        node = self.db.one("SELECT * FROM nodes WHERE id = ?", (body.node_id,))
        if node is None:
            raise NotFoundError(f"no node with id {body.node_id!r}")
        if not node["approved"]:
            raise ConflictError("node is waiting for approval; approve it before deploying")
        if module.kind == ModuleKind.ADOPTED:
            name, version, sha256 = "", "", ""
        else:
            package = self.packages.get(module.package, module.version)
            name, version, sha256 = package.name, package.version, package.sha256
        instance_id = str(uuid.uuid4())
        conn = self.fleet.connection(body.node_id)
        now = time.time()
        desired = DesiredState.RUNNING if body.start else DesiredState.STOPPED
        self.db.execute(
            "INSERT INTO instances(id, module_id, system_id, node_id, package, version, sha256,"
            " desired_version, desired_state, state, created_at, updated_at)"
            " VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                instance_id,
                module.id,
                module.system_id,
                body.node_id,
                name,
                version,
                sha256,
                version,
                desired.value,
                (InstanceState.DEPLOYING if conn else InstanceState.UNKNOWN).value,
                now,
                now,
            ),
        )
        if conn is None:
            return self.get(instance_id), False
        command = DeployCommand(spec=self.spec_for(self._row(instance_id)), start=body.start)
        try:
            status = await conn.request(
                command,
                self.command_timeout,
                on_late=lambda answer: self._deploy_answered(body.node_id, instance_id, answer),
            )
        except TransportError as exc:
            # No answer in time, or the channel dropped: the worker may still be at it (a
            # slow download), so the record stays, `deploying`, and is settled by the
            # worker's late answer, its reports, or the reconcile when it reconnects.
            log.warning("instance %s: deploy outcome unknown: %s", instance_id, exc.message)
            self._still_deploying(
                instance_id,
                f"deploying: no answer yet ({exc.message}); the worker reports the outcome",
            )
            return self.get(instance_id), False
        except GdosError:
            # The worker answered with an error and removed what it unpacked.
            self._forget(instance_id)
            raise
        if status is not None:
            self.apply_status(body.node_id, status)
        return self.get(instance_id), True

    async def _act(
        self, instance_id: str, desired: DesiredState, command: Command
    ) -> tuple[Instance, bool]:
        """Record the desired state (and a queued restart), then send ``command`` if online.

        A restart on an offline node is queued (``restart_pending``) and sent by the
        reconcile when the worker returns; a stop drops a queued restart.
        """
        row = self._row(instance_id)
        conn = self.fleet.connection(row["node_id"])
        # Queued only for an offline node: a restart sent now whose answer is lost must
        # not be repeated at the next reconnect.
        pending = desired == DesiredState.RUNNING and (
            bool(row["restart_pending"]) or (conn is None and isinstance(command, RestartCommand))
        )
        if row["desired_state"] != desired.value or bool(row["restart_pending"]) != pending:
            self.db.execute(
                "UPDATE instances SET desired_state = ?, restart_pending = ?, updated_at = ?"
                " WHERE id = ?",
                (desired.value, int(pending), time.time(), instance_id),
            )
        if conn is None:
            return self.get(instance_id), False
        status = await conn.request(command, self.command_timeout)
        if isinstance(command, RestartCommand):
            self._restarted(instance_id)
        if status is not None:
            self.apply_status(row["node_id"], status)
        return self.get(instance_id), True

    def _restarted(self, instance_id: str) -> None:
        self.db.execute(
            "UPDATE instances SET restart_pending = 0 WHERE id = ? AND restart_pending = 1",
            (instance_id,),
        )

    async def start(self, instance_id: str) -> tuple[Instance, bool]:
        return await self._act(instance_id, DesiredState.RUNNING, StartCommand(instance_id))

    async def stop(self, instance_id: str) -> tuple[Instance, bool]:
        return await self._act(instance_id, DesiredState.STOPPED, StopCommand(instance_id))

    async def restart(self, instance_id: str) -> tuple[Instance, bool]:
        """Restart now, or (node offline) queue the restart for when the worker returns."""
        return await self._act(instance_id, DesiredState.RUNNING, RestartCommand(instance_id))

    def set_desired_version(self, instance_id: str, version: str) -> None:
        """Record the package version an instance should run (sent by :meth:`upgrade`)."""
        self.db.execute(
            "UPDATE instances SET desired_version = ?, updated_at = ? WHERE id = ?",
            (version, time.time(), instance_id),
        )

    def can_upgrade(self, node_id: str) -> bool:
        """Whether the node's worker is online and knows the ``upgrade`` command."""
        conn = self.fleet.connection(node_id)
        return conn is not None and conn.protocol >= UPGRADE_PROTOCOL

    async def upgrade(
        self, instance_id: str, version: str, *, timeout: float | None = None
    ) -> tuple[Instance, bool]:
        """Move an instance to ``version`` of its package in place; (instance, applied now).

        The desired version is recorded first. With the node offline nothing is sent
        (False): the reconcile sends it when the worker returns, unless a rollout
        holds the instance. The answer is the worker's report after the switch (the
        instance may be ``failed`` there: a new version that cannot start).

        Raises:
            NotFoundError: no such instance, or no such version of its package.
            ConflictError: an adopted instance, or a worker too old to upgrade in place.
            TransportError: no answer within ``timeout`` (the worker may go on: its
                reports tell).
            RemoteError: the worker refused (nothing was stopped).
        """
        row = self._row(instance_id)
        if not row["package"]:
            raise ConflictError("an adopted instance has no package version to change")
        self.packages.get(row["package"], version)
        conn = self.fleet.connection(row["node_id"])
        if conn is not None and conn.protocol < UPGRADE_PROTOCOL:
            raise ConflictError(
                f"the worker of node {row['node_id']} speaks agent protocol {conn.protocol},"
                f" which cannot change an instance's version in place: upgrade that worker"
            )
        self.set_desired_version(instance_id, version)
        if conn is None:
            return self.get(instance_id), False
        command = UpgradeCommand(spec=self.spec_for(self._row(instance_id)))
        status = await conn.request(command, timeout or self.command_timeout)
        if status is not None:
            self.apply_status(row["node_id"], status)
        return self.get(instance_id), True

    async def destroy(self, instance_id: str) -> bool:
        """Stop and remove an instance; return True if the worker confirmed it now."""
        row = self._row(instance_id)
        conn = self.fleet.connection(row["node_id"])
        applied = False
        if conn is not None:
            try:
                await conn.request(DestroyCommand(instance_id), self.command_timeout)
            except RemoteError as exc:
                if (exc.details or {}).get("code") != "not_found":
                    raise
            applied = True
        self._forget(instance_id)
        return applied

    async def candidates(self, node_id: str, adoption: AdoptionSpec) -> list[ProcessCandidate]:
        """The processes on ``node_id`` that ``adoption`` would adopt (changes nothing)."""
        adoption.check("$")
        if self.db.one("SELECT 1 FROM nodes WHERE id = ?", (node_id,)) is None:
            raise NotFoundError(f"no node with id {node_id!r}")
        conn = self.fleet.connection(node_id)
        if conn is None:
            raise ConflictError("node is offline; candidates need a running worker")
        response = await conn.ask(CandidatesCommand(adoption=adoption), self.command_timeout)
        return response.candidates or []

    # --- reconciliation ---------------------------------------------------------------------

    def plan_reconcile(
        self, node_id: str, inventory: list[InstanceStatus], *, protocol: int = UPGRADE_PROTOCOL
    ) -> list[Command]:
        """The commands that bring a worker in line with the master (pure given the DB).

        An instance's commands are listed in the order they must run (an upgrade before
        the start or stop that follows it); ``protocol`` is the worker's.
        """
        reported = {s.instance_id: s for s in inventory}
        rows = self.db.all("SELECT * FROM instances WHERE node_id = ?", (node_id,))
        commands: list[Command] = []
        for row in rows:
            desired = DesiredState(row["desired_state"])
            status = reported.pop(row["id"], None)
            # UNKNOWN: processes the worker found without a usable record; deploy it afresh.
            if status is None or status.state == InstanceState.UNKNOWN:
                try:
                    spec = self.spec_for(row)
                except NotFoundError as exc:
                    log.error("cannot redeploy instance %s: %s", row["id"], exc.message)
                    continue
                commands.append(DeployCommand(spec=spec, start=desired == DesiredState.RUNNING))
                continue
            want = row["desired_version"]
            if (
                want
                and status.version
                and status.version != want
                and protocol >= UPGRADE_PROTOCOL
                and not self.held(row["id"])
            ):
                try:
                    commands.append(UpgradeCommand(spec=self.spec_for(row)))
                except NotFoundError as exc:
                    log.error("cannot upgrade instance %s: %s", row["id"], exc.message)
            if desired == DesiredState.RUNNING and row["restart_pending"]:
                commands.append(RestartCommand(row["id"]))
            elif status.desired_state != desired:
                if desired == DesiredState.RUNNING:
                    commands.append(StartCommand(row["id"]))
                else:
                    commands.append(StopCommand(row["id"]))
        commands.extend(DestroyCommand(instance_id) for instance_id in reported)
        return commands

    async def reconcile(self, node_id: str, inventory: list[InstanceStatus]) -> list[Command]:
        """Record the inventory, then send the commands that close the gap."""
        orphans = {s.instance_id: s for s in inventory if not self.apply_status(node_id, s)}
        conn = self.fleet.connection(node_id)
        protocol = conn.protocol if conn is not None else UPGRADE_PROTOCOL
        commands = self.plan_reconcile(node_id, inventory, protocol=protocol)
        if conn is None or not commands:
            return commands

        async def send(command: Command) -> None:
            instance_id = getattr(command, "instance_id", "")
            on_late = None
            if isinstance(command, UpgradeCommand):
                instance_id = command.spec.instance_id
            if isinstance(command, DeployCommand):
                instance_id = command.spec.instance_id

                def on_late(answer: Response) -> None:
                    self._deploy_answered(node_id, instance_id, answer)

            elif isinstance(command, DestroyCommand) and instance_id in orphans:
                self._audit_orphan(node_id, orphans[instance_id])
            try:
                status = await conn.request(command, self.command_timeout, on_late=on_late)
            except TransportError as exc:
                log.warning(
                    "reconcile %s on node %s: no answer: %s", command.kind, node_id, exc.message
                )
                return
            except GdosError as exc:
                log.warning(
                    "reconcile %s on node %s failed: %s", command.kind, node_id, exc.message
                )
                if isinstance(command, DeployCommand):
                    self._deploy_failed(node_id, instance_id, exc.message)
                elif isinstance(command, UpgradeCommand):
                    self._note(
                        instance_id, f"upgrade to {command.spec.version} failed: {exc.message}"
                    )
                return
            if isinstance(command, (DeployCommand, RestartCommand)):
                self._restarted(instance_id)  # a fresh deploy starts afresh as well
            if status is not None:
                self.apply_status(node_id, status)

        async def send_in_order(group: list[Command]) -> None:
            for command in group:
                await send(command)

        # Instances in parallel; one instance's commands (upgrade, then start) in order.
        groups: dict[str, list[Command]] = {}
        for command in commands:
            key = (
                command.spec.instance_id
                if isinstance(command, (DeployCommand, UpgradeCommand))
                else getattr(command, "instance_id", "")
            )
            groups.setdefault(key, []).append(command)
        await asyncio.gather(*(send_in_order(g) for g in groups.values()))
        return commands
