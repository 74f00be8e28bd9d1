"""The ingest path without model objects (issue 15): same metrics, same storage, same checks."""

from __future__ import annotations

import json
import math
import random

import pytest

from gdos_master.fleet import Fleet
from gdos_master.ingest import (
    ORJSON_MAX,
    SampleBatch,
    instance_columns,
    node_columns,
    parse_heartbeat,
    read_batch,
)
from gdos_sdk.metrics.names import instance_values, node_values
from gdos_sdk.metrics.series import SeriesStore
from gdos_sdk.models import DiskUsage, InstanceSample, NetRate, NodeSample
from gdos_sdk.protocol import Heartbeat, encode

T0 = 1_700_000_000.25


def node_sample(ts: float, rng: random.Random, nets: int = 2) -> NodeSample:
    return NodeSample(
        ts=ts,
        cpu_percent=rng.uniform(0, 100),
        load1=rng.uniform(0, 4),
        load5=rng.uniform(0, 4),
        load15=0.0,
        mem_total=2**34,
        mem_used=rng.randrange(2**34),
        mem_percent=rng.uniform(0, 100),
        swap_total=0,
        swap_used=0,
        disk_read_bps=rng.uniform(0, 1e6),
        disk_write_bps=rng.uniform(0, 1e6),
        uptime_seconds=ts - T0,
        disks=[DiskUsage("/", 2**37, 2**36, 50.0), DiskUsage("/data", 2**38, 2**30, 0.4)],
        net=[NetRate(f"eth{i}", rng.uniform(0, 1e6), rng.uniform(0, 1e6)) for i in range(nets)],
    )


def instance_sample(ts: float, instance_id: str, rng: random.Random) -> InstanceSample:
    return InstanceSample(
        ts, instance_id, rng.uniform(0, 200), rng.randrange(2**30), 1.5, 0, 8, 30, 2
    )


def frame_data(nodes: list[NodeSample], instances: list[InstanceSample]) -> object:
    """A heartbeat as the master's JSON parser hands it over."""
    return json.loads(
        encode(Heartbeat(ts=T0 + 100, node_samples=nodes, instance_samples=instances))
    )


def test_columns_hold_the_metrics_of_names_py() -> None:
    rng = random.Random(1)
    nodes = [node_sample(T0 + i, rng, nets=1 + i % 3) for i in range(15)]
    instances = [instance_sample(T0 + i, iid, rng) for i in range(15) for iid in ("a", "b")]
    batch = read_batch(frame_data(nodes, instances))
    assert batch is not None
    expected: dict[str, list[tuple[int, float]]] = {}
    for sample in nodes:
        for metric, value in node_values(sample).items():
            expected.setdefault(metric, []).append((int(sample.ts), value))
    got = {metric: list(zip(s, v, strict=True)) for metric, s, v in node_columns(batch.nodes)}
    assert got == expected
    for iid, (times, columns) in instance_columns(batch.instances).items():
        mine = [s for s in instances if s.instance_id == iid]
        assert times == [s.ts for s in mine]
        assert {m: v for m, _, v in columns} == {
            m: [instance_values(s)[m] for s in mine] for m in instance_values(mine[0])
        }


def test_the_fleet_stores_what_sample_by_sample_adds_stored() -> None:
    rng = random.Random(2)
    # Consecutive seconds (the batch path), a gap, a chunk boundary and an older sample.
    times = [T0 + i for i in range(40)] + [T0 + 45, T0 + 598, T0 + 599, T0 + 600, T0 + 3]
    nodes = [node_sample(t, rng) for t in times]
    fleet = Fleet(heartbeat_interval=1, offline_grace=5, wall_clock=lambda: T0 + 700)
    fleet.runtime("n").approved = True
    for start in range(0, len(nodes), 15):
        batch = read_batch(frame_data(nodes[start : start + 15], []))
        assert batch is not None
        fleet.ingest("n", batch)
    reference = SeriesStore()
    for sample in nodes:
        reference.add("node:n", node_values(sample), sample.ts)
    assert fleet.store.metrics("node:n") == reference.metrics("node:n")
    for metric in reference.metrics("node:n"):
        for agg in ("avg", "max"):
            args = {"start": T0 - 60, "end": T0 + 700, "agg": agg}
            assert fleet.store.query("node:n", metric, **args) == reference.query(
                "node:n", metric, **args
            )
            minute = {**args, "step": 60}
            assert fleet.store.query("node:n", metric, **minute) == reference.query(
                "node:n", metric, **minute
            )
    assert fleet.store.latest("node:n") == reference.latest("node:n")
    latest = fleet.nodes["n"].latest
    assert latest is not None and latest.ts == T0 + 600 and latest == nodes[-2]


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(extra=1),
        lambda d: d["node_samples"][0].update(cpu_percent="12"),
        lambda d: d["node_samples"][0].update(cpu_percent=True),
        lambda d: d["node_samples"][0].update(mem_used=10**400),
        lambda d: d["node_samples"][0].pop("load1"),
        lambda d: d["node_samples"][0]["disks"][0].update(size=1),
        lambda d: d["node_samples"][0]["net"][0].update(interface=7),
        lambda d: d["node_samples"][0]["net"][0].update(rx_bps=float("inf")),
        lambda d: d["node_samples"].append([]),
        lambda d: d["instance_samples"][0].update(instance_id=None),
        lambda d: d["instance_samples"][0].update(threads=[1]),
        lambda d: d.update(ts="now"),
    ],
)
def test_anything_unusual_takes_the_general_path(change: object) -> None:
    rng = random.Random(3)
    data = frame_data([node_sample(T0, rng)], [instance_sample(T0, "a", rng)])
    assert read_batch(data) is not None
    change(data)  # type: ignore[operator]
    assert read_batch(data) is None


