"""Flatten samples into named metrics (the names the API, alerts and /metrics use).

Node metrics: ``cpu`` (%), ``load1``/``load5``/``load15``, ``mem_used`` (bytes),
``mem_percent``, ``swap_used`` (bytes), ``disk_read``/``disk_write`` (bytes/s),
``net_rx``/``net_tx`` (bytes/s, all interfaces), ``uptime`` (s), and per device
``disk_percent:<mountpoint>``, ``net_rx:<interface>``, ``net_tx:<interface>``.

Instance metrics (summed over the process tree): ``cpu`` (%), ``rss`` (bytes),
``io_read``/``io_write`` (bytes/s), ``threads``, ``open_files``, ``processes``.

Example::

    node_values(sample)["cpu"]  # 12.5
"""

from __future__ import annotations

from gdos_sdk.errors import ValidationError
from gdos_sdk.models import InstanceSample, NodeSample

__all__ = [
    "AGGS",
    "DEVICE_METRICS",
    "INSTANCE_METRICS",
    "NODE_METRICS",
    "check_agg",
    "check_metric",
    "instance_values",
    "node_values",
]

NODE_METRICS = (
    "cpu",
    "load1",
    "load5",
    "load15",
    "mem_used",
    "mem_percent",
    "swap_used",
    "disk_read",
    "disk_write",
    "net_rx",
    "net_tx",
    "uptime",
)
INSTANCE_METRICS = ("cpu", "rss", "io_read", "io_write", "threads", "open_files", "processes")
#: node metrics per device: ``disk_percent:/``, ``net_rx:eth0``
DEVICE_METRICS = ("disk_percent", "net_rx", "net_tx")
#: how the points within one step are combined
AGGS = ("avg", "min", "max", "last")


def check_metric(metric: str, kind: str | None = None, *, path: str = "query.metric") -> str:
    """``metric`` if it is a metric of ``kind`` (``node``, ``instance`` or either), else a
    ValidationError whose details name the allowed values.

    Example::

        check_metric("cpu", "node")          # "cpu"
        check_metric("disk_percent:/data")   # "disk_percent:/data"
        check_metric("rss", "node")          # ValidationError: ... one of cpu, load1, ...
    """
    base, colon, device = metric.partition(":")
    node_ok = (base in DEVICE_METRICS and bool(device)) if colon else metric in NODE_METRICS
    node_allowed = [*NODE_METRICS, *(f"{m}:<device>" for m in DEVICE_METRICS)]
    if kind == "node":
        ok, allowed = node_ok, node_allowed
    elif kind == "instance":
        ok, allowed = metric in INSTANCE_METRICS, list(INSTANCE_METRICS)
    else:
        ok = node_ok or metric in INSTANCE_METRICS
        allowed = [*node_allowed, *(m for m in INSTANCE_METRICS if m not in NODE_METRICS)]
    if not ok:
        what = f"{kind} metric" if kind else "metric"
        raise ValidationError(
            f"unknown {what} {metric!r}; one of {', '.join(allowed)}",
            details=[{"path": path, "message": f"unknown {what}", "allowed": allowed}],
        )
    return metric


def check_agg(agg: str, *, path: str = "query.agg") -> str:
    """``agg`` if it is one of :data:`AGGS`, else a ValidationError naming them."""
    if agg not in AGGS:
        raise ValidationError(
            f"unknown agg {agg!r}; one of {', '.join(AGGS)}",
            details=[{"path": path, "message": "unknown agg", "allowed": list(AGGS)}],
        )
    return agg


def node_values(sample: NodeSample) -> dict[str, float]:
    """Every metric of one node sample."""
    values = {
        "cpu": sample.cpu_percent,
        "load1": sample.load1,
        "load5": sample.load5,
        "load15": sample.load15,
        "mem_used": float(sample.mem_used),
        "mem_percent": sample.mem_percent,
        "swap_used": float(sample.swap_used),
        "disk_read": sample.disk_read_bps,
        "disk_write": sample.disk_write_bps,
        "uptime": sample.uptime_seconds,
    }
    rx = tx = 0.0
    for net in sample.net:
        rx += net.rx_bps
        tx += net.tx_bps
        values[f"net_rx:{net.interface}"] = net.rx_bps
        values[f"net_tx:{net.interface}"] = net.tx_bps
    values["net_rx"] = rx
    values["net_tx"] = tx
    for disk in sample.disks:
        values[f"disk_percent:{disk.mountpoint}"] = disk.percent
    return values


def instance_values(sample: InstanceSample) -> dict[str, float]:
    """Every metric of one instance sample."""
    return {
        "cpu": sample.cpu_percent,
        "rss": float(sample.rss_bytes),
        "io_read": sample.read_bps,
        "io_write": sample.write_bps,
        "threads": float(sample.threads),
        "open_files": float(sample.open_files),
        "processes": float(sample.processes),
    }
