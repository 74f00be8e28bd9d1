"""Issue 12, finding 3: a node credential (or just the join token) must not exhaust the master.

A real master process, hand-made agents (tests/security/agents.py) sending what a hostile
node could: a pending node's heartbeats must not grow the master's memory, a node must
not write metrics for another node's instances or at timestamps far from now, and a frame
over the agent limit closes that socket with a reason while the master carries on.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from gdos_master.fleet import Fleet, SampleWindow
from gdos_sdk.metrics.series import CHUNK, SeriesStore
from gdos_sdk.models import InstanceSample, NodeSample
from gdos_sdk.protocol import HEARTBEAT_FRAME, MAX_FRAME, Heartbeat, decode, heartbeat_frames
from gdos_sdk.testing import LocalCluster, wait_until

from ..conftest import raw_zip
from .agents import (
    HandAgent,
    frames_received,
    heartbeat,
    instance_sample,
    metric_value,
    node_sample,
    prometheus,
    wait_frames,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One master for the module; new nodes wait for approval (so they start pending)."""
    local = LocalCluster(tmp_path_factory.mktemp("agent-limits"))
    try:
        local.start_master(env={"OPS_MASTER_AUTH_REQUIRE_APPROVAL": "true"})
        yield local
    finally:
        local.close()


def rss(cluster: LocalCluster) -> int:
    assert cluster.master is not None
    return int(psutil.Process(cluster.master.pid).memory_info().rss)


def crafted_frame(size: int, rng: random.Random, *, spread: float = 10_000 * CHUNK) -> str:
    """A valid heartbeat of about ``size`` characters built to cost the master the most
    memory: samples spread over ``spread`` seconds around now (by default far from it,
    each in its own chunk), made-up instance ids, and new network interface names."""
    now = time.time()
    nodes, instances = [], []
    text_size = 0
    while text_size < size:
        ts = now + rng.uniform(-spread, spread)
        nodes.append(node_sample(ts, nets=8, tag=uuid.uuid4().hex[:6]))
        instances += [instance_sample(ts, str(uuid.uuid4()), 50.0) for _ in range(4)]
        text_size += len(json.dumps(nodes[-1])) + sum(len(json.dumps(i)) for i in instances[-4:])
    return heartbeat(nodes, instances)


def test_pending_node_heartbeats_do_not_grow_master_memory(cluster: LocalCluster) -> None:
    agent = HandAgent(cluster, "pending-1")
    welcome = agent.connect()
    assert welcome["approved"] is False
    try:
        rng = random.Random(3)
        # Warm up the master's code paths (and its allocator) before the baseline.
        for _ in range(4):
            agent.send(heartbeat([node_sample(time.time())], []))
        wait_frames(cluster, 4)
        before = rss(cluster)
        frames = [crafted_frame(256 * 1024, rng) for _ in range(8)]
        assert sum(len(f) for f in frames) >= 2 * 1024 * 1024
        seen = frames_received(cluster)
        for frame in frames:
            agent.send(frame)
        wait_frames(cluster, seen + len(frames))
        grown = rss(cluster) - before
        assert grown <= 5 * 1024 * 1024, f"master RSS grew by {grown / 2**20:.1f} MiB"
        text = prometheus(cluster)
        assert metric_value(text, "gdos_master_series") == 0  # nothing was stored
    finally:
        agent.close()


def test_an_approved_nodes_crafted_heartbeats_stay_within_its_caps(
    cluster: LocalCluster,
) -> None:
    agent = approved_agent(cluster, "crafty")
    agent.connect()
    try:
        rng = random.Random(4)
        for _ in range(4):
            agent.send(heartbeat([node_sample(time.time())], []))
        seen = frames_received(cluster)
        wait_frames(cluster, seen)
        before = rss(cluster)
        # Within the accepted window this time: only the caps bound what is kept.
        frames = [crafted_frame(256 * 1024, rng, spread=800) for _ in range(8)]
        for frame in frames:
            agent.send(frame)
        wait_frames(cluster, seen + len(frames))
        grown = rss(cluster) - before
        assert grown <= 5 * 1024 * 1024, f"master RSS grew by {grown / 2**20:.1f} MiB"
        latest = httpx.get(
            f"{cluster.url}/api/v1/metrics/latest",
            params={"target": f"node:{agent.node_id}"},
            headers={"Authorization": f"Bearer {cluster.admin_token()}"},
            timeout=10,
        ).json()
        assert len(latest["values"]) == 256  # metrics.max_series_per_target
        assert dropped(cluster)["not_owned"] > 0  # the made-up instance ids
    finally:
        agent.close()


