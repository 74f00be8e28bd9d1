"""Heartbeat samples as metric columns, without a model object per sample (the ingest path).

A fleet of 10,000 nodes sends 10,000 node samples a second. Building a
:class:`~gdos_sdk.models.NodeSample` for each (and its disks and interfaces), then a
metric dict (:func:`~gdos_sdk.metrics.names.node_values`), then storing value by value
took more than half of the master's event loop. Here a heartbeat's samples stay the
plain dicts the JSON parser made (orjson, in :func:`parse_heartbeat`); :func:`read_batch`
checks them (exactly the model's keys, finite numbers where the model has numbers,
strings where it has strings) and
:func:`node_columns` / :func:`instance_columns` turn a batch into one list of values
per metric, which :meth:`~gdos_sdk.metrics.series.SeriesStore.add_columns` stores in
one call per metric. Anything unusual makes :func:`read_batch` return None, and the
caller takes the general, model-based path, which reports the problem precisely.

The metric names and values are those of :mod:`gdos_sdk.metrics.names` (a test holds
the two to the same answers).

Example::

    batch = parse_heartbeat(frame)  # None: use gdos_sdk.protocol.decode
    if batch is not None:
        for metric, seconds, values in node_columns(batch.nodes):
            ...
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import attrs
import orjson

from gdos_sdk.codec import parse_json, unstructure
from gdos_sdk.models import InstanceSample, NodeSample

__all__ = [
    "ORJSON_MAX",
    "Column",
    "SampleBatch",
    "instance_columns",
    "node_columns",
    "parse_heartbeat",
    "read_batch",
    "sample_text",
]

# (metric, seconds, values): what SeriesStore.add_columns takes.
Column = tuple[str, list[int], list[float]]

# Heartbeats shorter than this are parsed by orjson (see parse_heartbeat).
ORJSON_MAX = 64 * 1024
_NUMBERS = frozenset({int, float})
# Larger numbers are refused here (a float sum or product of them would overflow).
_BIG = 1e300

# Node metrics read straight from one field of the sample (gdos_sdk.metrics.names).
_NODE_FIELDS = (
    ("cpu", "cpu_percent"),
    ("load1", "load1"),
    ("load5", "load5"),
    ("load15", "load15"),
    ("mem_used", "mem_used"),
    ("mem_percent", "mem_percent"),
    ("swap_used", "swap_used"),
    ("disk_read", "disk_read_bps"),
    ("disk_write", "disk_write_bps"),
    ("uptime", "uptime_seconds"),
)
_NODE_NUMBERS = (
    "ts",
    "cpu_percent",
    "load1",
    "load5",
    "load15",
    "mem_total",
    "mem_used",
    "mem_percent",
    "swap_total",
    "swap_used",
    "disk_read_bps",
    "disk_write_bps",
    "uptime_seconds",
)
_INSTANCE_FIELDS = (
    ("cpu", "cpu_percent"),
    ("rss", "rss_bytes"),
    ("io_read", "read_bps"),
    ("io_write", "write_bps"),
    ("threads", "threads"),
    ("open_files", "open_files"),
    ("processes", "processes"),
)
_NODE_KEYS = frozenset(f.name for f in attrs.fields(NodeSample))
_INSTANCE_KEYS = frozenset(f.name for f in attrs.fields(InstanceSample))
_INSTANCE_NUMBERS = tuple(sorted(_INSTANCE_KEYS - {"instance_id"}))
_DISK_KEYS = frozenset({"mountpoint", "total_bytes", "used_bytes", "percent"})
_NET_KEYS = frozenset({"interface", "rx_bps", "tx_bps"})
_HEARTBEAT_KEYS = frozenset({"type", "ts", "node_samples", "instance_samples"})


@attrs.define
class SampleBatch:
    """The samples of one heartbeat, checked: plain dicts shaped exactly like the models'
    unstructured form (what the live channel and the latest-sample cache pass on)."""

    nodes: list[dict[str, Any]]
    instances: list[dict[str, Any]]
    # Checked by read_batch: every number finite (no NaN, which orjson cannot write). Not
    # part of equality: the same samples are the same batch however they came.
    checked: bool = attrs.field(default=False, eq=False)

    @classmethod
    def from_models(
        cls, nodes: Iterable[NodeSample], instances: Iterable[InstanceSample]
    ) -> SampleBatch:
        return cls([unstructure(s) for s in nodes], [unstructure(s) for s in instances])


def _numbers(rows: list[dict[str, Any]], keys: Iterable[str]) -> bool:
    """Whether every row holds a plain int or float (not a bool, not a string, not NaN) of
    a sane size at every key."""
    numbers = _NUMBERS
    for key in keys:
        values = [row[key] for row in rows]
        if not numbers.issuperset(map(type, values)):
            return False
        if not min(values) > -_BIG or not max(values) < _BIG:
            return False
        total = sum(values)
        if total != total:  # a NaN that min and max passed over
            return False
    return True


def _number(value: Any) -> bool:
    return type(value) in _NUMBERS and -_BIG < value < _BIG


def _node_ok(sample: Any) -> bool:
    if type(sample) is not dict or sample.keys() != _NODE_KEYS:
        return False
    disks, net = sample["disks"], sample["net"]
    if type(disks) is not list or type(net) is not list:
        return False
    for disk in disks:
        if (
            type(disk) is not dict
            or disk.keys() != _DISK_KEYS
            or type(disk["mountpoint"]) is not str
            or not _number(disk["total_bytes"])
            or not _number(disk["used_bytes"])
            or not _number(disk["percent"])
        ):
            return False
    for rate in net:
        if (
            type(rate) is not dict
            or rate.keys() != _NET_KEYS
            or type(rate["interface"]) is not str
            or not _number(rate["rx_bps"])
            or not _number(rate["tx_bps"])
        ):
            return False
    return True


def read_batch(data: Any) -> SampleBatch | None:
    """The samples of a parsed heartbeat frame, or None when anything in it is unusual."""
    if type(data) is not dict or data.keys() != _HEARTBEAT_KEYS:
        return None
    nodes, instances = data["node_samples"], data["instance_samples"]
    if type(nodes) is not list or type(instances) is not list or not _number(data["ts"]):
        return None
    for sample in nodes:
        if not _node_ok(sample):
            return None
    if nodes and not _numbers(nodes, _NODE_NUMBERS):
        return None
    for sample in instances:
        if (
            type(sample) is not dict
            or sample.keys() != _INSTANCE_KEYS
            or type(sample["instance_id"]) is not str
        ):
            return None
    if instances and not _numbers(instances, _INSTANCE_NUMBERS):
        return None
    return SampleBatch(nodes, instances, checked=True)


def parse_heartbeat(text: str | bytes) -> SampleBatch | None:
    """The samples of a heartbeat frame, or None when the frame is anything else, is not
    JSON the parser reads (orjson refuses NaN, lone surrogates, deep nesting...) or is
    unusual in any way: the caller then takes the general decoder
    (:func:`gdos_sdk.protocol.decode`), which reads what Python's parser reads and reports
    the problem precisely.

    orjson parses a heartbeat about three times as fast as ``json.loads``
    (benchmarks/bench_ingest.py), and heartbeats are the bulk of a large fleet's traffic.
    Frames of :data:`ORJSON_MAX` characters or more (a worker's backlog after an outage,
    rare) go to ``json.loads``: orjson's working memory for them would stay in the
    master's resident memory as free heap.
    """
    try:
        data = orjson.loads(text) if len(text) < ORJSON_MAX else parse_json(text, max_depth=None)
    except ValueError:  # orjson.JSONDecodeError is one
        return None
    return read_batch(data)


def sample_text(sample: dict[str, Any], *, checked: bool) -> str:
    """A sample of a batch as compact JSON text (the latest-sample cache).

    ``checked``: the batch came through :func:`read_batch` (no NaN), so orjson may write
    it; otherwise, or for an integer past 64 bits, ``json.dumps`` does.
    """
    if checked:
        try:
            return orjson.dumps(sample).decode()
        except TypeError:
            pass
    return json.dumps(sample, separators=(",", ":"))


def node_columns(samples: list[dict[str, Any]]) -> list[Column]:
    """Every node metric of ``samples`` (checked by :func:`read_batch`), oldest first."""
    seconds = [int(s["ts"]) for s in samples]
    columns: list[Column] = [
        (metric, seconds, [s[field] for s in samples]) for metric, field in _NODE_FIELDS
    ]
    rx_total: list[float] = []
    tx_total: list[float] = []
    devices: dict[str, tuple[list[int], list[float]]] = {}
    for second, sample in zip(seconds, samples, strict=True):
        rx = tx = 0.0
        for rate in sample["net"]:
            rx += rate["rx_bps"]
            tx += rate["tx_bps"]
            name = rate["interface"]
            _put(devices, f"net_rx:{name}", second, rate["rx_bps"])
            _put(devices, f"net_tx:{name}", second, rate["tx_bps"])
        rx_total.append(rx)
        tx_total.append(tx)
        for disk in sample["disks"]:
            _put(devices, f"disk_percent:{disk['mountpoint']}", second, disk["percent"])
    columns.append(("net_rx", seconds, rx_total))
    columns.append(("net_tx", seconds, tx_total))
    columns.extend((metric, found[0], found[1]) for metric, found in devices.items())
    return columns


def _put(
    devices: dict[str, tuple[list[int], list[float]]], metric: str, second: int, value: float
) -> None:
    found = devices.get(metric)
    if found is None:
        devices[metric] = ([second], [value])
    else:
        found[0].append(second)
        found[1].append(value)


def instance_columns(samples: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[Column]]]:
    """Every instance metric of ``samples`` (checked), by instance id, oldest first, with
    the samples' times."""
    by_instance: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        by_instance.setdefault(sample["instance_id"], []).append(sample)
    out: dict[str, tuple[list[float], list[Column]]] = {}
    for instance_id, rows in by_instance.items():
        times = [s["ts"] for s in rows]
        seconds = [int(t) for t in times]
        out[instance_id] = (
            times,
            [(metric, seconds, [s[field] for s in rows]) for metric, field in _INSTANCE_FIELDS],
        )
    return out
