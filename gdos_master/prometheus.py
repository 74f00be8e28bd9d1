"""Prometheus exposition of the fleet at ``/metrics``: text format 0.0.4 or OpenMetrics 1.0.

Served with the same authentication as the API (a viewer token in Prometheus'
``authorization`` block). A scraper that sends ``Accept: application/openmetrics-text`` gets
OpenMetrics (``# UNIT`` lines, counters named without ``_total`` in their metadata, ``# EOF``);
anything else gets the classic text format.

Names follow Prometheus' conventions: base units in the name (``_bytes``, ``_seconds``),
shares as ``_ratio`` from 0 to 1, counters end in ``_total``. Gauges carry the newest sample
(GDOS keeps an hour at 1 s and a day at 1 min itself; long-term history is Prometheus' job).
Byte and CPU counters are the integral of the workers' per-second rates over the samples the
master received (:class:`RateTotals`): they start at 0 when the master starts and skip gaps
longer than a minute, which ``rate()`` and ``increase()`` handle as any counter reset.
docs/monitoring.md lists every family.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import attrs

from gdos_sdk.__about__ import __version__

__all__ = [
    "CONTENT_TYPE",
    "INSTANCE_RATES",
    "NODE_RATES",
    "OPENMETRICS_CONTENT_TYPE",
    "Family",
    "RateTotals",
    "collect",
    "render",
    "render_prometheus",
    "wants_openmetrics",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# Rates integrated into counters, per target kind (names of gdos_sdk.metrics.names).
NODE_RATES = ("disk_read", "disk_write", "net_rx", "net_tx")
INSTANCE_RATES = ("io_read", "io_write", "cpu")

Row = tuple[Mapping[str, str], float]


@attrs.define
class RateTotals:
    """Running totals of per-second rates: the counters behind ``*_bytes_total``.

    Each sample's rate covers the time since the previous sample of its target, so the
    total grows by ``rate * (ts - previous ts)``. The first sample of a target only sets the
    starting time; a gap longer than ``max_gap`` (an outage) is not filled in.

    Example::

        totals = RateTotals()
        totals.add("node:n1", 100.0, {"net_rx": 10.0}, ("net_rx",))
        totals.add("node:n1", 101.0, {"net_rx": 10.0}, ("net_rx",))
        totals.get("node:n1")  # {"net_rx": 10.0}
    """

    max_gap: float = 60.0
    _last: dict[str, float] = attrs.field(factory=dict)
    _totals: dict[str, dict[str, float]] = attrs.field(factory=dict)

    def add(
        self, target: str, ts: float, values: Mapping[str, float], names: Sequence[str]
    ) -> None:
        previous = self._last.get(target)
        if previous is not None and ts <= previous:
            return  # a duplicate or out-of-order sample: already counted
        self._last[target] = ts
        if previous is None or ts - previous > self.max_gap:
            return
        elapsed = ts - previous
        totals = self._totals.get(target)
        if totals is None:
            totals = self._totals[target] = dict.fromkeys(names, 0.0)
        for name in names:
            rate = values.get(name)
            if rate is not None and rate > 0 and math.isfinite(rate):
                totals[name] = totals.get(name, 0.0) + rate * elapsed

    def add_many(
        self, target: str, times: Sequence[float], rates: Mapping[str, Sequence[float]]
    ) -> None:
        """:meth:`add` of every sample ``i``: at ``times[i]``, each ``rates[name][i]``."""
        previous = self._last.get(target)
        # Which samples count, and for how long, first; then each rate a column at a time
        # (the same additions in the same order as sample by sample).
        steps: list[tuple[int, float]] = []
        for i, ts in enumerate(times):
            if previous is not None and ts <= previous:
                continue
            before, previous = previous, ts
            if before is not None and ts - before <= self.max_gap:
                steps.append((i, ts - before))
        if previous is not None:
            self._last[target] = previous
        if not steps:
            return
        totals = self._totals.get(target)
        if totals is None:
            totals = self._totals[target] = dict.fromkeys(rates, 0.0)
        isfinite = math.isfinite
        for name, column in rates.items():
            total = totals.get(name, 0.0)
            for i, elapsed in steps:
                rate = column[i]
                if rate > 0 and isfinite(rate):
                    total += rate * elapsed
            if total or name in totals:
                totals[name] = total

    def get(self, target: str) -> Mapping[str, float]:
        return self._totals.get(target, {})

    def drop(self, target: str) -> None:
        self._last.pop(target, None)
        self._totals.pop(target, None)


@attrs.frozen
class Family:
    """One metric family: its name (with ``_total`` for counters), type, unit, help, rows."""

    name: str
    kind: str  # gauge | counter
    help: str
    rows: list[Row]
    unit: str = ""


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str, *, openmetrics: bool) -> str:
    text = value.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Family], *, openmetrics: bool = False) -> str:
    """Exposition text of ``families``: classic text format, or OpenMetrics with ``# EOF``."""
    out: list[str] = []
    for family in families:
        # OpenMetrics names a counter family without its samples' _total suffix.
        meta = family.name
        if openmetrics and family.kind == "counter":
            meta = family.name.removesuffix("_total")
        out.append(f"# HELP {meta} {_escape_help(family.help, openmetrics=openmetrics)}")
        out.append(f"# TYPE {meta} {family.kind}")
        if openmetrics and family.unit:
            out.append(f"# UNIT {meta} {family.unit}")
        out += [f"{family.name}{_labels(labels)} {_number(v)}" for labels, v in family.rows]
    if openmetrics:
        out.append("# EOF")
    return "\n".join(out) + "\n"