def dropped(cluster: LocalCluster) -> dict[str, float]:
    text = prometheus(cluster)
    found = re.findall(r'^gdos_master_samples_dropped_total\{reason="(\w+)"\} (\S+)$', text, re.M)
    return {reason: float(value) for reason, value in found}


def approved_agent(cluster: LocalCluster, hostname: str) -> HandAgent:
    """A node that joined, was approved by an admin, and is disconnected now."""
    agent = HandAgent(cluster, hostname)
    agent.connect()
    with cluster.client() as gdos:
        gdos.approve_node(agent.node_id)
    agent.close()  # (approval makes the master close the channel anyway)
    with cluster.client() as gdos:
        wait_until(
            lambda: gdos.get_node(agent.node_id).status.value == "offline", what="node offline"
        )
    return agent


def query(cluster: LocalCluster, target: str, metric: str) -> list[tuple[int, float]]:
    """The stored points of one series, through the SDK."""
    now = time.time()
    with cluster.client() as gdos:
        found = gdos.query_range(metric, target, start=now - 5000, end=now + 5000)
    return [point for series in found.series for point in series.points()]


def test_a_node_cannot_write_metrics_of_another_nodes_instance(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    agent = approved_agent(cluster, "node-a")
    package = raw_zip(
        tmp_path / "demo.zip",
        {
            "service.json": json.dumps(
                {"name": "demo", "version": "1.0.0", "entrypoint": "run.sh"}
            ).encode(),
            "run.sh": b"#!/bin/sh\nsleep 1000\n",
        },
    )
    with cluster.client() as gdos:
        gdos.upload_package(package)
        system = gdos.create_system("shop")
        module = gdos.create_module(system.id, "web", "demo", "1.0.0")
        own = gdos.deploy(
            module.id, agent.node_id, start=False, wait="started"
        )  # queued: node A is offline
        other_node = gdos.plan_node("node-b")
        other = gdos.deploy(module.id, other_node.id, start=False, wait="started")
    agent.connect()  # with its node credential now
    try:
        seen = frames_received(cluster)
        dropped_before = dropped(cluster)
        now = time.time()
        agent.send(
            heartbeat(
                [node_sample(now, cpu=12.0), node_sample(now + 86400 * 365, cpu=66.0)],
                [
                    instance_sample(now, own.id, 11.0),
                    instance_sample(now, other.id, 99.9),  # node B's instance
                    instance_sample(now + 3600, own.id, 77.0),  # an hour ahead
                    instance_sample(now - 7200, own.id, 88.0),  # two hours old
                    instance_sample(now, str(uuid.uuid4()), 55.0),  # no such instance
                ],
            )
        )
        wait_frames(cluster, seen + 1)
        assert query(cluster, f"instance:{other.id}", "cpu") == []
        assert [round(v, 1) for _, v in query(cluster, f"instance:{own.id}", "cpu")] == [11.0]
        assert [round(v, 1) for _, v in query(cluster, f"node:{agent.node_id}", "cpu")] == [12.0]
        dropped_now = dropped(cluster)
        assert dropped_now["not_owned"] - dropped_before.get("not_owned", 0) == 2
        assert dropped_now["out_of_window"] - dropped_before.get("out_of_window", 0) == 3
    finally:
        agent.close()


def test_an_oversize_frame_closes_the_socket_with_a_reason(cluster: LocalCluster) -> None:
    agent = approved_agent(cluster, "node-big")
    agent.connect()
    try:
        padding = [node_sample(time.time())] * (5 * 1024 * 1024 // 420)
        frame = heartbeat(padding, [])
        assert MAX_FRAME < len(frame) < 2 * MAX_FRAME
        agent.send(frame)
        assert agent.ws is not None
        with pytest.raises(ConnectionClosed) as closed:
            agent.ws.recv(timeout=15)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
        assert f"over the agent channel limit of {MAX_FRAME} bytes" in closed.value.rcvd.reason
    finally:
        agent.close()
    assert httpx.get(f"{cluster.url}/healthz", timeout=5).status_code == 200
    agent.connect()  # the node may come back with frames of a sane size
    try:
        seen = frames_received(cluster)
        agent.send(heartbeat([node_sample(time.time(), cpu=3.0)], []))
        wait_frames(cluster, seen + 1)
        with cluster.client() as gdos:
            assert gdos.get_node(agent.node_id).status.value == "online"
    finally:
        agent.close()


# --- the pieces, without a master --------------------------------------------------------


def sample(ts: float, cpu: float = 1.0) -> NodeSample:
    return NodeSample(ts, cpu, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1)


def test_fleet_keeps_only_approved_own_and_timely_samples() -> None:
    wall = [10_000.0]
    fleet = Fleet(
        heartbeat_interval=1,
        offline_grace=5,
        placement=lambda node_id: {"a": ["ia"], "b": ["ib"]}[node_id],
        window=SampleWindow(max_age=900, max_ahead=60),
        wall_clock=lambda: wall[0],
    )
    fleet.runtime("a").approved = True
    fleet.runtime("p").approved = False
    fleet.heartbeat("p", [sample(10_000)], [])
    assert fleet.store.series_count() == 0 and fleet.stats.dropped["pending"] == 1

    def isample(iid: str, ts: float) -> InstanceSample:
        return InstanceSample(ts, iid, 5.0, 1, 0, 0, 1, 1, 1)

    fleet.heartbeat(
        "a",
        [sample(9_100), sample(10_060), sample(9_099), sample(10_061)],
        [isample("ia", 10_000), isample("ib", 10_000), isample("zz", 10_000)],
    )
    assert fleet.store.targets() == ["instance:ia", "node:a"]
    assert [t for t, _ in fleet.store.query("node:a", "cpu", start=9_000, end=10_100)] == [
        9_100,
        10_060,
    ]
    assert fleet.stats.dropped == {"pending": 1, "not_owned": 2, "out_of_window": 2, "capped": 0}
    assert fleet.instance_sample("a", "ib") is None
    fleet.forget_instance("ia")  # destroyed: the node may not report it any more
    fleet.heartbeat("a", [], [isample("ia", 10_001)])
    assert "instance:ia" not in fleet.store.targets()


def test_series_store_caps_series_per_target_and_in_all() -> None:
    store = SeriesStore(max_series=5, max_target_metrics=3)
    assert store.add("node:a", {f"net_rx:veth{i}": 1.0 for i in range(10)}, 100) == 7
    assert store.add("node:b", {"cpu": 1.0, "load1": 1.0, "load5": 1.0}, 100) == 1
    assert store.series_count() == 5 and store.refused == 8
    assert store.add("node:c", {"cpu": 1.0}, 100) == 1
    assert "node:c" not in store.targets()  # no empty target is kept
    store.drop("node:a")
    assert store.add("node:c", {"cpu": 1.0}, 100) == 0


def test_series_store_trim_frees_chunks_in_the_future() -> None:
    store = SeriesStore(window=3600, minute_window=86400, ahead=60)
    now = 1_700_000_000
    store.add("node:a", {"cpu": 5.0}, now)
    store.add("node:a", {"cpu": 7.0}, now + 10 * 86400)
    bytes_with_future = store.nbytes()
    store.trim(now)
    assert store.nbytes() < bytes_with_future
    assert store.latest("node:a") == {}  # the future "latest" is gone ...
    store.add("node:a", {"cpu": 6.0}, now + 1)
    assert store.latest("node:a") == {"cpu": (now + 1, pytest.approx(6.0, rel=1e-3))}


def test_big_heartbeats_are_split_into_frames_under_the_limit() -> None:
    now = time.time()
    nodes = [sample(now - 300 + i) for i in range(300)]
    instances = [
        InstanceSample(now - 300 + i, f"{n:036d}", 5.0, 123456789, 0, 0, 12, 40, 3)
        for i in range(300)
        for n in range(200)
    ]
    beat = Heartbeat(ts=now, node_samples=nodes, instance_samples=instances)
    frames = heartbeat_frames(beat)
    assert len(frames) > 1
    assert all(len(f) <= HEARTBEAT_FRAME for f in frames)
    parts = [decode(f) for f in frames]
    assert all(isinstance(p, Heartbeat) for p in parts)
    assert [s for p in parts for s in p.node_samples] == nodes  # type: ignore[union-attr]
    assert [s for p in parts for s in p.instance_samples] == instances  # type: ignore[union-attr]
    small = Heartbeat(ts=now, node_samples=nodes[:2])
    assert len(heartbeat_frames(small)) == 1
