"""Prometheus text exposition (format 0.0.4) of the fleet's latest values.

Served at ``/metrics`` with the same authentication as the API (a viewer token in
Prometheus' ``authorization`` block). Only the newest value of each metric is exported: GDOS
keeps one hour at 1 s and a day at 1 min itself; Prometheus is where long-term history goes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from gdos_sdk.metrics.names import INSTANCE_METRICS, NODE_METRICS

__all__ = ["render_prometheus"]

_HELP = {
    "cpu": "CPU use in percent of one core (instances) or of all cores (nodes)",
    "load1": "load average over 1 minute",
    "load5": "load average over 5 minutes",
    "load15": "load average over 15 minutes",
    "mem_used": "memory in use, bytes",
    "mem_percent": "memory in use, percent",
    "swap_used": "swap in use, bytes",
    "disk_read": "disk reads, bytes per second",
    "disk_write": "disk writes, bytes per second",
    "net_rx": "network received, bytes per second",
    "net_tx": "network sent, bytes per second",
    "uptime": "seconds since boot",
    "rss": "resident memory of the process tree, bytes",
    "io_read": "storage reads of the process tree, bytes per second",
    "io_write": "storage writes of the process tree, bytes per second",
    "threads": "threads in the process tree",
    "open_files": "open file descriptors",
    "processes": "processes in the process tree",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _family(
    name: str, kind: str, help_text: str, rows: Iterable[tuple[dict[str, str], float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in rows]
    return lines


def render_prometheus(master: Any) -> str:
    """The exposition text for ``master`` (a :class:`gdos_master.app.Master`)."""
    store = master.fleet.store
    fleet = master.fleet
    # Plain rows, not API models: this endpoint is scraped often, fleets are large.
    nodes = [
        SimpleNamespace(
            id=r["id"], hostname=r["hostname"], alias=r["alias"], online=fleet.is_online(r["id"])
        )
        for r in master.db.all("SELECT id, hostname, alias FROM nodes WHERE planned = 0")
    ]
    instances = [
        SimpleNamespace(
            id=r["id"],
            node_id=r["node_id"],
            system_id=r["system_id"],
            module=r["module"],
            package=r["package"],
            version=r["version"],
            running=r["state"] == "running",
            health=r["health"],
            restarts=r["restarts"],
            online=fleet.connection(r["node_id"]) is not None,
        )
        for r in master.db.all(
            "SELECT i.id, i.node_id, i.system_id, i.package, i.version, i.state, i.health,"
            " i.restarts,"
            " m.name AS module FROM instances i JOIN modules m ON m.id = i.module_id"
        )
    ]
    out: list[str] = []
    node_labels = {n.id: {"node_id": n.id, "hostname": n.hostname, "alias": n.alias} for n in nodes}
    out += _family(
        "gdos_node_up",
        "gauge",
        "1 when the node's worker is connected",
        ((node_labels[n.id], 1.0 if n.online else 0.0) for n in nodes),
    )
    node_latest = {n.id: store.latest(f"node:{n.id}") for n in nodes if n.online}
    for metric in NODE_METRICS:
        rows = [
            (node_labels[nid], values[metric][1])
            for nid, values in node_latest.items()
            if metric in values
        ]
        out += _family(f"gdos_node_{metric}", "gauge", _HELP[metric], rows)
    disk_rows = []
    for nid, values in node_latest.items():
        for name, (_, value) in values.items():
            if name.startswith("disk_percent:"):
                disk_rows.append(({**node_labels[nid], "mountpoint": name.split(":", 1)[1]}, value))
    out += _family("gdos_node_disk_percent", "gauge", "file system usage, percent", disk_rows)

    inst_labels = {
        i.id: {
            "instance_id": i.id,
            "node_id": i.node_id,
            "system_id": i.system_id,
            "module": i.module,
            "package": i.package,
            "version": i.version,
        }
        for i in instances
    }
    out += _family(
        "gdos_instance_running",
        "gauge",
        "1 when the instance is running",
        ((inst_labels[i.id], 1.0 if i.running else 0.0) for i in instances),
    )
    out += _family(
        "gdos_instance_healthy",
        "gauge",
        "1 when the instance's health check passes, 0 while starting or unhealthy"
        " (instances with a running check only)",
        (
            (inst_labels[i.id], 1.0 if i.health == "healthy" else 0.0)
            for i in instances
            if i.running and i.health != "none"
        ),
    )
    out += _family(
        "gdos_instance_restarts",
        "gauge",
        "automatic restarts so far",
        ((inst_labels[i.id], float(i.restarts)) for i in instances),
    )
    inst_latest = {i.id: store.latest(f"instance:{i.id}") for i in instances if i.online}
    for metric in INSTANCE_METRICS:
        rows = [
            (inst_labels[iid], values[metric][1])
            for iid, values in inst_latest.items()
            if metric in values
        ]
        out += _family(f"gdos_instance_{metric}", "gauge", _HELP[metric], rows)

    stats = master.fleet.stats
    out += _family(
        "gdos_master_heartbeats_total",
        "counter",
        "heartbeats received",
        [({}, float(stats.heartbeats))],
    )
    out += _family(
        "gdos_master_node_samples_total",
        "counter",
        "node samples ingested",
        [({}, float(stats.node_samples))],
    )
    out += _family(
        "gdos_master_instance_samples_total",
        "counter",
        "instance samples ingested",
        [({}, float(stats.instance_samples))],
    )
    out += _family(
        "gdos_master_ingest_lag_seconds",
        "gauge",
        "age of the newest sample of the last heartbeat when it arrived",
        [({}, stats.last_lag)],
    )
    out += _family(
        "gdos_master_event_loop_lag_max_seconds",
        "gauge",
        "largest delay of the master's event loop over the last 10-20 seconds",
        [({}, stats.loop_lag.value)],
    )
    out += _family(
        "gdos_master_agent_disconnects_total",
        "counter",
        "agent connections closed (either side)",
        [({}, float(stats.disconnects))],
    )
    out += _family(
        "gdos_master_gc_full_collections_total",
        "counter",
        "full garbage collections run by the heap keeper (see docs/architecture.md)",
        [({}, float(master.heap.full_collections))],
    )
    out += _family(
        "gdos_master_gc_last_full_pause_seconds",
        "gauge",
        "how long the last full garbage collection held the event loop",
        [({}, master.heap.last_full_pause)],
    )
    out += _family(
        "gdos_master_ingest_lag_max_seconds",
        "gauge",
        "largest ingest lag over the last 10-20 seconds",
        [({}, stats.recent_max_lag)],
    )
    out += _family(
        "gdos_master_agent_frames_total",
        "counter",
        "frames received on agent channels",
        [({}, float(stats.frames))],
    )
    out += _family(
        "gdos_master_agent_frame_max_bytes",
        "gauge",
        "largest agent frame received since the master started (the limit is 4 MiB)",
        [({}, float(stats.largest_frame))],
    )
    out += _family(
        "gdos_master_samples_dropped_total",
        "counter",
        "samples not kept, by reason (pending node, instance not on the sender,"
        " timestamp out of window, series cap)",
        [({"reason": reason}, float(count)) for reason, count in stats.dropped.items()],
    )
    out += _family(
        "gdos_master_series",
        "gauge",
        "time series held in memory",
        [({}, float(store.series_count()))],
    )
    out += _family(
        "gdos_master_nodes_online",
        "gauge",
        "connected nodes",
        [({}, float(master.fleet.online_count()))],
    )
    return "\n".join(out) + "\n"
