"""Ordered batch actions on a system: tiers by start order, a concurrency limit, progress.

A running job lives in memory and is pushed to browsers on the live topic
``batch:<id>``; its progress is also written to the ``batch_jobs`` table
whenever a tier or an instance moves on, and the last :data:`KEEP_STORED`
jobs stay readable there. A job that a master restart cut short is found
``running`` in that table at the next start and closed as ``failed`` with
the reason (what it had done is kept; what it had not begun is ``skipped``).
The audit trail has the request (``system.batch``, written by the route) and
``batch.done`` with each failed instance when the job ends, also after such
an interruption.

* **start**: tiers by ascending ``start_order``; each instance is started
  (at most ``concurrency`` at once) and then awaited until it is ``running``
  and, if it has a health check and ``wait_healthy`` is set, ``healthy``.
  Without a health check it must then stay running with one pid for
  ``min_running`` seconds; that check frees its slot first, so the next
  instance starts meanwhile (:mod:`gdos_master.scheduler`). The next tier
  begins only when the whole tier made it; a failure (an instance ``failed``,
  an offline node, the ``tier_timeout``, a crash within ``min_running``)
  fails the job and the later tiers are ``skipped``.
* **stop**: the same tiers in reverse; a failure is recorded but the stop
  goes on, so as much as possible is stopped.

Example::

    job = master.batches.start(system_id, BatchRequest(action="start"), principal)
    job = await master.batches.wait(job.id, timeout=60)
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from gdos_master.audit import record_audit
from gdos_master.auth import Principal
from gdos_master.live import Topic, View
from gdos_master.scheduler import Scheduler, Unit, Verify
from gdos_sdk.batches import BatchItem, BatchJob, BatchRequest, BatchState, BatchTier
from gdos_sdk.codec import structure, unstructure
from gdos_sdk.errors import GdosError, NotFoundError
from gdos_sdk.models import Instance
from gdos_sdk.states import Health, InstanceState

if TYPE_CHECKING:
    from gdos_master.app import Master

__all__ = ["KEEP", "KEEP_STORED", "BatchRuns", "BatchTopic"]

KEEP = 50  # jobs kept in memory (running ones always)
KEEP_STORED = 500  # jobs kept in the database
INTERRUPTED = "interrupted: the master restarted while the batch ran"
# The error of a job the leader closes because the master running it died.
ORPHANED = "interrupted: master {master} stopped answering while the batch ran"
POLL = 0.2  # seconds between looks at an instance the batch waits for

B = BatchState
S = InstanceState


@attrs.define
class _Item:
    instance_id: str
    module_id: str
    module: str
    node_id: str
    order: int
    state: BatchState = B.PENDING
    started_at: float | None = None
    finished_at: float | None = None
    instance_state: InstanceState | None = None
    health: Health | None = None
    error: str = ""

    def model(self) -> BatchItem:
        return BatchItem(**attrs.asdict(self, recurse=False))


@attrs.define
class _Tier:
    order: int
    modules: list[str]
    items: list[_Item]
    state: BatchState = B.PENDING
    started_at: float | None = None
    finished_at: float | None = None

    def model(self) -> BatchTier:
        return BatchTier(
            order=self.order,
            modules=list(self.modules),
            state=self.state,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )


@attrs.define
class _Job:
    id: str
    system_id: str
    request: BatchRequest
    principal: Principal
    ip: str
    started_at: float
    tiers: list[_Tier]
    state: BatchState = B.RUNNING
    finished_at: float | None = None
    error: str = ""
    done: asyncio.Event = attrs.field(factory=asyncio.Event)

    def model(self) -> BatchJob:
        return BatchJob(
            id=self.id,
            system_id=self.system_id,
            action=self.request.action,
            user=self.principal.label,
            concurrency=self.request.concurrency,
            wait_healthy=self.request.wait_healthy,
            tier_timeout=self.request.tier_timeout,
            min_running=self.request.min_running,
            state=self.state,
            started_at=self.started_at,
            finished_at=self.finished_at,
            error=self.error,
            tiers=[t.model() for t in self.tiers],
            items=[i.model() for t in self.tiers for i in t.items],
        )


class BatchRuns:
    """The recent batch jobs of this master."""

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

    # --- the batch_jobs table ---------------------------------------------------------------

    def _save(self, job: _Job) -> None:
        model = job.model()
        self.master.db.execute(
            "INSERT INTO batch_jobs(id, system_id, state, started_at, job, master_id)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET system_id = excluded.system_id,"
            " state = excluded.state, started_at = excluded.started_at, job = excluded.job,"
            " master_id = excluded.master_id",
            (
                job.id,
                job.system_id,
                model.state.value,
                job.started_at,
                json.dumps(unstructure(model)),
                self.master.cluster.master_id,
            ),
        )

    def _stored(self, job_id: str) -> BatchJob | None:
        row = self.master.db.one("SELECT job FROM batch_jobs WHERE id = ?", (job_id,))
        return None if row is None else _load(row["job"])

    def recover_orphans(self) -> int:
        """Close the running jobs of masters that are gone (several masters: the leader).

        A job runs on the master that started it; when that master's own lease ran out
        (it died), the job is closed as :meth:`recover` closes it. Jobs of live masters are
        left alone.
        """
        return self.recover(alive=self.master.cluster.live_masters())

    def recover(self, alive: set[str] | None = None, owner: str | None = None) -> int:
        """Close the jobs a master restart (or a restored backup) left ``running``.

        Each becomes ``failed`` with :data:`INTERRUPTED` as its error (:data:`ORPHANED`,
        naming the dead master, for a job closed by :meth:`recover_orphans`): an instance that
        was being acted on is ``failed`` too, and what had not begun is ``skipped``.
        Returns how many jobs were closed; each gets its ``batch.done`` audit entry.
        ``alive``: the live masters, whose jobs are left alone (:meth:`recover_orphans`);
        ``owner``: close only the jobs of that master (one restarted with its own id).

        The rows are claimed in one transaction that locks them (``FOR UPDATE SKIP
        LOCKED`` on PostgreSQL), so masters recovering at once on one database never close
        a job twice.
        """
        db = self.master.db
        closed = 0
        with db.transaction():
            lock = db.for_update_skip_locked
            rows = db.all(
                f"SELECT id, job, master_id FROM batch_jobs WHERE state = 'running'{lock}"  # noqa: S608
            )
            for row in rows:
                if row["id"] in self.jobs:  # running in this process (a restore just now)
                    continue
                if alive is not None and row["master_id"] in alive:  # its master is alive
                    continue
                if owner is not None and row["master_id"] != owner:
                    continue
                reason = INTERRUPTED if alive is None else ORPHANED.format(master=row["master_id"])
                job = _interrupted(_load(row["job"]), time.time(), reason)
                db.execute(
                    "UPDATE batch_jobs SET state = ?, job = ? WHERE id = ?",
                    (job.state.value, _dump(job), job.id),
                )
                self._audit_done(job, None, "", actor_kind="system", actor="master")
                closed += 1
        return closed

    # --- planning ---------------------------------------------------------------------------

    def _plan(self, system_id: str, action: str) -> list[_Tier]:
        """The system's instances grouped by their module's start order, in action order."""
        modules = {m.id: m for m in self.master.systems.list_modules(system_id)}
        tiers: dict[int, _Tier] = {}
        for instance in self.master.orchestrator.list_instances(system_id=system_id):
            module = modules.get(instance.module_id)
            if module is None:
                continue
            tier = tiers.setdefault(module.start_order, _Tier(module.start_order, [], []))
            if module.name not in tier.modules:
                tier.modules.append(module.name)
            tier.items.append(
                _Item(
                    instance_id=instance.id,
                    module_id=module.id,
                    module=module.name,
                    node_id=instance.node_id,
                    order=module.start_order,
                    instance_state=instance.state,
                    health=instance.health,
                )
            )
        return sorted(tiers.values(), key=lambda t: t.order, reverse=action == "stop")

    def start(
        self, system_id: str, request: BatchRequest, principal: Principal, ip: str = ""
    ) -> BatchJob:
        """Plan the job and run it in the background; return it at once.

        Raises:
            NotFoundError: no such system.
        """
        self.master.systems.get_system(system_id)
        job = _Job(
            id=uuid.uuid4().hex,
            system_id=system_id,
            request=request,
            principal=principal,
            ip=ip,
            started_at=time.time(),
            tiers=self._plan(system_id, request.action),
        )
        self.jobs[job.id] = job
        ended = [j.id for j in self.jobs.values() if j.done.is_set()]
        for old in ended[: max(0, len(self.jobs) - self.keep)]:
            del self.jobs[old]  # still readable from the database
        with self.master.db.transaction():
            self._save(job)
            self.master.db.execute(
                "DELETE FROM batch_jobs WHERE id NOT IN"
                " (SELECT id FROM batch_jobs ORDER BY started_at DESC LIMIT ?)",
                (self.keep_stored,),
            )
        self.master.spawn(self._run(job))
        return job.model()

    # --- running ----------------------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        try:
            for tier in job.tiers:
                if job.state == B.FAILED and job.request.action == "start":
                    tier.state = B.SKIPPED
                    for item in tier.items:
                        item.state = B.SKIPPED
                    continue
                await self._tier(job, tier)
                self._save(job)
                if tier.state == B.FAILED:
                    job.state = B.FAILED
                    failed = [i for i in tier.items if i.state == B.FAILED]
                    job.error = job.error or (
                        f"tier {tier.order}: {failed[0].module}: {failed[0].error}"
                        if failed
                        else f"tier {tier.order} failed"
                    )
        except Exception as exc:  # a bug must still end the job, never leave it running
            job.state, job.error = B.FAILED, f"internal error: {exc!r}"
            raise
        finally:
            self._finish(job)

    async def _tier(self, job: _Job, tier: _Tier) -> None:
        tier.state, tier.started_at = B.RUNNING, time.time()
        deadline = time.monotonic() + job.request.tier_timeout
        scheduler = Scheduler(job.request.concurrency)
        await scheduler.run(
            Unit(item.instance_id, functools.partial(self._item, job, item, deadline))
            for item in tier.items
        )
        tier.finished_at = time.time()
        tier.state = B.FAILED if any(i.state == B.FAILED for i in tier.items) else B.DONE

    async def _item(self, job: _Job, item: _Item, deadline: float) -> Verify | None:
        """Act on one instance in a slot; return its ``min_running`` check, if it has one."""
        item.state, item.started_at = B.RUNNING, time.time()
        self._save(job)
        orchestrator = self.master.orchestrator
        try:
            act = orchestrator.start if job.request.action == "start" else orchestrator.stop
            instance, applied = await act(item.instance_id)
            item.instance_state, item.health = instance.state, instance.health
            if not applied:
                raise GdosError(
                    f"node is offline; the instance will {job.request.action} on return"
                )
            running_since = await self._reach(job, item, deadline)
        except GdosError as exc:
            self._settled(job, item, exc.message)
            return None
        if running_since is None:
            self._settled(job, item)
            return None
        return functools.partial(self._verify, job, item, deadline, *running_since)

    def _settled(self, job: _Job, item: _Item, error: str = "") -> None:
        item.state = B.FAILED if error else B.DONE
        item.error = error
        item.finished_at = time.time()
        self._save(job)

    def _observe(self, job: _Job, item: _Item) -> Instance:
        instance = self.master.orchestrator.get(item.instance_id)
        item.instance_state, item.health = instance.state, instance.health
        if job.request.action == "start" and instance.state in (S.FAILED, S.STOPPED):
            raise GdosError(f"instance is {instance.state.value}: {instance.reason}")
        return instance

    def _late(self, job: _Job, instance: Instance) -> GdosError:
        what = "stopped" if job.request.action == "stop" else "running and healthy"
        return GdosError(
            f"not {what} within {job.request.tier_timeout:g} s"
            f" (state {instance.state.value}, health {instance.health.value})"
        )

    async def _reach(
        self, job: _Job, item: _Item, deadline: float
    ) -> tuple[int | None, float] | None:
        """Wait (in the item's slot) until the instance got where the action sends it.

        A stop is reached at ``stopped``; a start at ``healthy`` when the job waits for the
        health check the instance has, else at ``running``: then the ``(pid, since)`` to
        check for ``min_running`` is returned (None: nothing left to check).
        """
        while True:
            instance = self._observe(job, item)
            if job.request.action == "stop":
                if instance.state in (S.STOPPED, S.FAILED):
                    return None
            elif instance.state == S.RUNNING:
                if job.request.wait_healthy and instance.health != Health.NONE:
                    if instance.health == Health.HEALTHY:
                        return None
                elif job.request.min_running <= 0:
                    return None
                else:
                    return instance.pid, time.monotonic()
            if time.monotonic() >= deadline:
                raise self._late(job, instance)
            await asyncio.sleep(self.poll)

    async def _verify(
        self, job: _Job, item: _Item, deadline: float, pid: int | None, since: float
    ) -> None:
        """``min_running``, slot-free: the same pid running that long (a restart resets it)."""
        try:
            while True:
                instance = self._observe(job, item)
                now = time.monotonic()
                if instance.state == S.RUNNING:
                    if instance.pid != pid:
                        pid, since = instance.pid, now
                    elif now - since >= job.request.min_running:
                        break
                if now >= deadline:
                    raise self._late(job, instance)
                due = since + job.request.min_running - now
                await asyncio.sleep(max(0.01, min(self.poll, due)))
        except GdosError as exc:
            self._settled(job, item, exc.message)
            return
        self._settled(job, item)

    def _finish(self, job: _Job) -> None:
        if job.state == B.RUNNING:
            job.state = B.DONE
        job.finished_at = time.time()
        job.done.set()
        with self.master.db.transaction():
            self._save(job)
            self._audit_done(job.model(), job.principal, job.ip)

    def _audit_done(
        self, job: BatchJob, principal: Principal | None, ip: str, **actor: str
    ) -> None:
        """The ``batch.done`` entry: the outcome, with each failed instance's error."""
        record_audit(
            self.master.db,
            principal=principal,
            ip=ip,
            action="batch.done",
            target=f"system:{job.system_id}",
            params={
                "batch": job.id,
                "action": job.action,
                "tiers": [t.order for t in job.tiers],
                "instances": len(job.items),
                "failed": {i.instance_id: i.error for i in job.items if i.state == B.FAILED},
            },
            status=200 if job.state == B.DONE else 500,
            message=job.error,
            **actor,
        )

    # --- reading ----------------------------------------------------------------------------

    def _missing(self, job_id: str) -> NotFoundError:
        return NotFoundError(f"no batch {job_id!r} (the master keeps the last {self.keep_stored})")

    def get(self, job_id: str) -> BatchJob:
        """A job: live if this master runs it, else as stored.

        Raises:
            NotFoundError: no such job (or it is older than the last :data:`KEEP_STORED`).
        """
        job = self.jobs.get(job_id)
        if job is not None:
            return job.model()
        stored = self._stored(job_id)
        if stored is None:
            raise self._missing(job_id)
        return stored

    def list_jobs(self, system_id: str | None = None) -> list[BatchJob]:
        """Recent jobs, newest first (running ones as they stand now)."""
        if system_id is None:
            rows = self.master.db.all("SELECT job FROM batch_jobs ORDER BY started_at DESC")
        else:
            rows = self.master.db.all(
                "SELECT job FROM batch_jobs WHERE system_id = ? ORDER BY started_at DESC",
                (system_id,),
            )
        found = []
        for row in rows:
            stored = _load(row["job"])
            live = self.jobs.get(stored.id)
            found.append(live.model() if live is not None else stored)
        return found

    async def wait(self, job_id: str, timeout: float | None) -> BatchJob:
        """The job once it ended, or as it stands after ``timeout`` seconds (None: no limit)."""
        job = self.jobs.get(job_id)
        if job is None:
            return self.get(job_id)  # not run by this process: it has ended
        if not job.done.is_set() and (timeout is None or timeout > 0):
            try:
                await asyncio.wait_for(asyncio.shield(job.done.wait()), timeout)
            except TimeoutError:
                pass
        return job.model()

    def topic(self, name: str, job_id: str) -> BatchTopic:
        job = self.jobs.get(job_id)
        if job is not None:
            return BatchTopic(name, job.model)
        # Run by another master (or ended): read again whenever the database changed,
        # which another master's writes signal over the bus (gdos_master.mesh).
        db = self.master.db
        stored = [db.changes, self.get(job_id)]

        def current() -> Any:
            if stored[0] != db.changes:
                stored[:] = [db.changes, self.get(job_id)]
            return stored[1]

        return BatchTopic(name, current)


def _dump(job: BatchJob) -> str:
    return json.dumps(unstructure(job), separators=(",", ":"))


def _load(text: str) -> BatchJob:
    return structure(json.loads(text), BatchJob, what="stored batch job")


def _interrupted(job: BatchJob, now: float, reason: str = INTERRUPTED) -> BatchJob:
    """``job`` closed as cut short at ``now`` for ``reason``: see :meth:`BatchRuns.recover`."""

    def close(step: Any) -> Any:  # a BatchItem or a BatchTier
        if step.state == B.RUNNING:
            extra = {"error": step.error or reason} if isinstance(step, BatchItem) else {}
            return attrs.evolve(step, state=B.FAILED, finished_at=now, **extra)
        if step.state == B.PENDING:
            return attrs.evolve(step, state=B.SKIPPED)
        return step

    return attrs.evolve(
        job,
        state=B.FAILED,
        finished_at=now,
        error=job.error or reason,
        tiers=[close(t) for t in job.tiers],
        items=[close(i) for i in job.items],
    )


class BatchTopic(Topic):
    """Live topic ``batch:<id>``: the whole :class:`~gdos_sdk.batches.BatchJob` on each change."""

    def __init__(self, name: str, job: Callable[[], BatchJob]) -> None:
        super().__init__(name)
        self.job = job
        self.last: Any = None

    def poll(self, view: View) -> Any | None:
        data = unstructure(self.job())
        if data == self.last:
            return None
        self.last = data
        return data

    def snapshot(self) -> Any:
        self.last = unstructure(self.job())
        return {"snapshot": True, **self.last}