def test_model_and_wire_batches_are_the_same() -> None:
    rng = random.Random(4)
    nodes = [node_sample(T0 + i, rng) for i in range(3)]
    instances = [instance_sample(T0, "a", rng)]
    assert read_batch(frame_data(nodes, instances)) == SampleBatch.from_models(nodes, instances)


def test_samples_listing_the_same_devices_give_the_same_columns_in_order() -> None:
    # Every sample names the same interfaces and mount points (the usual heartbeat): one
    # column per device, in the order the samples list them (the order decides which
    # series a cap refuses), the totals as floats.
    rng = random.Random(5)
    nodes = [node_sample(T0 + i, rng, nets=2) for i in range(20)]
    batch = read_batch(frame_data(nodes, []))
    assert batch is not None
    columns = node_columns(batch.nodes)
    names = [metric for metric, _, _ in columns]
    assert names[-8:] == [
        "net_rx",
        "net_tx",
        "net_rx:eth0",
        "net_tx:eth0",
        "net_rx:eth1",
        "net_tx:eth1",
        "disk_percent:/",
        "disk_percent:/data",
    ]
    expected: dict[str, list[tuple[int, float]]] = {}
    for sample in nodes:
        for metric, value in node_values(sample).items():
            expected.setdefault(metric, []).append((int(sample.ts), value))
    assert {m: list(zip(s, v, strict=True)) for m, s, v in columns} == expected
    totals = dict((m, v) for m, _, v in columns)
    assert all(type(v) is float for v in totals["net_rx"])


def test_a_nan_anywhere_in_a_column_takes_the_general_path() -> None:
    # min() and max() step over a NaN that is not first: the column check must not.
    rng = random.Random(6)
    data = frame_data([node_sample(T0 + i, rng) for i in range(3)], [])
    data["node_samples"][1]["cpu_percent"] = math.nan  # type: ignore[index]
    assert read_batch(data) is None
    data = frame_data([node_sample(T0 + i, rng) for i in range(3)], [])
    data["node_samples"][2]["net"][1]["rx_bps"] = math.nan  # type: ignore[index]
    assert read_batch(data) is None


def test_parse_heartbeat_reads_what_json_loads_reads() -> None:
    rng = random.Random(7)
    nodes = [node_sample(T0 + i, rng) for i in range(20)]
    text = encode(Heartbeat(ts=T0 + 100, node_samples=nodes, instance_samples=[]))
    assert len(text) < ORJSON_MAX
    batch = parse_heartbeat(text)
    assert batch is not None and batch.checked
    assert batch == read_batch(json.loads(text))
    # A backlog frame past ORJSON_MAX goes to Python's parser, with the same result.
    many = [node_sample(T0 + i, rng) for i in range(400)]
    text = encode(Heartbeat(ts=T0 + 500, node_samples=many, instance_samples=[]))
    assert len(text) >= ORJSON_MAX
    assert (
        parse_heartbeat(text) == read_batch(json.loads(text)) == SampleBatch.from_models(many, [])
    )


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"heartbeat","ts":1,"node_samples":[],"instance_samples":[NaN]}',
        '{"type":"heartbeat","ts":1,"node_samples":[],"instance_samples":[],"x":"\\ud800"}',
        "[" * 5000 + "]" * 5000,
        '{"type":"hello"}',
        "not json",
    ],
)
def test_parse_heartbeat_leaves_anything_else_to_the_general_decoder(text: str) -> None:
    assert parse_heartbeat(text) is None


def test_latest_sample_text_is_json_of_the_sample() -> None:
    rng = random.Random(8)
    nodes = [node_sample(T0 + i, rng) for i in range(3)]
    instances = [instance_sample(T0 + 2, "a", rng)]
    fleet = Fleet(
        heartbeat_interval=1,
        offline_grace=5,
        wall_clock=lambda: T0 + 5,
        placement=lambda node_id: ["a"],
    )
    fleet.runtime("n").approved = True
    batch = parse_heartbeat(
        encode(Heartbeat(ts=T0 + 3, node_samples=nodes, instance_samples=instances))
    )
    assert batch is not None
    fleet.ingest("n", batch)
    rt = fleet.nodes["n"]
    assert rt.latest == nodes[-1]
    assert rt.instance_sample("a") == instances[0]
    assert json.loads(rt.latest_text or "") == json.loads(json.dumps(batch.nodes[-1]))
