"""Rollouts with real workers and services: parallelism, auto-revert, canaries, crashes, outages.

The services (services/versioned.py) write their own start and stop times, so "how many
were down at once" is measured by them, not by the master.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from gdos_sdk import Client, InstanceState
from gdos_sdk.rollouts import Rollout, RolloutState, StepState
from gdos_sdk.testing import LocalCluster, wait_until

pytestmark = pytest.mark.e2e

RS = RolloutState
T = StepState


def events(path: Path) -> list[tuple[str, str, str, float]]:
    """``(kind, instance id, version, time)`` as the services wrote them, in time order."""
    found = []
    for line in path.read_text().splitlines():
        kind, instance, version, ts = line.split()
        found.append((kind, instance, version, float(ts)))
    return sorted(found, key=lambda e: e[3])


def most_down_at_once(found: list[tuple[str, str, str, float]]) -> int:
    """The most instances between a stop and their next start at any moment."""
    down: set[str] = set()
    most = 0
    for kind, instance, _, _ in found:
        if kind == "stop":
            down.add(instance)
            most = max(most, len(down))
        else:
            down.discard(instance)
    return most


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One master and two workers for the whole module (each test has its own system)."""
    local = LocalCluster(tmp_path_factory.mktemp("rollouts") / "cluster")
    try:
        local.start_master()
        local.start_worker()
        local.start_worker()
        yield local
    finally:
        local.close()


def deploy_module(
    gdos: Client, package: str, nodes: list[str], events_file: Path, per_node: int = 2
) -> tuple[str, list[str]]:
    system = gdos.create_system(package)
    module = gdos.create_module(
        system.id, "api", package, "1.0.0", env={"EVENTS_FILE": str(events_file)}
    )
    ids = [
        gdos.deploy(module.id, node, wait="running").id for _ in range(per_node) for node in nodes
    ]
    for instance_id in ids:
        gdos.wait_for_instance(instance_id, "running", timeout=30)
    wait_until(
        lambda: events_file.exists() and len(events(events_file)) == len(ids),
        timeout=30,
        what="every service to write its start",
    )
    return module.id, ids


def follow_async(cluster: LocalCluster, rollout_id: str) -> list[Rollout]:
    """What ``AsyncClient.follow_rollout`` yields, to the end."""

    async def follow() -> list[Rollout]:
        async with cluster.async_client() as gdos:
            return [job async for job in gdos.follow_rollout(rollout_id)]

    return anyio.run(follow)


def on_versions(gdos: Client, module_id: str) -> dict[str, tuple[str, str, InstanceState]]:
    return {
        i.id: (i.version, i.desired_version, i.state)
        for i in gdos.list_instances(module_id=module_id)
    }


def test_upgrade_revert_and_canary_with_two_workers(
    fleet: LocalCluster, pack: Callable[..., Path], tmp_path: Path
) -> None:
    cluster, workers = fleet, fleet.workers[:2]
    log = tmp_path / "events.log"
    with cluster.client() as gdos:
        nodes = [cluster.node_id(w) for w in workers]
        for version, extra in (("1.0.0", {}), ("2.0.0", {}), ("3.0.0", {"CRASH_AFTER": "1"})):
            gdos.upload_package(pack("versioned", version=version, env=extra))
        module_id, ids = deploy_module(gdos, "versioned", nodes, log)
        before = {i: gdos.get_instance(i) for i in ids}

        # 1. A good version, 2 at a time: the services saw at most 2 of them down at once.
        log.write_text("")
        job = gdos.rollout(module_id, "2.0.0", max_parallel=2, min_healthy_time=1)
        seen = list(gdos.follow_rollout(job.id))  # the live topic rollout:<id>, typed
        job = gdos.get_rollout(job.id)
        assert job.state == RS.DONE, job
        assert seen[-1] == job  # the final state is always yielded, and ends the follow
        revisions = [r.revision for r in seen]
        assert revisions == sorted(set(revisions)), revisions  # each newer, each once
        found = events(log)
        assert most_down_at_once(found) == 2, found
        started = {(i, v) for kind, i, v, _ in found if kind == "start"}
        assert started == {(i, "2.0.0") for i in ids}
        assert on_versions(gdos, module_id) == {
            i: ("2.0.0", "2.0.0", InstanceState.RUNNING) for i in ids
        }
        # Each instance moved in place: same id and node, the same log file, both versions.
        for instance_id in ids:
            after = gdos.get_instance(instance_id)
            assert after.node_id == before[instance_id].node_id
            assert after.pid != before[instance_id].pid
            text = gdos.read_log(instance_id, "console.log", lines=20).text
            assert "running 1.0.0" in text and "running 2.0.0" in text
        # The live topic showed the steps as they happened (coalesced: 2 frames a second).
        steps = {i.state.value for r in seen for i in r.items}
        assert {"waiting", "verifying", "done"} <= steps, steps
        assert steps & {"preparing", "stopping", "starting"}, steps

        # 2. A version that crashes after 1 s: the first batch fails, auto_revert moves it back.
        log.write_text("")
        job = gdos.rollout(module_id, "3.0.0", max_parallel=2, min_healthy_time=2, auto_revert=True)
        seen = follow_async(cluster, job.id)  # the async client, live, to the end
        job = gdos.get_rollout(job.id)
        assert job.state == RS.REVERTED, job
        assert seen[-1] == job
        assert [r.revision for r in seen] == sorted({r.revision for r in seen})
        assert RS.REVERTING in {r.state for r in seen}
        assert "crashed on 3.0.0" in job.error, job.error
        states = [i.state for i in job.items]
        assert states[:2] == [T.REVERTED] * 2 and states[2:] == [T.SKIPPED] * 2
        bad = {i for kind, i, v, _ in events(log) if kind == "start" and v == "3.0.0"}
        assert bad == {job.items[0].instance_id, job.items[1].instance_id}
        wait_until(
            lambda: (
                on_versions(gdos, module_id)
                == {i: ("2.0.0", "2.0.0", InstanceState.RUNNING) for i in ids}
            ),
            timeout=30,
            what="every instance back on 2.0.0 and running",
        )
        assert gdos.get_module(module_id).version == "2.0.0"

        # 3. A rollback with a canary: one instance moves, the rest wait for promote.
        back = gdos.rollback(module_id, canary=1, max_parallel=3, min_healthy_time=0.5)
        assert back.to_version == "1.0.0" and back.kind == "rollback"
        for job in gdos.follow_rollout(back.id):
            if job.state == RS.AWAITING_PROMOTION:
                break
        assert [i.state for i in job.items].count(T.DONE) == 1
        versions = on_versions(gdos, module_id)
        assert sorted(v for v, _, _ in versions.values()) == ["1.0.0", "2.0.0", "2.0.0", "2.0.0"]
        gdos.promote(job.id)
        job = gdos.get_rollout(job.id, wait=60)
        assert job.state == RS.DONE, job
        assert {v for v, _, _ in on_versions(gdos, module_id).values()} == {"1.0.0"}
    # Going back needed no download: the workers still had 1.0.0 extracted.
    assert all("1.0.0 is still on disk" in w.output() for w in workers)
    # Each worker kept the versions each instance ran (3 by default), the current one in app/.
    for worker in workers:
        assert worker.work_dir is not None
        for folder in (worker.work_dir / "instances").iterdir():
            kept = sorted(p.name for p in (folder / "releases").iterdir())
            assert len(kept) <= 2, kept


