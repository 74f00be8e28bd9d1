"""The live channel from Python with real processes: typed frames, reconnects, follow helpers."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from gdos_sdk import AsyncClient, Client, NotFoundError, PermissionDenied, ValidationError
from gdos_sdk.alerts import RuleTarget
from gdos_sdk.commands import NodeRunState
from gdos_sdk.live import (
    AlertsFrame,
    CommandFrame,
    FleetFrame,
    InstanceSamplesFrame,
    NodeSamplesFrame,
    NodesFrame,
)
from gdos_sdk.models import InstanceSample, NodeSample
from gdos_sdk.progress import Progress
from gdos_sdk.testing import LocalCluster

from .proxy import TcpProxy

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One master and two workers for the tests that leave them running."""
    local = LocalCluster(tmp_path_factory.mktemp("live") / "cluster")
    try:
        local.start_master()
        local.start_worker()
        local.start_worker()
        yield local
    finally:
        local.close()


def test_watch_gives_typed_snapshots_then_changes(shared: LocalCluster) -> None:
    running = shared
    node_id = running.wait_worker_connected(running.workers[0])
    with running.client() as gdos, gdos.watch("fleet", "nodes", f"node:{node_id}") as stream:
        assert repr(stream).startswith("<LiveStream open topics=[fleet, nodes, node:")
        first = {f.topic: f for f in itertools.islice(stream, 3)}
        assert all(f.snapshot for f in first.values())
        fleet, nodes = first["fleet"], first["nodes"]
        assert isinstance(fleet, FleetFrame) and fleet.nodes["total"] == 2
        assert isinstance(nodes, NodesFrame) and node_id in [r.id for r in nodes.rows]
        assert {r.status.value for r in nodes.rows} == {"online"}
        assert len(repr(nodes)) <= 120 and "<table" in nodes._repr_html_()
        samples = [f for f in itertools.islice(stream, 20) if isinstance(f, NodeSamplesFrame)]
        assert samples and all(not f.snapshot for f in samples)
        assert all(isinstance(s, NodeSample) for f in samples for s in f.samples)
        assert samples[0].node_id == node_id


def test_bad_topics_fail_at_once(shared: LocalCluster) -> None:
    running = shared
    with running.client() as gdos:
        with pytest.raises(ValidationError, match="unknown topic 'nodez'"):
            gdos.watch("nodez")
        with pytest.raises(NotFoundError):
            gdos.watch("node:no-such-node")
        viewer = gdos.create_user("watcher", "watcher-password-1", "viewer")
        assert viewer.role.value == "viewer"
    with Client(running.url) as session:
        session.login("watcher", "watcher-password-1")  # a session: cookie + Origin
        with session.watch("fleet") as stream:
            assert isinstance(next(stream), FleetFrame)
            with pytest.raises(PermissionDenied, match="admin"):
                stream.subscribe("audit")
            assert stream.topics == ["fleet"]


def test_a_cut_connection_is_taken_up_again_with_a_fresh_snapshot(shared: LocalCluster) -> None:
    running = shared
    node_id = running.wait_worker_connected(running.workers[0])
    token = running.admin_token()
    with TcpProxy(running.master_port) as proxy, Client(proxy.url, token=token) as gdos:
        with gdos.watch(f"node:{node_id}") as stream:
            assert stream.receive(timeout=10).snapshot
            before = [s.ts for s in stream.receive(timeout=10).samples]
            assert proxy.cut() == 1  # the socket is reset under the client
            after = stream.receive(timeout=30)
            assert after.snapshot and stream.reconnects == 1
            assert isinstance(after, NodeSamplesFrame)
            fresh = stream.receive(timeout=10)
            assert not fresh.snapshot and min(s.ts for s in fresh.samples) > max(before)

        # A follow helper yields each sample once, in order, across a cut.
        seen: list[float] = []
        for sample in gdos.follow_node_samples(node_id, duration=30):
            seen.append(sample.ts)
            if len(seen) == 3:
                proxy.cut()
            if len(seen) == 6:
                break
        assert seen == sorted(set(seen)) and len(seen) == 6


def test_async_watch_survives_a_master_restart(running: LocalCluster) -> None:
    node_id = running.wait_worker_connected(running.workers[0])

    async def scenario() -> tuple[int, list[bool]]:
        gdos = AsyncClient(running.url, token=running.admin_token())
        async with gdos, gdos.watch(f"node:{node_id}", "fleet") as stream:
            kinds = [(await stream.receive(timeout=10)).snapshot for _ in range(2)]
            assert running.master is not None
            running.master.kill()  # SIGKILL: no close frame, the socket just dies
            running.start_master()
            after = []
            while len(after) < 2:
                frame = await stream.receive(timeout=60)
                if frame.snapshot:
                    after.append(frame.topic)
            assert sorted(after) == sorted(["fleet", f"node:{node_id}"])
            return stream.reconnects, kinds

    reconnects, kinds = anyio.run(scenario)
    assert reconnects == 1 and kinds == [True, True]


