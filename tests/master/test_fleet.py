"""The fleet registry with a fake clock and fake channels: liveness and push intervals."""

from __future__ import annotations

import json

import pytest

from gdos_master.fleet import AgentConnection, Fleet
from gdos_sdk.models import NodeSample

from ..helpers.clock import FakeClock

pytestmark = pytest.mark.anyio


def sample(ts: float, cpu: float = 10.0) -> NodeSample:
    return NodeSample(
        ts=ts,
        cpu_percent=cpu,
        load1=0,
        load5=0,
        load15=0,
        mem_total=1,
        mem_used=1,
        mem_percent=50,
        swap_total=0,
        swap_used=0,
        disk_read_bps=0,
        disk_write_bps=0,
        uptime_seconds=1,
    )


async def channel(fleet: Fleet, node_id: str, sent: list[dict]) -> AgentConnection:
    async def send(text: str) -> None:
        sent.append(json.loads(text))

    async def close() -> None:
        return None

    conn = AgentConnection(node_id, send, close)
    await fleet.connect(conn, approved=True)
    return conn


async def test_offline_after_interval_plus_grace_and_sweep_closes() -> None:
    clock = FakeClock()
    fleet = Fleet(heartbeat_interval=1, offline_grace=5, clock=clock)
    await channel(fleet, "n1", [])
    assert fleet.is_online("n1")
    clock.now += 5.9
    assert fleet.is_online("n1")
    clock.now += 0.2
    assert not fleet.is_online("n1")
    assert await fleet.sweep() == ["n1"]
    assert fleet.nodes["n1"].connection is None


async def test_a_lost_channel_counts_as_one_disconnect() -> None:
    clock = FakeClock()
    fleet = Fleet(heartbeat_interval=1, offline_grace=5, clock=clock)
    swept = await channel(fleet, "n1", [])
    clock.now += 10
    assert await fleet.sweep() == ["n1"]
    await fleet.disconnect(swept)  # the agent route's clean-up when its socket ends
    assert fleet.stats.disconnects == 1
    # A reconnect race: the new channel replaces the old, whose route then cleans up.
    old = await channel(fleet, "n1", [])
    new = await channel(fleet, "n1", [])
    await fleet.disconnect(old)
    assert fleet.stats.disconnects == 2
    assert fleet.nodes["n1"].connection is new and fleet.is_online("n1")


async def test_watch_switches_a_large_fleet_node_to_one_second() -> None:
    clock = FakeClock()
    fleet = Fleet(
        heartbeat_interval=1,
        offline_grace=2,
        heartbeat_budget=0.2,
        max_push_interval=10,
        clock=clock,
    )
    sent: list[dict] = []
    await channel(fleet, "a", [])
    await channel(fleet, "b", sent)
    assert fleet.nodes["b"].push_interval == 10  # its welcome says 10 s
    assert fleet.initial_interval("b") == 10
    assert fleet.nodes["a"].push_interval == 5  # joined while the fleet was smaller
    await fleet.rebalance()
    assert fleet.nodes["a"].push_interval == 10
    clock.now += 9  # a 10 s pusher is still online after 9 s
    assert fleet.is_online("b")
    await fleet.watch("b", +1)
    assert sent[-1]["push_interval"] == 1.0
    assert fleet.is_online("b")  # the shorter deadline starts now: no flap
    await fleet.watch("b", -1)
    assert sent[-1]["push_interval"] == 10.0


async def test_heartbeat_batches_fill_the_series_and_latest() -> None:
    fleet = Fleet(heartbeat_interval=1, offline_grace=5, wall_clock=lambda: 103.0)
    await channel(fleet, "n", [])
    fleet.heartbeat("n", [sample(100, 1), sample(101, 2), sample(102, 3)], [])
    assert fleet.nodes["n"].latest is not None and fleet.nodes["n"].latest.ts == 102
    points = fleet.store.query("node:n", "cpu", start=100, end=103)
    assert [round(v) for _, v in points] == [1, 2, 3]
    assert fleet.stats.node_samples == 3 and fleet.stats.heartbeats == 1
    await fleet.forget("n")
    assert fleet.store.series_count() == 0


async def test_a_stalled_master_does_not_drop_nodes_that_kept_sending() -> None:
    """Issue 15: liveness is judged on the master's own clock, less its event loop's stalls."""
    clock = FakeClock()
    fleet = Fleet(heartbeat_interval=1, offline_grace=5, clock=clock)
    await channel(fleet, "n1", [])
    await channel(fleet, "n2", [])
    clock.now += 4
    fleet.touch("n1")  # n1 heartbeats on; n2 has gone silent
    # The loop stalls 8 s (a long garbage collection, a burst of joins): no frame is read.
    clock.now += 8
    fleet.loop_late(8.0)  # the sweep's timer wakes 8 s late and says so ...
    fleet.loop_late(7.9)  # ... and so does another timer: the same stall counts once
    assert fleet.stalled == pytest.approx(8.0)
    assert fleet.is_online("n1") and fleet.is_online("n2")
    assert await fleet.sweep() == []
    fleet.touch("n1")  # n1's heartbeat, sent during the stall, is read now
    clock.now += 2.1
    fleet.loop_late(0.01)  # scheduling noise is not a stall
    assert await fleet.sweep() == ["n2"]  # silent for 6.1 s of the master's own time
    assert fleet.is_online("n1")
    clock.now += 4
    assert await fleet.sweep() == ["n1"]


async def test_a_longer_push_interval_starts_its_deadline_at_the_configure() -> None:
    """A worker told to push less often waits a random phase of the new interval from the
    Configure on; its last heartbeat (at the old pace) must not make it flap meanwhile."""
    clock = FakeClock()
    fleet = Fleet(
        heartbeat_interval=1, offline_grace=2, heartbeat_budget=1, max_push_interval=10, clock=clock
    )
    sent: list[dict] = []
    await channel(fleet, "a", sent)
    clock.now += 1.5  # its last heartbeat was 1.5 s ago at the 1 s pace
    for name in "bcde":
        await channel(fleet, name, [])
    await fleet.rebalance()
    assert sent[-1] == {"type": "configure", "push_interval": 5.0}
    clock.now += 6.9  # the phase may put its next push up to 5 s after the Configure
    assert fleet.is_online("a") and await fleet.sweep() == []
