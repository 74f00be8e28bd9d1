"""Rollouts in process: scripted workers that keep each instance's version, like real ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from quart import Quart

from gdos_master.app import Master
from gdos_master.prometheus import render_prometheus
from gdos_master.rollouts import Rollouts
from gdos_sdk import (
    AdoptionSpec,
    AdoptionStrategy,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from gdos_sdk.client import AsyncClient
from gdos_sdk.protocol import (
    Command,
    DeployCommand,
    InstanceSpec,
    InstanceStatus,
    Response,
    UpgradeCommand,
)
from gdos_sdk.rollouts import Rollout, RolloutState, StepState
from gdos_sdk.states import DesiredState, Health, InstanceState

from .scripted import ScriptedWorker, join

pytestmark = pytest.mark.anyio

RS = RolloutState
T = StepState


class Workers:
    """Scripted workers answering like real ones: an upgrade switches the version.

    An upgrade is answered after ``delay`` seconds; a version in ``crashing`` "crashes"
    ``crash_after`` seconds after it starts (a ``backoff`` report). ``moving`` counts the
    upgrades under way and ``most`` the most at once. ``health`` gives a version's health
    check result (none by default). Like a real worker, the upgrades of one instance run
    one after the other, in the order they were sent.
    """

    def __init__(self, master: Master, count: int = 2) -> None:
        self.master = master
        self.nodes = [join(master) for _ in range(count)]
        self.workers = {n: ScriptedWorker(master, n) for n in self.nodes}
        for worker in self.workers.values():
            worker.answer = self._answerer(worker)
        self.versions: dict[str, str] = {}
        self.delay = 0.05
        self.crashing: set[str] = set()
        self.crash_after = 0.15
        self.health: dict[str, Health] = {}
        self.hold: asyncio.Event | None = None  # set: upgrades wait for it
        self.moving = 0
        self.most = 0
        self.upgrades: list[tuple[str, str]] = []  # (instance id, version) as asked
        self._asked = asyncio.Event()
        self._queues: dict[str, asyncio.Lock] = {}  # per instance; asyncio.Lock is FIFO

    async def asked(self, count: int, timeout: float = 5) -> None:
        """Return once ``count`` upgrades were asked for in all."""
        async with asyncio.timeout(timeout):
            while len(self.upgrades) < count:
                self._asked.clear()
                await self._asked.wait()

    async def connect(self, *nodes: str) -> None:
        for node in nodes or self.nodes:
            await self.workers[node].connect()

    def status(
        self, instance_id: str, state: InstanceState = InstanceState.RUNNING, pid: int = 100
    ) -> InstanceStatus:
        running = state == InstanceState.RUNNING
        return InstanceStatus(
            instance_id=instance_id,
            desired_state=DesiredState.RUNNING,
            state=state,
            health=self.health.get(self.versions[instance_id], Health.NONE),
            pid=pid if running else None,
            started_at=time.time() if running else None,
            reason=state.value,
            package="demo",
            version=self.versions[instance_id],
        )

    def _answerer(self, worker: ScriptedWorker) -> Callable[[Command], Response | None]:
        def answer(command: Command) -> Response | None:
            if isinstance(command, DeployCommand):
                self.versions[command.spec.instance_id] = command.spec.version
                return Response(id="", ok=True, result=self.status(command.spec.instance_id))
            if isinstance(command, UpgradeCommand):
                request_id = worker.received[-1].id
                queue = self._queues.setdefault(command.spec.instance_id, asyncio.Lock())
                asyncio.get_running_loop().create_task(
                    self._upgrade(worker, request_id, command, queue)
                )
                return None
            instance_id = getattr(command, "instance_id", "")
            return Response(id="", ok=True, result=self.status(instance_id))

        return answer

    async def _upgrade(
        self, worker: ScriptedWorker, request_id: str, cmd: UpgradeCommand, queue: asyncio.Lock
    ) -> None:
        spec = cmd.spec
        self.upgrades.append((spec.instance_id, spec.version))
        self._asked.set()
        async with queue:
            await self._switch(worker, request_id, spec)

    async def _switch(self, worker: ScriptedWorker, request_id: str, spec: InstanceSpec) -> None:
        self.moving += 1
        self.most = max(self.most, self.moving)
        try:
            if self.hold is not None:
                await self.hold.wait()
            report = self.master.orchestrator.report
            report(worker.node_id, self.status(spec.instance_id, InstanceState.STOPPING))
            await asyncio.sleep(self.delay)
            self.versions[spec.instance_id] = spec.version
            pid = 200 + len(self.upgrades)
            worker.conn.resolve(
                Response(id=request_id, ok=True, result=self.status(spec.instance_id, pid=pid))
            )
            if spec.version in self.crashing:
                await asyncio.sleep(self.crash_after)
                if self.versions[spec.instance_id] == spec.version:
                    report(worker.node_id, self.status(spec.instance_id, InstanceState.BACKOFF))
        finally:
            self.moving -= 1


async def setup(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes], per_node: int = 2
) -> tuple[Workers, str, list[str]]:
    """Versions 1.0.0, 2.0.0 and 3.0.0 of demo; a module on 1.0.0 with instances on 2 nodes."""
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        await admin.upload_package(make_zip(version=version))
    workers = Workers(master)
    await workers.connect()
    system = await admin.create_system("shop")
    module = await admin.create_module(system.id, "api", "demo", "1.0.0")
    ids = []
    for _ in range(per_node):
        for node in workers.nodes:
            ids.append((await admin.deploy(module.id, node, wait="started")).id)
    return workers, module.id, ids


async def until(
    admin: AsyncClient, rollout_id: str, ok: Callable[[Rollout], bool], timeout: float = 10
) -> Rollout:
    """The rollout once ``ok`` holds for it, read at each change (a long poll on its
    revision: this in-process app has no live socket for ``follow_rollout``)."""
    async with asyncio.timeout(timeout):
        job = await admin.get_rollout(rollout_id)
        while not ok(job):
            if job.state.ended:
                raise AssertionError(f"rollout {rollout_id} ended before the condition held: {job}")
            job = await admin.get_rollout(rollout_id, wait=5, after=job.revision)
        return job


def states(job: Rollout) -> set[StepState]:
    return {i.state for i in job.items}


async def ended(admin: AsyncClient, rollout: Rollout, timeout: float = 20) -> Rollout:
    job = await admin.get_rollout(rollout.id, wait=int(timeout))
    assert job.state.ended, job
    return job


async def test_a_rollout_moves_every_instance_in_place_at_most_max_parallel_at_once(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    workers, module_id, ids = await setup(admin, master, make_zip, per_node=3)
    job = await admin.rollout(
        module_id, "2.0.0", max_parallel=2, wait="stable", min_healthy_time=0.2
    )
    assert job.state == RS.RUNNING and (job.from_version, job.to_version) == ("1.0.0", "2.0.0")
    # Spread over the nodes: the first two to move are on different machines.
    assert job.items[0].node_id != job.items[1].node_id
    assert (await admin.get_module(module_id)).version == "2.0.0"  # new instances get it
    job = await ended(admin, job)
    assert job.state == RS.DONE, job
    assert [i.state for i in job.items] == [T.DONE] * 6
    assert workers.most == 2  # never more than max_parallel being moved
    instances = await admin.list_instances(module_id=module_id)
    assert sorted(i.id for i in instances) == sorted(ids)  # the same instances, moved
    assert {(i.version, i.desired_version) for i in instances} == {("2.0.0", "2.0.0")}
    assert sorted(i for i, _ in workers.upgrades) == sorted(ids)
    # Its version is in the Prometheus labels too.
    labels = [line for line in render_prometheus(master).splitlines() if ids[0] in line]
    assert labels and all('version="2.0.0"' in line for line in labels)

    assert [r.id for r in await admin.list_rollouts(module_id=module_id)] == [job.id]
    audit = (await admin.list_audit(limit=50)).items
    assert any(e.action == "module.rollout" and e.params["rollout"] == job.id for e in audit)
    done = [e for e in audit if e.action == "rollout.done"]
    assert len(done) == 1 and done[0].result == "ok" and done[0].params["to"] == "2.0.0"

    # Rollback: the version before, in place again.
    back = await ended(admin, await admin.rollback(module_id, wait="running"))
    assert back.kind == "rollback" and back.to_version == "1.0.0" and back.state == RS.DONE
    instances = await admin.list_instances(module_id=module_id)
    assert {i.version for i in instances} == {"1.0.0"}
    # An instance already on the version is not moved (a rollout to where it is).
    same = await ended(admin, await admin.rollout(module_id, "1.0.0"))
    assert same.items == [] and same.unchanged == 6 and same.state == RS.DONE

    # A rollback may name any stored version (not the current one, not one never uploaded).
    with pytest.raises(ConflictError, match=r"already has version 1\.0\.0"):
        await admin.rollback(module_id, version="1.0.0")
    with pytest.raises(ValidationError, match=r"9\.9\.9"):
        await admin.rollback(module_id, version="9.9.9")
    named = await ended(admin, await admin.rollback(module_id, version="3.0.0", wait="running"))
    assert (named.kind, named.state, named.to_version) == ("rollback", RS.DONE, "3.0.0")
    assert {i.version for i in await admin.list_instances(module_id=module_id)} == {"3.0.0"}
    # Back from there is where that came from (1.0.0), not the highest version below (2.0.0).
    back = await ended(admin, await admin.rollback(module_id, wait="running"))
    assert (back.from_version, back.to_version, back.state) == ("3.0.0", "1.0.0", RS.DONE)


async def test_a_crashing_version_stops_at_the_first_batch_and_is_reverted(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    workers, module_id, _ = await setup(admin, master, make_zip, per_node=3)
    workers.crashing = {"2.0.0"}
    job = await admin.rollout(
        module_id, "2.0.0", max_parallel=2, min_healthy_time=1, auto_revert=True
    )
    job = await ended(admin, job)
    assert job.state == RS.REVERTED, job
    assert "crashed on 2.0.0" in job.error and job.error.endswith("reverted to 1.0.0")
    states = [i.state for i in job.items]
    assert states[:2] == [T.REVERTED, T.REVERTED] and states[2:] == [T.SKIPPED] * 4
    assert [v for _, v in workers.upgrades].count("2.0.0") == 2  # only the first batch
    instances = await admin.list_instances(module_id=module_id)
    assert {(i.version, i.desired_version) for i in instances} == {("1.0.0", "1.0.0")}
    assert (await admin.get_module(module_id)).version == "1.0.0"
    done = [e for e in (await admin.list_audit(limit=50)).items if e.action == "rollout.done"]
    assert done[0].result == "error" and "reverted" in done[0].message

    # Without auto_revert the rollout fails and leaves what it moved.
    failed = await ended(admin, await admin.rollout(module_id, "2.0.0", min_healthy_time=1))
    assert failed.state == RS.FAILED and failed.items[0].state == T.FAILED
    assert "crashed on 2.0.0" in failed.items[0].error
    assert (await admin.get_module(module_id)).version == "2.0.0"
    first = await admin.get_instance(failed.items[0].instance_id)
    assert first.version == "2.0.0"


async def test_wait_healthy_follows_the_check_within_healthy_deadline(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    workers, module_id, _ = await setup(admin, master, make_zip, per_node=1)
    # A check that never passes: the instance fails at healthy_deadline, saying what it
    # waited for, and auto_revert brings it back.
    workers.health = {"2.0.0": Health.STARTING}
    job = await admin.rollout(
        module_id,
        "2.0.0",
        wait="healthy",
        min_healthy_time=0.1,
        healthy_deadline=0.6,
        auto_revert=True,
    )
    job = await ended(admin, job)
    assert job.state == RS.REVERTED, job
    first = job.items[0]
    assert job.error == (
        f"instance {first.instance_id} on node {first.node_id}: not healthy on 2.0.0 within"
        " healthy_deadline 0.6 s: waited for its health check to pass; reverted to 1.0.0"
    ), job.error
    assert [i.state for i in job.items] == [T.REVERTED, T.SKIPPED]
    assert {i.version for i in await admin.list_instances(module_id=module_id)} == {"1.0.0"}

    # An unhealthy check fails it at once (well before the deadline).
    workers.health = {"2.0.0": Health.UNHEALTHY}
    started = time.monotonic()
    failed = await ended(
        admin, await admin.rollout(module_id, "2.0.0", wait="healthy", healthy_deadline=30)
    )
    assert time.monotonic() - started < 10
    assert failed.state == RS.FAILED and failed.items[0].state == T.FAILED
    assert failed.items[0].error.startswith("unhealthy on 2.0.0"), failed.items[0].error

    # A passing check, held for min_healthy_time: done.
    workers.health = {"3.0.0": Health.HEALTHY}
    job = await admin.rollout(module_id, "3.0.0", wait="healthy", min_healthy_time=0.2)
    job = await ended(admin, job)
    assert job.state == RS.DONE and [i.state for i in job.items] == [T.DONE, T.DONE], job


async def test_progress_deadline_stops_a_rollout_that_does_not_advance(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    workers, module_id, _ = await setup(admin, master, make_zip)
    workers.hold = asyncio.Event()  # the first upgrade never finishes while it is held
    job = await admin.rollout(
        module_id, "2.0.0", wait="running", progress_deadline=0.5, auto_revert=True
    )
    job = await until(admin, job.id, lambda j: j.state == RS.REVERTING)
    assert job.error == "no instance finished within progress_deadline 0.5 s", job.error
    workers.hold.set()  # the worker goes on: the upgrade under way, then the revert
    job = await ended(admin, job)
    assert job.state == RS.REVERTED, job
    assert job.error.endswith("; reverted to 1.0.0")
    assert [i.state for i in job.items] == [T.REVERTED] + [T.SKIPPED] * 3
    instances = await admin.list_instances(module_id=module_id)
    assert {(i.version, i.desired_version) for i in instances} == {("1.0.0", "1.0.0")}
    assert (await admin.get_module(module_id)).version == "1.0.0"


async def test_canaries_wait_for_promotion(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    _, module_id, _ = await setup(admin, master, make_zip)
    job = await admin.rollout(module_id, "2.0.0", canary=1, max_parallel=2, wait="running")
    job = await until(admin, job.id, lambda j: j.state == RS.AWAITING_PROMOTION)
    assert [i.state for i in job.items] == [T.DONE, T.WAITING, T.WAITING, T.WAITING]
    assert job.items[0].canary and not job.items[1].canary
    await asyncio.sleep(0.3)
    assert (await admin.get_rollout(job.id)).state == RS.AWAITING_PROMOTION  # it waits
    with pytest.raises(ConflictError, match="awaiting_promotion"):
        await admin.pause(job.id)
    await admin.promote(job.id)
    job = await ended(admin, job)
    assert job.state == RS.DONE and job.promoted_at is not None
    with pytest.raises(ConflictError, match="has ended"):
        await admin.promote(job.id)

    # auto_promote_after: it goes on by itself.
    job = await admin.rollout(module_id, "3.0.0", canary=2, auto_promote_after=0.2, wait="running")
    job = await ended(admin, job)
    assert job.state == RS.DONE and job.promoted_at is not None


async def test_pause_resume_and_abort_with_revert(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    workers, module_id, _ = await setup(admin, master, make_zip)
    workers.hold = asyncio.Event()
    job = await admin.rollout(module_id, "2.0.0", wait="running")
    await workers.asked(1)
    paused = await admin.pause(job.id)
    assert paused.state == RS.PAUSED
    with pytest.raises(ConflictError, match="only a running rollout"):
        await admin.pause(job.id)
    workers.hold.set()  # the one under way finishes; no further one begins
    await asyncio.sleep(0.4)
    job = await admin.get_rollout(job.id)
    assert [i.state for i in job.items] == [T.DONE, T.WAITING, T.WAITING, T.WAITING]
    assert len(workers.upgrades) == 1
    assert (await admin.resume(job.id)).state == RS.RUNNING
    await workers.asked(2)
    aborted = await admin.abort(job.id, revert=True)
    assert "aborted by admin" in aborted.error
    job = await ended(admin, job)
    assert job.state == RS.REVERTED, job
    moved = [i for i in job.items if i.state == T.REVERTED]
    assert len(moved) == 2 and {i.state for i in job.items[2:]} == {T.SKIPPED}
    instances = await admin.list_instances(module_id=module_id)
    assert {i.version for i in instances} == {"1.0.0"}
    aborts = [e for e in (await admin.list_audit(limit=50)).items if e.action == "rollout.abort"]
    assert aborts and aborts[0].target == f"rollout:{job.id}"

    # An instance deployed while a rollout runs gets the new version; a revert takes it
    # back too, so nothing is left on a version the module no longer names.
    workers.hold = asyncio.Event()
    job = await admin.rollout(module_id, "2.0.0", wait="running")
    await workers.asked(3)
    newcomer = await admin.deploy(module_id, workers.nodes[0], wait="started")
    assert newcomer.version == "2.0.0"
    await admin.abort(job.id, revert=True)
    workers.hold.set()
    job = await ended(admin, job)
    assert job.state == RS.REVERTED, job
    [added] = [i for i in job.items if i.instance_id == newcomer.id]
    assert added.state == T.REVERTED and added.from_version == "1.0.0"
    assert "deployed on 2.0.0 during the rollout" in added.note
    instances = await admin.list_instances(module_id=module_id)
    assert len(instances) == 5
    assert {(i.version, i.desired_version) for i in instances} == {("1.0.0", "1.0.0")}

    # Abort without revert: what moved stays, the module keeps the new version.
    job = await admin.rollout(module_id, "2.0.0", wait="running")
    await until(admin, job.id, lambda j: j.items[0].state == T.DONE)
    await admin.pause(job.id)
    job = await ended(admin, await admin.abort(job.id))
    assert job.state == RS.ABORTED and job.items[0].state == T.DONE
    assert (await admin.get_module(module_id)).version == "2.0.0"


async def test_an_offline_node_is_pending_then_caught_up(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    workers, module_id, _ = await setup(admin, master, make_zip)
    away = workers.nodes[1]
    await master.fleet.disconnect(workers.workers[away].conn)
    job = await admin.rollout(module_id, "2.0.0", wait="running", progress_deadline=60)
    job = await until(admin, job.id, lambda j: states(j) == {T.DONE, T.PENDING})
    assert job.state == RS.RUNNING  # it waits for the node, without failing
    pending = [i for i in job.items if i.state == T.PENDING]
    assert {i.node_id for i in pending} == {away} and "offline" in pending[0].note
    # The node returns: its reconcile leaves the version to the rollout, which moves it.
    worker = workers.workers[away]
    worker.conn = type(worker.conn)(away, worker._receive, worker._close)
    await worker.connect()
    inventory = [workers.status(i.instance_id) for i in pending]
    planned = await master.orchestrator.reconcile(away, inventory)
    assert not [c for c in planned if isinstance(c, UpgradeCommand)]
    job = await ended(admin, job)
    assert job.state == RS.DONE and {i.state for i in job.items} == {T.DONE}

    # Still away when progress_deadline passes: done, pending, moved by the reconcile later.
    await master.fleet.disconnect(worker.conn)
    job = await admin.rollout(
        module_id, "3.0.0", wait="running", healthy_deadline=0.5, progress_deadline=0.5
    )
    job = await ended(admin, job)
    assert job.state == RS.DONE
    pending = [i for i in job.items if i.state == T.PENDING]
    assert len(pending) == 2
    instance = await admin.get_instance(pending[0].instance_id)
    assert (instance.version, instance.desired_version) == ("2.0.0", "3.0.0")
    worker.conn = type(worker.conn)(away, worker._receive, worker._close)
    await worker.connect()
    planned = await master.orchestrator.reconcile(
        away, [workers.status(i.instance_id) for i in pending]
    )
    assert {c.spec.version for c in planned if isinstance(c, UpgradeCommand)} == {"3.0.0"}
    job = await until(admin, job.id, lambda j: states(j) == {T.DONE})
    assert "node returned" in job.items[-1].note


async def test_a_module_version_changes_only_through_a_rollout(
    admin: AsyncClient, app: Quart, master: Master, make_zip: Callable[..., bytes]
) -> None:
    workers, module_id, ids = await setup(admin, master, make_zip)
    token = (await admin.create_token("t")).secret
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://m/api/v1",
        headers={"Authorization": f"Bearer {token}"},
    ) as http:
        response = await http.patch(f"/modules/{module_id}", json={"version": "2.0.0"})
        assert response.status_code == 409, response.text
        assert f"/modules/{module_id}/rollouts" in response.json()["error"]["message"]
        same = await http.patch(f"/modules/{module_id}", json={"version": "1.0.0", "env": {}})
        assert same.status_code == 200  # the version it has: a no-op
        for body, path in (
            ({"version": "9.9.9"}, "$.version"),
            ({"version": ""}, "$.version"),
            ({"version": "2.0.0", "strategy": {"max_parallel": 0}}, "$.strategy.max_parallel"),
            ({"version": "2.0.0", "strategy": {"wait": "soon"}}, "$.strategy.wait"),
            ({"version": "2.0.0", "strategy": {"canery": 1}}, "$.strategy.canery"),
            (
                {"version": "2.0.0", "strategy": {"healthy_deadline": 5, "min_healthy_time": 5}},
                "$.strategy.healthy_deadline",
            ),
            (
                {"version": "2.0.0", "strategy": {"progress_deadline": 9}},
                "$.strategy.progress_deadline",
            ),
        ):
            response = await http.post(f"/modules/{module_id}/rollouts", json=body)
            assert response.status_code == 422, (body, response.text)
            assert path in [d["path"] for d in response.json()["error"]["details"]], body
    assert (await admin.get_module(module_id)).version == "1.0.0"
    assert await admin.list_rollouts(module_id=module_id) == []
    with pytest.raises(NotFoundError):
        await admin.rollout("no-such-module", "2.0.0")
    with pytest.raises(NotFoundError):
        await admin.get_rollout("no-such-rollout")
    with pytest.raises(ConflictError, match=r"no version before 1\.0\.0"):
        await admin.rollback(module_id, version="")  # 1.0.0 is the oldest

    workers.hold = asyncio.Event()
    job = await admin.rollout(module_id, "2.0.0")
    with pytest.raises(ConflictError, match=f"rollout {job.id} of module 'api'"):
        await admin.rollout(module_id, "3.0.0")
    # The versions it moves between cannot be deleted meanwhile: the 409 names the users.
    with pytest.raises(ConflictError, match=r"module shop/api") as refused:
        await admin.delete_package("demo", "2.0.0")
    assert refused.value.details["modules"][0]["name"] == "shop/api"
    with pytest.raises(ConflictError, match=f"instance {ids[0]} \\(runs it\\)"):
        await admin.delete_package("demo", "1.0.0")
    await admin.abort(job.id)
    workers.hold.set()
    await ended(admin, job)
    await admin.delete_package("demo", "3.0.0")  # nobody uses it

    spec = AdoptionSpec(strategy=AdoptionStrategy.MATCH, name="nginx")
    system_id = (await admin.get_module(module_id)).system_id
    adopted = await admin.create_adopted_module(system_id, "nginx", spec)
    with pytest.raises(ValidationError, match="adopted module"):
        await admin.rollout(adopted.id, "1.0.0")


async def test_a_rollout_is_resumed_after_a_master_restart(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    """What the master does at start with a rollout it left running (load + resume)."""
    workers, module_id, ids = await setup(admin, master, make_zip)
    workers.hold = asyncio.Event()
    job = await admin.rollout(module_id, "2.0.0", wait="running", max_parallel=2)
    await workers.asked(2)
    # The master "dies": its rollout task goes, what it stored stays.
    rollouts = master.rollouts
    task = next(t for t in master.tasks if "_run" in repr(t.get_coro()))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    stored = master.db.one("SELECT state FROM rollouts WHERE id = ?", (job.id,))
    assert stored is not None and stored["state"] == "running"

    master.orchestrator.on_status.remove(rollouts._on_status)  # that process is gone
    again = Rollouts(master)
    master.rollouts = again
    assert again.load() == 1
    resumed = again.get(job.id)
    moving = [i for i in resumed.items if i.note.startswith("moved again")]
    assert len(moving) == 2 and {i.state for i in moving} == {T.WAITING}
    assert master.orchestrator.held(ids[0])  # its reconcile leaves the version alone
    workers.hold.set()
    again.start_background()
    job = await ended(admin, job)
    assert job.state == RS.DONE, job
    instances = await admin.list_instances(module_id=module_id)
    assert {i.version for i in instances} == {"2.0.0"}
