"""Rollouts: move a module's instances to another version, a few at a time, and back.

A rollout is a job (:class:`~gdos_sdk.rollouts.Rollout`) kept in the ``rollouts``
table, updated on every step and pushed on the live topic ``rollout:<id>``. It:

1. sets the module's version to the target (new instances get it) and lists the
   module's instances not on it yet, spread over the nodes (:mod:`gdos_master.rollout_steps`);
2. moves them with the shared :class:`~gdos_master.scheduler.Scheduler`: at most
   ``max_parallel`` at once, each holding its place from its stop until it passes the
   ``wait`` check (so never more than ``max_parallel`` are down or unproven);
   ``canary`` instances go first, then the rollout waits for :meth:`Rollouts.promote`
   (or ``auto_promote_after``);
3. on a failure (an instance that does not pass its check within ``healthy_deadline``,
   or no instance finishing within ``progress_deadline``) or an abort, begins no
   further instance; with ``auto_revert`` (or ``abort(revert=True)``) it moves every
   instance it moved back to the version that instance had, and the module's version
   back too (an instance deployed on the target version meanwhile joins the job and
   goes back as well).

An instance whose node is offline is ``pending``: the rollout moves it when the node
returns, while the rollout runs; a rollout left with nothing but pending instances
ends ``done`` after ``progress_deadline``, and they move when their node returns (the
reconcile does it, and the job records it). While a rollout runs it holds its
instances: the reconcile leaves their version to it (:attr:`Orchestrator.held`).

A master restart resumes a rollout that was running (or paused, or awaiting
promotion): instances it was moving are moved again (the worker answers at once for
one already switched) and verified again. The audit trail has the request
(``module.rollout``/``module.rollback``, written by the route), each pause, resume,
promote and abort, and ``rollout.done`` when it ends. The rules are in docs/rollouts.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import functools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from gdos_master.audit import record_audit
from gdos_master.auth import Principal
from gdos_master.live import Topic, View
from gdos_master.rollout_steps import Verification, order_instances, step_for
from gdos_master.scheduler import Scheduler, Unit, Verify
from gdos_sdk.codec import structure, unstructure
from gdos_sdk.errors import ConflictError, GdosError, NotFoundError, TransportError, ValidationError
from gdos_sdk.models import Module, ModuleKind, Role
from gdos_sdk.privileges import require_admin_for
from gdos_sdk.protocol import InstanceStatus
from gdos_sdk.rollouts import (
    RollbackRequest,
    Rollout,
    RolloutItem,
    RolloutRequest,
    RolloutState,
    RolloutStrategy,
    StepState,
)
from gdos_sdk.versions import sort_versions

if TYPE_CHECKING:
    from gdos_master.app import Master

__all__ = ["KEEP", "KEEP_STORED", "RolloutTopic", "Rollouts"]

log = logging.getLogger("gdos.master.rollouts")

KEEP = 50  # ended rollouts kept in memory (running ones, and ones with pending instances too)
KEEP_STORED = 1000  # rollouts kept in the database
POLL = 0.2  # seconds between looks at an instance being verified, or at offline nodes
RS = RolloutState
T = StepState
_MOVING = frozenset({T.PREPARING, T.STOPPING, T.STARTING, T.VERIFYING})
_T = TypeVar("_T")


class _Stopped(Exception):
    """The rollout stopped (failure elsewhere, abort) while this instance was being moved."""


class _Offline(Exception):
    """The instance's node went away while it was being moved."""


@attrs.define
class _Job:
    """A rollout as it runs: the stored model's fields plus what steers it."""

    model: Rollout
    items: list[RolloutItem]
    principal: Principal | None
    ip: str
    state: RolloutState
    error: str = ""
    promoted_at: float | None = None
    finished_at: float | None = None
    revision: int = 0
    # steering
    scheduler: Scheduler | None = None
    stop_reason: str = ""  # set when it must stop: why
    revert: bool = False  # ... and whether what it moved goes back
    aborted: bool = False  # by a user (not a failure)
    revert_aborted: bool = False
    stop: asyncio.Event = attrs.field(factory=asyncio.Event)
    promoted: asyncio.Event = attrs.field(factory=asyncio.Event)
    changed: asyncio.Event = attrs.field(factory=asyncio.Event)
    done: asyncio.Event = attrs.field(factory=asyncio.Event)
    running: bool = False  # its task runs in this process
    quiet: float = 0.0  # seconds without an instance finishing, while running
    expired: bool = False  # progress_deadline passed with only pending instances left

    @property
    def id(self) -> str:
        return self.model.id

    def stopping(self) -> bool:
        """Whether it must stop (a method: it changes while the rollout awaits)."""
        return bool(self.stop_reason)

    @property
    def strategy(self) -> RolloutStrategy:
        return self.model.strategy

    def snapshot(self) -> Rollout:
        return attrs.evolve(
            self.model,
            items=list(self.items),
            state=self.state,
            error=self.error,
            promoted_at=self.promoted_at,
            finished_at=self.finished_at,
            revision=self.revision,
        )

    def index(self, instance_id: str) -> int:
        return next(n for n, i in enumerate(self.items) if i.instance_id == instance_id)

    def item(self, instance_id: str) -> RolloutItem:
        return self.items[self.index(instance_id)]


