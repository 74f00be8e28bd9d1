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

from gdos_sdk.models import InstanceSample, NodeSample

__all__ = ["INSTANCE_METRICS", "NODE_METRICS", "instance_values", "node_values"]

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
