"""Desired state after a reboot: a fresh worker starts what should run, even with no master."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from gdos_sdk import InstanceState
from gdos_sdk.testing import LocalCluster, free_port, kill_instances_under, wait_until

from .test_recovery import tagged

pytestmark = pytest.mark.e2e


def test_fresh_worker_starts_desired_running_instances_without_the_master(
    running: LocalCluster, pack: Callable[..., Path]
) -> None:
    ports = {"up": free_port(), "down": free_port()}
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        uploaded = gdos.upload_package(pack("http"))
        system = gdos.create_system("boot")
        ids = {}
        for name, port in ports.items():
            module = gdos.create_module(
                system.id, name, uploaded.name, uploaded.version, env={"PORT": str(port)}
            )
            ids[name] = gdos.deploy(module.id, node_id, start=True, wait="started").id
        gdos.stop_instance(ids["down"])  # desired state: stopped
        old_pid = gdos.get_instance(ids["up"]).pid
        assert old_pid is not None

    # The machine "reboots": the worker dies, every service process with it, and the
    # master is unreachable while the worker comes back.
    assert running.master is not None
    running.master.kill()
    running.workers[0].kill()
    kill_instances_under(running.root)
    wait_until(lambda: not tagged(ids["up"]), timeout=10, what="services gone")

    worker = running.start_worker(work_dir=running.root / "worker0", wait=False)
    running.wait_healthy(worker)

    def serving() -> bool:
        answer = httpx.get(f"http://127.0.0.1:{ports['up']}/", timeout=1).json()
        return bool(answer["instance"] == ids["up"] and answer["pid"] != old_pid)

    wait_until(serving, timeout=20, what="the desired-running instance to start again")
    assert running.worker_health(worker)["connected"] is False
    assert running.worker_health(worker)["instances"] == {"running": 1, "stopped": 1}
    assert tagged(ids["down"]) == []  # desired stopped: left stopped

    # When the master is back it sees the instance running, started once.
    running.start_master(port=running.master_port)
    running.wait_worker_connected(worker)
    with running.client() as gdos:
        up = wait_until(
            lambda: (i := gdos.get_instance(ids["up"])).state == InstanceState.RUNNING and i,
            timeout=20,
            what="instance reported running",
        )
        assert up.pid != old_pid and tagged(ids["up"]) == [up.pid]
        assert psutil.Process(up.pid).is_running()
        assert gdos.get_instance(ids["down"]).state == InstanceState.STOPPED
