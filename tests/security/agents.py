"""A hand-made agent: speaks the agent protocol to a real master as an attacker would.

It builds its frames as plain JSON (not through the SDK's codec), so a test can send
whatever a hostile node could: made-up instance ids, timestamps far from now, huge frames.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from gdos_sdk.testing import LocalCluster, wait_until

FINGERPRINT = {
    "os": "linux",
    "os_version": "Debian GNU/Linux 12",
    "kernel": "6.1.0",
    "arch": "x86_64",
    "cpu_model": "Hand-made CPU",
    "cpu_cores": 2,
    "cpu_physical_cores": 1,
    "memory_bytes": 2**30,
    "disks": [],
    "macs": [],
    "machine_id": None,
    "boot_time": 0.0,
    "python": "3.11",
}


def node_sample(ts: float, cpu: float = 5.0, *, nets: int = 1, tag: str = "") -> dict[str, Any]:
    return {
        "ts": ts,
        "cpu_percent": cpu,
        "load1": 0.1,
        "load5": 0.1,
        "load15": 0.1,
        "mem_total": 2**30,
        "mem_used": 2**29,
        "mem_percent": 50.0,
        "swap_total": 0,
        "swap_used": 0,
        "disk_read_bps": 0.0,
        "disk_write_bps": 0.0,
        "uptime_seconds": 100.0,
        "disks": [],
        "net": [{"interface": f"veth{tag}{i}", "rx_bps": 1.0, "tx_bps": 1.0} for i in range(nets)],
    }


def instance_sample(ts: float, instance_id: str, cpu: float) -> dict[str, Any]:
    return {
        "ts": ts,
        "instance_id": instance_id,
        "cpu_percent": cpu,
        "rss_bytes": 1000,
        "read_bps": 0.0,
        "write_bps": 0.0,
        "threads": 1,
        "open_files": 1,
        "processes": 1,
    }


def heartbeat(nodes: list[dict[str, Any]], instances: list[dict[str, Any]]) -> str:
    return json.dumps(
        {
            "type": "heartbeat",
            "ts": time.time(),
            "node_samples": nodes,
            "instance_samples": instances,
        }
    )


class HandAgent:
    """One node, joined with the cluster's join token, then with its own credential."""

    def __init__(self, cluster: LocalCluster, hostname: str) -> None:
        self.cluster = cluster
        self.node_id = str(uuid.uuid4())
        self.hostname = hostname
        self.credential = ""
        self.ws: ClientConnection | None = None
        self._stack = contextlib.ExitStack()

    def connect(self) -> dict[str, Any]:
        """Dial, say hello, return the master's welcome."""
        url = "ws" + self.cluster.url[len("http") :] + "/api/v1/agent/ws"
        secret = self.credential or self.cluster.join_token
        headers = {"Authorization": f"Bearer {secret}", "X-GDOS-Node-Id": self.node_id}
        self.ws = self._stack.enter_context(
            connect(
                url, additional_headers=headers, open_timeout=10, max_size=None, compression=None
            )
        )
        hello = {
            "type": "hello",
            "protocol": 1,
            "node_id": self.node_id,
            "hostname": self.hostname,
            "agent_version": "hand-made",
            "fingerprint": FINGERPRINT,
            "addresses": [],
            "instances": [],
        }
        self.ws.send(json.dumps(hello))
        welcome: dict[str, Any] = json.loads(self.ws.recv(timeout=10))
        assert welcome["type"] == "welcome", welcome
        self.node_id = welcome["node_id"]
        self.credential = welcome.get("credential") or self.credential
        return welcome

    def send(self, text: str) -> None:
        assert self.ws is not None
        self.ws.send(text)

    def close(self) -> None:
        self.ws = None
        self._stack.close()


def prometheus(cluster: LocalCluster) -> str:
    response = httpx.get(
        f"{cluster.url}/metrics",
        headers={"Authorization": f"Bearer {cluster.admin_token()}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.text


def metric_value(text: str, name: str) -> float:
    """The value of an unlabelled (or first labelled) sample of ``name``; 0 if absent."""
    found = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def frames_received(cluster: LocalCluster) -> float:
    return metric_value(prometheus(cluster), "gdos_master_agent_frames_total")


def wait_frames(cluster: LocalCluster, at_least: float, timeout: float = 30.0) -> None:
    """Wait until the master has taken ``at_least`` agent frames off its sockets."""
    wait_until(
        lambda: frames_received(cluster) >= at_least,
        timeout=timeout,
        what=f"master to receive {at_least:g} agent frames",
    )