def test_iter_command_yields_each_node_as_it_ends(cluster: LocalCluster, tmp_path: Path) -> None:
    cluster.start_master()
    cluster.start_worker()
    cluster.start_worker()
    ids = [cluster.wait_worker_connected(w) for w in cluster.workers]
    gate = tmp_path / "gate"
    # The first node to take the gate answers at once, the other 2 s later.
    command = f"mkdir {gate} 2>/dev/null && echo first || {{ sleep 2; echo second >&2; }}"
    with cluster.client() as gdos:
        arrivals = []
        for result in gdos.iter_command(ids, command, timeout=20):
            arrivals.append((time.monotonic(), result))
        assert [r.state for _, r in arrivals] == [NodeRunState.DONE, NodeRunState.DONE]
        assert {r.node_id for _, r in arrivals} == set(ids)
        (t1, fast), (t2, slow) = arrivals
        assert (fast.stdout, fast.stderr, slow.stdout, slow.stderr) == (
            "first\n",
            "",
            "",
            "second\n",
        )
        assert t2 - t1 > 1.0  # the fast node's result did not wait for the slow one

        seen: list[Progress] = []
        run = gdos.run_command(ids, "echo hi", timeout=20, progress=seen.append)
        assert run.done and {n.stdout for n in run.nodes} == {"hi\n"}
        assert [(p.done, p.total, p.unit) for p in seen] == [
            (0, 2, "node"),
            (1, 2, "node"),
            (2, 2, "node"),
        ]


def test_follow_instance_samples_batches_and_alerts(
    shared: LocalCluster, pack: Callable[..., Path]
) -> None:
    running = shared
    node_ids = {f"node:{running.node_id(w)}" for w in running.workers}
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        uploaded = gdos.upload_package(pack("sleeper", stop_timeout=2))
        system = gdos.create_system("live")
        module = gdos.create_module(system.id, "s", uploaded.name, uploaded.version)
        instance = gdos.deploy(module.id, node_id, start=False, wait="running")

        seen: list[Progress] = []
        job = gdos.run_batch(system.id, "start", min_running=0.5, progress=seen.append)
        assert job.state.value == "done", job.error
        assert seen[-1].done == seen[-1].total == 1 and seen[-1].unit == "instance"
        jobs = list(gdos.follow_batch(job.id))  # an ended job: its snapshot, and done
        assert [j.state.value for j in jobs] == ["done"]

        samples = list(itertools.islice(gdos.follow_instance_samples(instance.id), 2))
        assert all(isinstance(s, InstanceSample) and s.instance_id == instance.id for s in samples)
        with gdos.watch(f"instance:{instance.id}") as stream:
            assert isinstance(next(stream), InstanceSamplesFrame)

        changes = gdos.follow_alerts(duration=30)
        # The iterator subscribes at its first step; the rule is held 3 s before it fires, so
        # a loaded machine cannot fire it before that (an alert already firing when the
        # stream opens is not a change).
        gdos.create_alert_rule(
            "always", "cpu", ">=", 0, target=RuleTarget(kind="nodes"), for_seconds=3
        )
        change = next(changes)
        while change.change == "pending":
            change = next(changes)
        assert (change.change, change.alert.rule_name) == ("firing", "always")
        assert change.alert.target in node_ids
        changes.close()
        with gdos.watch("alerts") as stream:
            frame = next(stream)
            assert isinstance(frame, AlertsFrame) and frame.firing >= 1


def test_watch_a_command_run_by_hand(shared: LocalCluster) -> None:
    running = shared
    node_id = running.wait_worker_connected(running.workers[0])
    with running.client() as gdos:
        run = gdos.run_command([node_id], "echo done", timeout=10)
        with gdos.watch(f"command:{run.id}") as stream:
            frame = next(stream)
            assert isinstance(frame, CommandFrame) and frame.snapshot
            assert frame.run is not None and frame.run.nodes[0].stdout == "done\n"


def test_the_async_client_follows_and_waits_like_the_blocking_one(
    shared: LocalCluster, pack: Callable[..., Path]
) -> None:
    ids = shared.node_ids()
    package = pack("sleeper", name="asleeper", stop_timeout=2)

    async def scenario() -> None:
        async with shared.async_client() as gdos:
            samples = []
            async for sample in gdos.follow_node_samples(ids[0], duration=20):
                samples.append(sample)
                if len(samples) == 2:
                    break
            assert samples[0].ts < samples[1].ts

            results = [r async for r in gdos.iter_command(ids, "echo async", timeout=20)]
            assert sorted(r.node_id for r in results) == sorted(ids)
            assert {r.stdout for r in results} == {"async\n"}

            uploaded = await gdos.upload_package(package)
            system = await gdos.create_system("async")
            module = await gdos.create_module(system.id, "s", uploaded.name, uploaded.version)
            began = time.monotonic()
            instance = await gdos.deploy(module.id, ids[1], wait="stable", min_healthy_time=1)
            assert instance.state.value == "running" and time.monotonic() - began >= 1

    anyio.run(scenario)
