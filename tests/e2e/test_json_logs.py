"""-log_format json on a real master and worker: JSON lines with the ids, no secrets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gdos_sdk.testing import LocalCluster, wait_until

pytestmark = pytest.mark.e2e

# Printed to stdout for the person starting the server, not log records.
BANNERS = ("GDOS master ", "data: ", "admin user: ", "admin password: ", "GDOS worker ")


def log_records(output: str) -> list[dict[str, Any]]:
    found = []
    for line in output.splitlines():
        if not line.strip() or line.startswith(BANNERS):
            continue
        found.append(json.loads(line))  # every other line is one JSON object
    return found


def test_master_and_worker_write_json_lines_with_their_ids(
    cluster: LocalCluster, pack: Callable[..., Path]
) -> None:
    master = cluster.start_master("-log_format", "json")
    worker = cluster.start_worker(env={"OPS_WORKER_LOG_FORMAT": "json"})  # the env equivalent
    with cluster.client(cluster.admin_token()) as gdos:
        node_id = wait_until(lambda: [n.id for n in gdos.list_nodes()], what="node")[0]
        uploaded = gdos.upload_package(pack("sleeper"))
        system = gdos.create_system("shop")
        module = gdos.create_module(system.id, "web", uploaded.name, uploaded.version)
        instance = gdos.deploy(module.id, node_id, start=True, wait="started")

    def worker_lines() -> list[dict[str, Any]]:
        return [
            r
            for r in log_records(worker.output())
            if r.get("instance_id") == instance.id and "running" in r["message"]
        ]

    (running, *_) = wait_until(worker_lines, what="the worker's log of the instance running")
    assert running["node_id"] == node_id
    assert running["logger"].startswith("gdos.worker")
    assert {"time", "level", "logger", "message"} <= set(running)

    connected = wait_until(
        lambda: [r for r in log_records(master.output()) if "connected" in r["message"]],
        what="the master's log of the node connecting",
    )
    assert connected[0]["node_id"] == node_id and connected[0]["level"] == "info"
    for text in (master.output(), worker.output()):
        assert cluster.join_token not in text
        assert cluster.admin_password not in text