class Rollouts:
    """The rollouts of this master: start, steer, resume, read."""

    def __init__(
        self,
        master: Master,
        *,
        keep: int = KEEP,
        keep_stored: int = KEEP_STORED,
        poll: float = POLL,
    ) -> None:
        self.master = master
        self.keep = keep
        self.keep_stored = keep_stored
        self.poll = poll
        self.jobs: collections.OrderedDict[str, _Job] = collections.OrderedDict()
        self._held: dict[str, str] = {}  # instance id -> running rollout that holds it
        self._pending: dict[str, str] = {}  # instance id -> ended rollout it catches up in
        master.orchestrator.held = self._held.__contains__
        master.orchestrator.on_status.append(self._on_status)

    # --- the rollouts table ------------------------------------------------------------------

    def _save(self, job: _Job) -> None:
        job.revision += 1
        model = job.snapshot()
        self.master.db.execute(
            "INSERT INTO rollouts(id, module_id, system_id, state, started_at, rollout, master_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET state = excluded.state, rollout = excluded.rollout,"
            " master_id = excluded.master_id",
            (
                job.id,
                model.module_id,
                model.system_id,
                model.state.value,
                model.started_at,
                json.dumps(unstructure(model), separators=(",", ":")),
                self.master.cluster.master_id,
            ),
        )
        job.changed.set()
        job.changed = asyncio.Event()

    def _set(self, job: _Job, instance_id: str, **changes: Any) -> RolloutItem:
        """Change one item and save the job."""
        index = job.index(instance_id)
        job.items[index] = attrs.evolve(job.items[index], **changes)
        self._save(job)
        return job.items[index]

    def load(self, owner: str | None = None) -> int:
        """Take up the rollouts a previous run of the master left unfinished; how many.

        Running ones are resumed by :meth:`start_background` (instances being moved
        are moved again); ended ones with pending instances go on catching up.
        Called once at start, before any worker connects. With several masters the leader
        calls it when elected and every few seconds after: it takes up only the rollouts
        of masters that are gone (their own lease ran out; docs/scale-out.md), and each
        master at its start those it ran itself before (``owner``: its configured id).
        """
        rows = self.master.db.all(
            "SELECT rollout, master_id FROM rollouts WHERE state NOT IN ('done', 'failed',"
            " 'reverted', 'aborted') OR rollout LIKE '%\"state\":\"pending\"%'"
            " ORDER BY started_at"
        )
        cluster = self.master.cluster
        alive = cluster.live_masters() - {cluster.master_id} if cluster.clustered else set()
        for row in rows:
            if row["master_id"] in alive or (owner is not None and row["master_id"] != owner):
                continue  # that master runs it
            model = _load(row["rollout"])
            if model.id in self.jobs:
                continue
            job = _Job(
                model=model,
                items=list(model.items),
                principal=None,
                ip="",
                state=model.state,
                error=model.error,
                promoted_at=model.promoted_at,
                finished_at=model.finished_at,
                revision=model.revision,
            )
            if job.promoted_at is not None:
                job.promoted.set()
            self.jobs[job.id] = job
            if model.state.ended:
                job.done.set()
                for item in job.items:
                    if item.state == T.PENDING:
                        self._pending[item.instance_id] = job.id
                continue
            if job.state == RS.REVERTING or job.error:
                # It was stopping (the reason is kept as its error): it goes on with that.
                job.stop_reason = job.error or "interrupted by a master restart"
                job.revert = job.state == RS.REVERTING or job.strategy.auto_revert
                job.stop.set()
            for n, item in enumerate(job.items):
                self._held[item.instance_id] = job.id
                if item.state in _MOVING:
                    job.items[n] = attrs.evolve(
                        item, state=T.WAITING, note="moved again after a master restart"
                    )
            log.info("rollout %s of %s resumes after a master restart", job.id, model.module)
        return sum(1 for j in self.jobs.values() if not j.state.ended)

    def start_background(self) -> None:
        """Run the rollouts :meth:`load` found unfinished (needs the event loop).

        Also after a restore: a backup taken mid-rollout resumes it (those this process
        runs already go on).
        """
        for job in self.jobs.values():
            if not job.state.ended and not job.running:
                self._save(job)
                self._spawn(job)

    def _spawn(self, job: _Job) -> None:
        job.running = True
        self.master.spawn(self._run(job))

    # --- starting -----------------------------------------------------------------------------

    def _active(self, module_id: str) -> _Job | None:
        return next(
            (j for j in self.jobs.values() if j.model.module_id == module_id and not j.state.ended),
            None,
        )

    def _check_allowed(self, module: Module, version: str, principal: Principal) -> None:
        systems = self.master.systems
        if module.kind == ModuleKind.ADOPTED:
            raise ValidationError(
                "an adopted module has no package version to roll out",
                details=[{"path": "$.version", "message": "not a package module"}],
            )
        try:
            self.master.packages.get(module.package, version)
        except NotFoundError:
            raise ValidationError(
                f"package {module.package}@{version} has not been uploaded",
                details=[{"path": "$.version", "message": f"no {module.package}@{version}"}],
            ) from None
        active = self._active(module.id)
        if active is not None:
            raise ConflictError(
                f"rollout {active.id} of module {module.name!r} ({active.model.from_version}"
                f" -> {active.model.to_version}) is {active.state.value}; abort it or wait",
                details={"rollout": active.id},
            )
        if not principal.role.allows(Role.ADMIN):
            after = attrs.evolve(module, version=version)
            require_admin_for(
                systems.admin_only(after), what=f"moving module {module.name!r} to {version}"
            )

    def start(
        self,
        module_id: str,
        request: RolloutRequest,
        principal: Principal,
        ip: str = "",
        *,
        kind: str = "rollout",
    ) -> Rollout:
        """Plan the rollout, set the module's version, and run it in the background.

        Raises:
            NotFoundError: no such module.
            ValidationError: an adopted module, or a version not uploaded.
            ConflictError: a rollout of the module is still running.
            PermissionDenied: below admin, the version needs admin-only settings.
        """
        module = self.master.systems.get_module(module_id)
        self._check_allowed(module, request.version, principal)
        instances = self.master.orchestrator.list_instances(module_id=module_id)
        moving = [
            i
            for i in order_instances(instances)
            if i.version != request.version or i.desired_version != request.version
        ]
        now = time.time()
        canary = request.strategy.canary
        items = [
            RolloutItem(
                instance_id=i.id,
                node_id=i.node_id,
                from_version=i.version,
                canary=n < canary,
            )
            for n, i in enumerate(moving)
        ]
        model = Rollout(
            id=uuid.uuid4().hex,
            module_id=module.id,
            system_id=module.system_id,
            module=module.name,
            package=module.package,
            from_version=module.version,
            to_version=request.version,
            kind=kind,
            strategy=request.strategy,
            state=RS.RUNNING,
            user=principal.label,
            started_at=now,
            items=items,
            unchanged=len(instances) - len(items),
        )
        job = _Job(model=model, items=items, principal=principal, ip=ip, state=RS.RUNNING)
        if not any(i.canary for i in items):
            job.promoted.set()
        with self.master.db.transaction():
            self.master.systems.set_version(module.id, request.version)
            self._save(job)
            self.master.db.execute(
                "DELETE FROM rollouts WHERE id NOT IN"
                " (SELECT id FROM rollouts ORDER BY started_at DESC LIMIT ?)",
                (self.keep_stored,),
            )
        for item in items:
            self._supersede(item.instance_id, job.id)
            self._held[item.instance_id] = job.id
        self.jobs[job.id] = job
        self._trim()
        log.info(
            "rollout %s: module %s %s -> %s, %d instance(s)",
            job.id,
            module.name,
            module.version,
            request.version,
            len(items),
        )
        self._spawn(job)
        return job.snapshot()

    def rollback(
        self, module_id: str, request: RollbackRequest, principal: Principal, ip: str = ""
    ) -> Rollout:
        """A rollout to ``request.version``, or to the version the module had before.

        Raises:
            ConflictError: no earlier version is known, or it is the current one.
            (and what :meth:`start` raises)
        """
        module = self.master.systems.get_module(module_id)
        version = request.version or self.previous_version(module)
        if version == module.version:
            raise ConflictError(f"module {module.name!r} already has version {version}")
        return self.start(
            module_id,
            RolloutRequest(version=version, strategy=request.strategy),
            principal,
            ip,
            kind="rollback",
        )

    def previous_version(self, module: Module) -> str:
        """The version before the module's current one: its last rollout's starting point.

        Without such a rollout, the highest stored version below the current one.
        """
        for job in self.list_rollouts(module_id=module.id):
            if job.to_version == module.version and job.from_version != module.version:
                return job.from_version
        versions = {p.version for p in self.master.packages.versions(module.package)}
        ordered = sort_versions(versions | {module.version})
        below = ordered[: ordered.index(module.version)]
        if not below:
            raise ConflictError(
                f"module {module.name!r} has no version before {module.version};"
                " name the version to go to"
            )
        return below[-1]

    def _supersede(self, instance_id: str, by: str) -> None:
        """An ended rollout's pending instance is now another rollout's to move."""
        old = self._pending.pop(instance_id, None)
        job = self.jobs.get(old) if old else None
        if job is not None:
            self._set(job, instance_id, state=T.SKIPPED, note=f"superseded by rollout {by}")

    def _trim(self) -> None:
        ended = [
            j.id
            for j in self.jobs.values()
            if j.done.is_set() and all(i.state != T.PENDING for i in j.items)
        ]
        for old in ended[: max(0, len(self.jobs) - self.keep)]:
            del self.jobs[old]  # still readable from the database

    # --- steering -----------------------------------------------------------------------------

    def _live(self, rollout_id: str) -> _Job:
        job = self.jobs.get(rollout_id)
        if job is None or job.state.ended:
            state = self.get(rollout_id).state.value  # NotFoundError if there is none
            raise ConflictError(f"rollout {rollout_id} has ended ({state})")
        return job

    def pause(self, rollout_id: str) -> Rollout:
        """Begin no further instance (those being moved finish); :meth:`resume` goes on."""
        job = self._live(rollout_id)
        if job.state != RS.RUNNING:
            raise ConflictError(f"only a running rollout can be paused; it is {job.state.value}")
        job.state = RS.PAUSED
        if job.scheduler is not None:
            job.scheduler.pause()
        self._save(job)
        return job.snapshot()

    def resume(self, rollout_id: str) -> Rollout:
        job = self._live(rollout_id)
        if job.state != RS.PAUSED:
            raise ConflictError(f"only a paused rollout can be resumed; it is {job.state.value}")
        job.state = RS.RUNNING
        if job.scheduler is not None:
            job.scheduler.resume()
        self._save(job)
        return job.snapshot()

    def promote(self, rollout_id: str) -> Rollout:
        """Go on past the canaries (only while the rollout awaits promotion)."""
        job = self._live(rollout_id)
        if job.state != RS.AWAITING_PROMOTION:
            raise ConflictError(
                f"rollout {rollout_id} is {job.state.value}; promote it once its canaries"
                " made it (awaiting_promotion)"
            )
        job.promoted_at = time.time()
        job.promoted.set()
        return job.snapshot()

    def abort(self, rollout_id: str, principal: Principal, revert: bool | None = None) -> Rollout:
        """Stop: begin no further instance; ``revert`` (default: the strategy's
        ``auto_revert``) moves the instances it moved back. An abort while reverting
        stops the revert too."""
        job = self._live(rollout_id)
        back = job.strategy.auto_revert if revert is None else revert
        if job.state == RS.REVERTING:
            job.revert_aborted = True
            if job.scheduler is not None:
                job.scheduler.halt()
            job.stop.set()
            self._save(job)
        elif not job.stop_reason:
            job.aborted = True
            self._stop(job, f"aborted by {principal.label}", back)
        return job.snapshot()

    def _stop(self, job: _Job, reason: str, revert: bool) -> None:
        if job.stop_reason:
            return  # already stopping: the first reason stands
        log.warning("rollout %s stops: %s", job.id, reason)
        job.stop_reason, job.revert = reason, revert
        job.error = reason  # shown (and kept across a restart) while it winds down
        if job.scheduler is not None:
            job.scheduler.halt()
        job.stop.set()
        job.promoted.set()  # no longer waiting for it
        self._save(job)

    # --- running ------------------------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        watchdog = asyncio.get_running_loop().create_task(self._watchdog(job))
        try:
            if job.state != RS.REVERTING:
                await self._forward(job)
            if job.stop_reason and job.revert:
                await self._revert(job)
            self._close(job)
        except asyncio.CancelledError:
            # The master stops: the job stays as stored and resumes at its next start.
            watchdog.cancel()
            raise
        except Exception as exc:  # a bug must still end the job, never leave it running
            watchdog.cancel()
            job.state, job.error = RS.FAILED, f"internal error: {exc!r}"
            self._finish(job)
            raise
        watchdog.cancel()
        self._finish(job)

    async def _forward(self, job: _Job) -> None:
        canaries = [i.instance_id for i in job.items if i.canary]
        if canaries:
            await self._phase(job, canaries, min(job.strategy.max_parallel, len(canaries)))
            if job.stopping():
                return
            if not job.promoted.is_set():
                await self._await_promotion(job)
            if job.stopping():
                return
        rest = [i.instance_id for i in job.items if not i.canary]
        await self._phase(job, rest, job.strategy.max_parallel)

    async def _await_promotion(self, job: _Job) -> None:
        job.state = RS.AWAITING_PROMOTION
        self._save(job)
        log.info("rollout %s: canaries made it; awaiting promotion", job.id)
        after = job.strategy.auto_promote_after
        try:
            await asyncio.wait_for(job.promoted.wait(), after)
        except TimeoutError:
            job.promoted_at = time.time()
            job.promoted.set()
            log.info("rollout %s promoted after %g s", job.id, after)
        if not job.stop_reason:
            job.state, job.quiet = RS.RUNNING, 0.0
            job.promoted_at = job.promoted_at or time.time()
            self._save(job)

    async def _phase(self, job: _Job, ids: list[str], parallel: int) -> None:
        """Move these instances: rounds until none is waiting and none can be (pending)."""
        scheduler = job.scheduler = Scheduler(parallel)
        if job.state == RS.PAUSED:
            scheduler.pause()
        while True:
            todo = [i for i in ids if job.item(i).state == T.WAITING]
            if todo and not job.stop_reason:
                await scheduler.run(
                    Unit(i, functools.partial(self._move, job, i, job.model.to_version))
                    for i in todo
                )
            if job.stop_reason:
                break
            pending = [i for i in ids if job.item(i).state == T.PENDING]
            if not pending or not await self._await_nodes(job, pending):
                break
        for i in ids:
            if job.item(i).state == T.WAITING:
                self._set(job, i, state=T.SKIPPED)

    async def _await_nodes(self, job: _Job, pending: list[str]) -> bool:
        """Wait until a pending instance's node is back; False: the rollout stops waiting."""
        orchestrator = self.master.orchestrator
        while not job.stop_reason and not job.expired:
            back = [i for i in pending if orchestrator.can_upgrade(job.item(i).node_id)]
            if back:
                for i in back:
                    self._set(job, i, state=T.WAITING, note="its node returned")
                return True
            await asyncio.sleep(self.poll)
        return False

    async def _move(self, job: _Job, instance_id: str, version: str) -> Verify | None:
        """One instance, in its place: switch it and verify it (see the module docstring)."""
        if job.stop_reason:
            return None
        orchestrator = self.master.orchestrator
        item = job.item(instance_id)
        try:
            instance = orchestrator.get(instance_id)
        except NotFoundError:
            self._set(job, instance_id, state=T.SKIPPED, note="the instance was destroyed")
            return None
        if orchestrator.fleet.connection(instance.node_id) is None:
            self._set(job, instance_id, state=T.PENDING, note="node offline: moved on its return")
            return None
        started = time.time()
        self._set(job, instance_id, state=T.PREPARING, started_at=started, error="", note="")
        deadline = time.monotonic() + job.strategy.healthy_deadline
        try:
            await self._until_stopped(
                job, self._switch(instance_id, version, job.strategy.healthy_deadline)
            )
            await self._until_stopped(job, self._verify(job, instance_id, version, deadline))
        except _Stopped:
            self._set(
                job,
                instance_id,
                state=T.ABORTED,
                finished_at=time.time(),
                note=f"the rollout stopped while it was being moved ({job.stop_reason})",
            )
            return None
        except _Offline:
            self._set(job, instance_id, state=T.PENDING, note="node went offline during its move")
            return None
        except GdosError as exc:
            self._set(job, instance_id, state=T.FAILED, finished_at=time.time(), error=exc.message)
            self._stop(
                job,
                f"instance {instance_id} on node {item.node_id}: {exc.message}",
                job.strategy.auto_revert,
            )
            return None
        self._set(job, instance_id, state=T.DONE, finished_at=time.time())
        job.quiet = 0.0
        return None

    async def _switch(self, instance_id: str, version: str, timeout: float) -> None:
        """Send the upgrade; no answer in time is not yet a failure (the reports tell)."""
        orchestrator = self.master.orchestrator
        try:
            await orchestrator.upgrade(instance_id, version, timeout=timeout)
        except TransportError:
            if not orchestrator.can_upgrade(orchestrator.get(instance_id).node_id):
                raise _Offline from None

    async def _verify(self, job: _Job, instance_id: str, version: str, deadline: float) -> None:
        check = Verification(job.strategy, version)
        orchestrator = self.master.orchestrator
        while True:
            instance = orchestrator.get(instance_id)
            if not instance.node_online:
                raise _Offline
            verdict = check.look(instance, time.time())
            if verdict.failed:
                raise GdosError(verdict.failed)
            if verdict.done:
                return
            if time.monotonic() >= deadline:
                raise GdosError(
                    f"not {job.strategy.wait.value} on {version} within healthy_deadline"
                    f" {job.strategy.healthy_deadline:g} s: waited for {verdict.waiting_for}"
                )
            await asyncio.sleep(self.poll)

    async def _until_stopped(self, job: _Job, work: Awaitable[_T]) -> _T:
        """``work``, unless the rollout stops first (the worker's command goes on)."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(job.stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()  # the master is shutting down: nothing may touch its database after
            raise
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.add_done_callback(_ignore_result)  # its answer still lands in the records
        raise _Stopped

    async def _watchdog(self, job: _Job) -> None:
        """``progress_deadline``: time running without an instance finishing."""
        step = min(0.25, job.strategy.progress_deadline / 4)
        while True:
            await asyncio.sleep(step)
            if job.state != RS.RUNNING or job.stop_reason:
                continue
            job.quiet += step
            if job.quiet < job.strategy.progress_deadline:
                continue
            unfinished = [i for i in job.items if i.state not in (T.DONE, T.SKIPPED)]
            if unfinished and all(i.state == T.PENDING for i in unfinished):
                job.expired = True  # ends done; pending instances catch up on their return
                return
            self._stop(
                job,
                f"no instance finished within progress_deadline"
                f" {job.strategy.progress_deadline:g} s",
                job.strategy.auto_revert,
            )
            return

    async def _revert(self, job: _Job) -> None:
        """Move every instance the rollout moved (or began to) back to its own version."""
        job.state = RS.REVERTING
        self.master.systems.set_version(job.model.module_id, job.model.from_version)
        self._take_newcomers(job)
        self._save(job)
        orchestrator = self.master.orchestrator
        back: list[str] = []
        for item in job.items:
            if item.state in (T.WAITING, T.SKIPPED, T.REVERTED) or (
                item.state == T.PENDING and item.started_at is None
            ):
                if item.state in (T.WAITING, T.PENDING):
                    self._set(job, item.instance_id, state=T.SKIPPED)
                continue
            try:
                instance = orchestrator.get(item.instance_id)
            except NotFoundError:
                continue
            orchestrator.set_desired_version(item.instance_id, item.from_version)
            if item.state == T.PENDING:  # went offline while moving: the reconcile moves it
                self._set(
                    job, item.instance_id, state=T.REVERTED, note="node offline: moved on return"
                )
            elif instance.version == item.from_version and not orchestrator.can_upgrade(
                instance.node_id
            ):
                self._set(job, item.instance_id, state=T.REVERTED)
            else:
                # Sent even to one that seems not to have moved: an upgrade it was sent may
                # still be under way on its worker, which runs them in order.
                self._set(job, item.instance_id, state=T.REVERTING)
                back.append(item.instance_id)
        job.stop = asyncio.Event()  # an abort now stops the revert
        scheduler = job.scheduler = Scheduler(job.strategy.max_parallel)
        await scheduler.run(Unit(i, functools.partial(self._move_back, job, i)) for i in back)

    def _take_newcomers(self, job: _Job) -> None:
        """Add the instances deployed on the target version while the rollout ran.

        They got the module's version of the moment, which a revert takes back: without
        this they would stay on a version the module no longer names. Called once the
        module's version is back, so an instance deployed from now on gets the old one.
        """
        since = datetime.datetime.fromtimestamp(job.model.started_at, datetime.UTC)
        known = {i.instance_id for i in job.items}
        for instance in self.master.orchestrator.list_instances(module_id=job.model.module_id):
            if (
                instance.id in known
                or instance.desired_version != job.model.to_version
                or instance.created_at is None
                or instance.created_at < since
            ):
                continue
            job.items.append(
                RolloutItem(
                    instance_id=instance.id,
                    node_id=instance.node_id,
                    from_version=job.model.from_version,
                    state=T.DONE,
                    note=f"deployed on {job.model.to_version} during the rollout",
                )
            )
            self._held[instance.id] = job.id

    async def _move_back(self, job: _Job, instance_id: str) -> Verify | None:
        item = job.item(instance_id)
        if job.stop.is_set():
            return None
        deadline = time.monotonic() + job.strategy.healthy_deadline
        self._set(job, instance_id, state=T.REVERTING, started_at=time.time())
        try:
            if self.master.orchestrator.fleet.connection(item.node_id) is None:
                raise _Offline
            await self._until_stopped(
                job, self._switch(instance_id, item.from_version, job.strategy.healthy_deadline)
            )
            await self._until_stopped(
                job, self._verify(job, instance_id, item.from_version, deadline)
            )
        except _Offline:
            self._set(job, instance_id, state=T.REVERTED, note="node offline: moved on its return")
            return None
        except _Stopped:
            self._set(job, instance_id, state=T.ABORTED, note="revert aborted")
            return None
        except GdosError as exc:
            self._set(
                job,
                instance_id,
                state=T.FAILED,
                finished_at=time.time(),
                error=f"revert to {item.from_version} failed: {exc.message}",
            )
            return None
        self._set(job, instance_id, state=T.REVERTED, finished_at=time.time())
        return None

    def _close(self, job: _Job) -> None:
        """The end state, from what happened."""
        orchestrator = self.master.orchestrator
        if job.state != RS.REVERTING:
            for item in job.items:
                if item.state != T.PENDING:
                    continue
                if job.stop_reason and item.started_at is None:
                    self._set(job, item.instance_id, state=T.SKIPPED)
                else:  # handed to the reconcile: it moves when its node returns
                    orchestrator.set_desired_version(item.instance_id, job.model.to_version)
                    self._pending[item.instance_id] = job.id
        if not job.stop_reason:
            job.state = RS.DONE
            return
        job.error = job.stop_reason
        if job.state != RS.REVERTING:
            job.state = RS.ABORTED if job.aborted else RS.FAILED
            return
        unreverted = [i for i in job.items if i.error.startswith("revert")]
        if job.revert_aborted:
            job.state = RS.ABORTED
            job.error += "; the revert was aborted"
        elif unreverted:
            job.state = RS.FAILED
            job.error += f"; the revert failed for {len(unreverted)} instance(s)"
        else:
            job.state = RS.REVERTED
            job.error += f"; reverted to {job.model.from_version}"

    def _finish(self, job: _Job) -> None:
        if not job.state.ended:
            job.state = RS.FAILED
            job.error = job.error or "internal error: the rollout ended unexpectedly"
        job.finished_at = time.time()
        for item in job.items:
            if self._held.get(item.instance_id) == job.id:
                del self._held[item.instance_id]
        job.done.set()
        with self.master.db.transaction():
            self._save(job)
            self._audit_done(job)
        log.info("rollout %s %s %s", job.id, job.state.value, job.error)
        self._trim()

    def _audit_done(self, job: _Job) -> None:
        model = job.snapshot()
        record_audit(
            self.master.db,
            principal=job.principal,
            ip=job.ip,
            action="rollout.done",
            target=f"module:{model.module_id}",
            params={
                "rollout": model.id,
                "from": model.from_version,
                "to": model.to_version,
                "state": model.state.value,
                "instances": len(model.items),
                "failed": {i.instance_id: i.error for i in model.items if i.error},
                "pending": [i.instance_id for i in model.items if i.state == T.PENDING],
            },
            status=200 if model.state == RS.DONE else 500,
            message=model.error,
            **({} if job.principal is not None else {"actor_kind": "system", "actor": "master"}),
        )

    # --- worker reports -----------------------------------------------------------------------

    def _on_status(self, node_id: str, status: InstanceStatus) -> None:
        """Show the step a moving instance is at; record a pending one catching up."""
        job_id = self._held.get(status.instance_id)
        if job_id is not None:
            job = self.jobs.get(job_id)
            if job is None:
                return
            item = job.item(status.instance_id)
            target = job.model.to_version if job.state != RS.REVERTING else item.from_version
            step = step_for(item.state, status, target)
            if step != item.state:
                self._set(job, status.instance_id, state=step)
            return
        job_id = self._pending.get(status.instance_id)
        job = self.jobs.get(job_id) if job_id else None
        if job is not None and status.version == job.model.to_version:
            del self._pending[status.instance_id]
            self._set(
                job,
                status.instance_id,
                state=T.DONE,
                finished_at=time.time(),
                note="moved when its node returned",
            )

    # --- reading ------------------------------------------------------------------------------

    def get(self, rollout_id: str) -> Rollout:
        """A rollout, live if this master runs it, else as stored.

        Raises:
            NotFoundError: no such rollout (or it is older than the last ``KEEP_STORED``).
        """
        job = self.jobs.get(rollout_id)
        if job is not None:
            return job.snapshot()
        row = self.master.db.one("SELECT rollout FROM rollouts WHERE id = ?", (rollout_id,))
        if row is None:
            raise NotFoundError(
                f"no rollout {rollout_id!r} (the master keeps the last {self.keep_stored})"
            )
        return _load(row["rollout"])

    def list_rollouts(
        self, *, module_id: str | None = None, system_id: str | None = None
    ) -> list[Rollout]:
        """Rollouts, newest first, running ones as they stand now."""
        where, args = [], []
        for column, value in (("module_id", module_id), ("system_id", system_id)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self.master.db.all(
            f"SELECT id, rollout FROM rollouts{clause} ORDER BY started_at DESC",  # noqa: S608
            args,
        )
        found = []
        for row in rows:
            live = self.jobs.get(row["id"])
            found.append(live.snapshot() if live is not None else _load(row["rollout"]))
        return found

    async def wait(self, rollout_id: str, timeout: float, after: int | None = None) -> Rollout:
        """The rollout once its revision is past ``after`` (None: once it ended), or after
        ``timeout`` seconds as it stands."""
        job = self.jobs.get(rollout_id)
        if job is None:
            return self.get(rollout_id)
        deadline = time.monotonic() + timeout
        while not job.done.is_set() and (after is None or job.revision <= after):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(job.changed.wait()), left)
        return job.snapshot()

    def topic(self, name: str, rollout_id: str) -> RolloutTopic:
        job = self.jobs.get(rollout_id)
        if job is not None:
            return RolloutTopic(name, job.snapshot)
        # Run by another master (or ended): read again whenever the database changed,
        # which another master's writes signal over the bus (gdos_master.mesh).
        db = self.master.db
        stored = [db.changes, self.get(rollout_id)]

        def current() -> Any:
            if stored[0] != db.changes:
                stored[:] = [db.changes, self.get(rollout_id)]
            return stored[1]

        return RolloutTopic(name, current)


def _ignore_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an error here was the worker's, and is in its reports


def _load(text: str) -> Rollout:
    return structure(json.loads(text), Rollout, what="stored rollout")


class RolloutTopic(Topic):
    """Live topic ``rollout:<id>``: the whole :class:`~gdos_sdk.rollouts.Rollout` on each change."""

    def __init__(self, name: str, rollout: Callable[[], Rollout]) -> None:
        super().__init__(name)
        self.rollout = rollout
        self.revision = -1
        self.last: Any = None

    def poll(self, view: View) -> Any | None:
        model = self.rollout()
        if model.revision == self.revision:
            return None
        self.revision = model.revision
        self.last = unstructure(model)
        return self.last

    def snapshot(self) -> Any:
        model = self.rollout()
        self.revision, self.last = model.revision, unstructure(model)
        return {"snapshot": True, **self.last}