def test_a_master_killed_mid_rollout_resumes_it_and_an_offline_worker_catches_up(
    fleet: LocalCluster, pack: Callable[..., Path], tmp_path: Path
) -> None:
    cluster, workers = fleet, fleet.workers[:2]
    log = tmp_path / "events.log"
    with cluster.client() as gdos:
        nodes = [cluster.node_id(w) for w in workers]
        for version in ("1.0.0", "2.0.0"):
            gdos.upload_package(pack("versioned", name="resumed", version=version))
        module_id, ids = deploy_module(gdos, "resumed", nodes, log)
        away = workers[1]
        away.terminate()  # its services go on running; the node goes offline
        wait_until(
            lambda: gdos.get_node(nodes[1]).status.value != "online",
            timeout=30,
            what="node 1 offline",
        )
        job = gdos.rollout(module_id, "2.0.0", min_healthy_time=1, progress_deadline=300)
        # Followed live from here to the end, across the master's death and restart.
        follower = gdos.follow_rollout(job.id)
        # Node 0's first instance moved; its second is being moved when the master dies.
        seen = wait_first(follower)
        job, before_kill = seen[-1], len(seen)
    assert cluster.master is not None
    cluster.master.kill()
    cluster.start_master(port=cluster.master_port)
    with cluster.client() as gdos:
        resumed = gdos.get_rollout(job.id)
        assert resumed.state == RS.RUNNING, resumed  # resumed, as docs/rollouts.md says
        pending = [i for i in resumed.items if i.node_id == nodes[1]]
        wait_until(
            lambda: (
                {i.state for i in gdos.get_rollout(job.id).items if i.node_id == nodes[0]}
                == {T.DONE}
            ),
            timeout=60,
            what="node 0's instances moved",
        )
        job = gdos.get_rollout(job.id)
        assert job.state == RS.RUNNING
        assert {i.state for i in job.items if i.node_id == nodes[1]} == {T.PENDING}
        # Nothing ran a version nobody asked for meanwhile: node 1 still runs 1.0.0.
        for item in pending:
            instance = gdos.get_instance(item.instance_id)
            assert instance.version == "1.0.0" and instance.desired_version == "1.0.0"

        cluster.start_worker(work_dir=away.work_dir)  # node 1 returns
        # The follower reconnects to the new master and goes on from a fresh snapshot:
        # each revision still once and in order, up to the end.
        seen += list(follower)
        assert len(seen) > before_kill
        job = gdos.get_rollout(job.id)
        assert job.state == RS.DONE, job
        assert seen[-1] == job
        revisions = [r.revision for r in seen]
        assert revisions == sorted(set(revisions)), revisions
        assert on_versions(gdos, module_id) == {
            i: ("2.0.0", "2.0.0", InstanceState.RUNNING) for i in ids
        }
        started = {(i, v) for kind, i, v, _ in events(log) if kind == "start"}
        assert {v for _, v in started} == {"1.0.0", "2.0.0"}
        assert {i for i, v in started if v == "2.0.0"} == set(ids)
        done = [
            e
            for e in gdos.list_audit(action="rollout.done").items
            if e.params.get("rollout") == job.id
        ]
        assert len(done) == 1 and done[0].result == "ok"


def wait_first(follower: Iterator[Rollout]) -> list[Rollout]:
    """What ``follower`` yielded until one instance is done and the next is being moved."""
    seen = []
    for job in follower:
        seen.append(job)
        if [i.state for i in job.items].count(T.DONE) == 1 and any(
            i.state in (T.STOPPING, T.STARTING, T.VERIFYING) for i in job.items
        ):
            return seen
    raise AssertionError(f"the rollout ended first: {seen[-1] if seen else None}")