def wants_openmetrics(accept: str) -> bool:
    """True when an ``Accept`` header asks for OpenMetrics (as Prometheus 2.5+ does)."""
    return "application/openmetrics-text" in accept.lower()


def _latest(values: Mapping[str, tuple[int, float]], name: str) -> float | None:
    found = values.get(name)
    return None if found is None else found[1]


def _gauges(
    targets: Mapping[str, tuple[Mapping[str, str], Mapping[str, tuple[int, float]]]],
    metric: str,
    scale: float = 1.0,
) -> list[Row]:
    rows: list[Row] = []
    for labels, values in targets.values():
        value = _latest(values, metric)
        if value is not None:
            rows.append((labels, value * scale))
    return rows


def collect(master: Any) -> list[Family]:
    """Every family for ``master`` (a :class:`gdos_master.app.Master`), in exposition order."""
    store = master.fleet.store
    fleet = master.fleet
    totals: RateTotals = fleet.totals
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
            running=r["state"] == "running",
            health=r["health"],
            restarts=r["restarts"],
            online=fleet.connection(r["node_id"]) is not None,
            labels={
                "instance_id": r["id"],
                "node_id": r["node_id"],
                "system_id": r["system_id"],
                "module": r["module"],
                "package": r["package"],
                "version": r["version"],
            },
        )
        for r in master.db.all(
            "SELECT i.id, i.node_id, i.system_id, i.package, i.version, i.state, i.health,"
            " i.restarts, m.name AS module FROM instances i JOIN modules m ON m.id = i.module_id"
        )
    ]
    families = [
        Family(
            "gdos_build_info",
            "gauge",
            "always 1; the master's version in the version label",
            [({"version": __version__}, 1.0)],
        )
    ]

    node_labels = {n.id: {"node_id": n.id, "hostname": n.hostname, "alias": n.alias} for n in nodes}
    online = {n.id: (node_labels[n.id], store.latest(f"node:{n.id}")) for n in nodes if n.online}
    boot_rows: list[Row] = []
    disk_rows: list[Row] = []
    for labels, values in online.values():
        uptime = values.get("uptime")
        if uptime is not None:
            boot_rows.append((labels, float(round(uptime[0] - uptime[1]))))
        for name, (_, value) in values.items():
            if name.startswith("disk_percent:"):
                mount = name.split(":", 1)[1]
                disk_rows.append(({**labels, "mountpoint": mount}, value / 100))

    def node_counter(rate: str, scale: float = 1.0) -> list[Row]:
        rows: list[Row] = []
        for n in nodes:
            total = totals.get(f"node:{n.id}").get(rate)
            if total is not None:
                rows.append((node_labels[n.id], total * scale))
        return rows

    families += [
        Family(
            "gdos_node_up",
            "gauge",
            "1 when the node's worker is connected",
            [(node_labels[n.id], 1.0 if n.online else 0.0) for n in nodes],
        ),
        Family(
            "gdos_node_cpu_usage_ratio",
            "gauge",
            "share of all CPU cores in use, 0 to 1",
            _gauges(online, "cpu", 0.01),
            "ratio",
        ),
        Family("gdos_node_load1", "gauge", "load average over 1 minute", _gauges(online, "load1")),
        Family("gdos_node_load5", "gauge", "load average over 5 minutes", _gauges(online, "load5")),
        Family(
            "gdos_node_load15", "gauge", "load average over 15 minutes", _gauges(online, "load15")
        ),
        Family(
            "gdos_node_memory_used_bytes",
            "gauge",
            "memory in use",
            _gauges(online, "mem_used"),
            "bytes",
        ),
        Family(
            "gdos_node_memory_usage_ratio",
            "gauge",
            "share of memory in use, 0 to 1",
            _gauges(online, "mem_percent", 0.01),
            "ratio",
        ),
        Family(
            "gdos_node_swap_used_bytes",
            "gauge",
            "swap in use",
            _gauges(online, "swap_used"),
            "bytes",
        ),
        Family(
            "gdos_node_filesystem_usage_ratio",
            "gauge",
            "share of a file system in use, 0 to 1",
            disk_rows,
            "ratio",
        ),
        Family(
            "gdos_node_boot_time_seconds",
            "gauge",
            "when the node booted, Unix time",
            boot_rows,
            "seconds",
        ),
        Family(
            "gdos_node_disk_read_bytes_total",
            "counter",
            "bytes read from disks, summed from the 1 s samples the master received",
            node_counter("disk_read"),
            "bytes",
        ),
        Family(
            "gdos_node_disk_written_bytes_total",
            "counter",
            "bytes written to disks, summed from the 1 s samples the master received",
            node_counter("disk_write"),
            "bytes",
        ),
        Family(
            "gdos_node_network_receive_bytes_total",
            "counter",
            "bytes received on all interfaces, summed from the 1 s samples the master received",
            node_counter("net_rx"),
            "bytes",
        ),
        Family(
            "gdos_node_network_transmit_bytes_total",
            "counter",
            "bytes sent on all interfaces, summed from the 1 s samples the master received",
            node_counter("net_tx"),
            "bytes",
        ),
    ]

    inst_online = {
        i.id: (i.labels, store.latest(f"instance:{i.id}")) for i in instances if i.online
    }

    def inst_counter(rate: str, scale: float = 1.0) -> list[Row]:
        rows: list[Row] = []
        for i in instances:
            total = totals.get(f"instance:{i.id}").get(rate)
            if total is not None:
                rows.append((i.labels, total * scale))
        return rows

    families += [
        Family(
            "gdos_instance_running",
            "gauge",
            "1 when the instance is running",
            [(i.labels, 1.0 if i.running else 0.0) for i in instances],
        ),
        Family(
            "gdos_instance_healthy",
            "gauge",
            "1 when the instance's health check passes, 0 while starting or unhealthy"
            " (running instances with a check only)",
            [
                (i.labels, 1.0 if i.health == "healthy" else 0.0)
                for i in instances
                if i.running and i.health != "none"
            ],
        ),
        Family(
            "gdos_instance_restarts_total",
            "counter",
            "automatic restarts of the instance",
            [(i.labels, float(i.restarts)) for i in instances],
        ),
        Family(
            "gdos_instance_cpu_seconds_total",
            "counter",
            "CPU time used by the process tree, summed from the 1 s samples the master received",
            inst_counter("cpu", 0.01),
            "seconds",
        ),
        Family(
            "gdos_instance_resident_memory_bytes",
            "gauge",
            "resident memory of the process tree",
            _gauges(inst_online, "rss"),
            "bytes",
        ),
        Family(
            "gdos_instance_read_bytes_total",
            "counter",
            "storage bytes read by the process tree, summed from the 1 s samples",
            inst_counter("io_read"),
            "bytes",
        ),
        Family(
            "gdos_instance_written_bytes_total",
            "counter",
            "storage bytes written by the process tree, summed from the 1 s samples",
            inst_counter("io_write"),
            "bytes",
        ),
        Family(
            "gdos_instance_threads",
            "gauge",
            "threads in the process tree",
            _gauges(inst_online, "threads"),
        ),
        Family(
            "gdos_instance_open_fds",
            "gauge",
            "open file descriptors of the process tree",
            _gauges(inst_online, "open_files"),
        ),
        Family(
            "gdos_instance_processes",
            "gauge",
            "processes in the process tree",
            _gauges(inst_online, "processes"),
        ),
    ]

    stats = fleet.stats
    families += [
        Family(
            "gdos_master_heartbeats_total",
            "counter",
            "heartbeats received",
            [({}, float(stats.heartbeats))],
        ),
        Family(
            "gdos_master_node_samples_total",
            "counter",
            "node samples ingested",
            [({}, float(stats.node_samples))],
        ),
        Family(
            "gdos_master_instance_samples_total",
            "counter",
            "instance samples ingested",
            [({}, float(stats.instance_samples))],
        ),
        Family(
            "gdos_master_agent_disconnects_total",
            "counter",
            "agent connections closed (either side)",
            [({}, float(stats.disconnects))],
        ),
        Family(
            "gdos_master_gc_full_collections_total",
            "counter",
            "full garbage collections run by the heap keeper (see docs/architecture.md)",
            [({}, float(master.heap.full_collections))],
        ),
        Family(
            "gdos_master_ingest_lag_seconds",
            "gauge",
            "age of the newest sample of the last heartbeat when it arrived",
            [({}, stats.last_lag)],
            "seconds",
        ),
        Family(
            "gdos_master_ingest_lag_max_seconds",
            "gauge",
            "largest ingest lag over the last 10-20 seconds",
            [({}, stats.recent_max_lag)],
            "seconds",
        ),
        Family(
            "gdos_master_event_loop_lag_max_seconds",
            "gauge",
            "largest delay of the master's event loop over the last 10-20 seconds",
            [({}, stats.loop_lag.value)],
            "seconds",
        ),
        Family(
            "gdos_master_gc_last_full_pause_seconds",
            "gauge",
            "how long the last full garbage collection held the event loop",
            [({}, master.heap.last_full_pause)],
            "seconds",
        ),
        Family(
            "gdos_master_agent_frames_total",
            "counter",
            "frames received on agent channels",
            [({}, float(stats.frames))],
        ),
        Family(
            "gdos_master_agent_frame_max_bytes",
            "gauge",
            "largest agent frame received since the master started (the limit is 4 MiB)",
            [({}, float(stats.largest_frame))],
            "bytes",
        ),
        Family(
            "gdos_master_samples_dropped_total",
            "counter",
            "samples not kept, by reason (pending node, instance not on the sender,"
            " timestamp out of window, series cap)",
            [({"reason": reason}, float(count)) for reason, count in stats.dropped.items()],
        ),
        Family(
            "gdos_master_series",
            "gauge",
            "time series held in memory",
            [({}, float(store.series_count()))],
        ),
        Family(
            "gdos_master_nodes_online",
            "gauge",
            "connected nodes",
            [({}, float(fleet.online_count()))],
        ),
    ]
    return families


def render_prometheus(master: Any, *, openmetrics: bool = False) -> str:
    """The exposition text for ``master`` in the format the scraper asked for."""
    return render(collect(master), openmetrics=openmetrics)
