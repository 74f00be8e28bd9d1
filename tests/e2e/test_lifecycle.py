"""The core loop with real processes: pack, upload, plan, deploy, start, restart, stop, destroy."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from gdos_sdk import Client, InstanceState
from gdos_sdk.models import Instance
from gdos_sdk.testing import LocalCluster, free_port, wait_until

pytestmark = pytest.mark.e2e


def setup_module_instance(
    gdos: Client,
    node_id: str,
    package: Path,
    *,
    env: dict[str, str] | None = None,
    start: bool = False,
    system: str = "shop",
    module: str = "web",
) -> Instance:
    uploaded = gdos.upload_package(package)
    systems = {s.name: s for s in gdos.list_systems()}
    sys_obj = systems.get(system) or gdos.create_system(system)
    mod = gdos.create_module(sys_obj.id, module, uploaded.name, uploaded.version, env=env or {})
    return gdos.deploy(mod.id, node_id, start=start, wait="started")


@pytest.mark.both_engines
def test_full_lifecycle_through_the_sdk(running: LocalCluster, pack: Callable[..., Path]) -> None:
    port = free_port()
    with running.client() as gdos:
        node = wait_until(
            lambda: [n for n in gdos.list_nodes() if n.status.value == "online"], what="node online"
        )[0]
        assert node.fingerprint is not None and node.fingerprint.cpu_cores >= 1
        instance = setup_module_instance(gdos, node.id, pack("http"), env={"PORT": str(port)})
        assert instance.state == InstanceState.STOPPED and instance.node_online

        started = gdos.start_instance(instance.id)
        assert started.state == InstanceState.RUNNING and started.pid
        answer = wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/hi", timeout=2).json(),
            what="service to answer",
        )
        assert answer["pid"] == started.pid and answer["instance"] == instance.id

        restarted = gdos.restart_instance(instance.id)
        assert restarted.state == InstanceState.RUNNING
        assert restarted.pid and restarted.pid != started.pid
        assert (
            not psutil.pid_exists(started.pid)
            or psutil.Process(started.pid).status() == psutil.STATUS_ZOMBIE
        )
        answer = wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=2).json(),
            what="restarted service to answer",
        )
        assert answer["pid"] == restarted.pid

        stopped = gdos.stop_instance(instance.id)
        assert stopped.state == InstanceState.STOPPED and stopped.pid is None
        assert not psutil.pid_exists(restarted.pid)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)

        instance_dir = running.root / "worker0" / "instances" / instance.id
        assert (instance_dir / "app" / "main.py").is_file()
        assert "serving on" in (instance_dir / "logs" / "console.log").read_text()
        gdos.destroy_instance(instance.id)
        assert not instance_dir.exists()
        assert gdos.list_instances() == []

        actions = [e.action for e in gdos.list_audit(limit=50).items]
        for expected in (
            "package.upload",
            "system.create",
            "module.create",
            "instance.deploy",
            "instance.start",
            "instance.restart",
            "instance.stop",
            "instance.destroy",
        ):
            assert expected in actions


def _pids(instance_dir: Path) -> dict[str, psutil.Process]:
    found = {}
    for line in (instance_dir / "pids").read_text().split("\n"):
        if line.strip():
            role, pid = line.split()
            found[role] = psutil.Process(int(pid))
    return found


def _four_pids(instance_dir: Path) -> dict[str, psutil.Process] | None:
    if not (instance_dir / "pids").exists():
        return None
    found = _pids(instance_dir)
    return found if len(found) == 4 else None


def _all_gone(procs: dict[str, psutil.Process]) -> bool:
    for proc in procs.values():
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def test_stop_and_destroy_leave_no_process_of_the_tree(
    running: LocalCluster, pack: Callable[..., Path]
) -> None:
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        package = pack("forker", stop_timeout=1.5)
        instance = setup_module_instance(gdos, node_id, package, start=True)
        assert instance.state == InstanceState.RUNNING
        instance_dir = running.root / "worker0" / "instances" / instance.id
        procs = wait_until(lambda: _four_pids(instance_dir), what="4 processes")
        grandchild = procs["grandchild"]
        assert os.getpgid(grandchild.pid) != os.getpgid(procs["main"].pid)  # left the group
        assert psutil.Process(grandchild.pid).ppid() == procs["child1"].pid

        stopped = gdos.stop_instance(instance.id)
        assert stopped.state == InstanceState.STOPPED
        assert "killed" in stopped.reason  # the grandchild ignored SIGTERM
        assert _all_gone(procs), {r: p.pid for r, p in procs.items()}

        (instance_dir / "pids").unlink()
        gdos.start_instance(instance.id)
        procs = wait_until(lambda: _four_pids(instance_dir), what="4 processes again")
        gdos.destroy_instance(instance.id)
        assert _all_gone(procs)
        assert not instance_dir.exists()


def test_crash_loop_backs_off_then_fails_and_stop_is_never_restarted(
    running: LocalCluster, pack: Callable[..., Path]
) -> None:
    restart = {
        "policy": "always",
        "max_restarts": 3,
        "window_seconds": 60,
        "backoff_initial": 0.3,
        "backoff_max": 5,
        "start_seconds": 1,
    }
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        crasher = setup_module_instance(
            gdos, node_id, pack("crasher", restart=restart), start=True, module="crash"
        )
        failed = gdos.wait_for_instance(crasher.id, "failed", timeout=30)
        assert failed.restarts == 3
        assert failed.exit_code == 3
        assert "giving up" in failed.reason
        log = running.root / "worker0" / "instances" / crasher.id / "logs" / "console.log"
        starts = [
            float(line.split()[1])
            for line in log.read_text().splitlines()
            if line.startswith("start ")
        ]
        assert len(starts) == 4  # the first run and three restarts
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        # Each gap is the backoff delay (0.3, 0.6, 1.2 s) plus the interpreter's start-up.
        for gap, delay in zip(gaps, [0.3, 0.6, 1.2], strict=True):
            assert gap >= delay * 0.95, gaps
        assert gaps[0] < gaps[1] < gaps[2], gaps
        assert gaps[2] - gaps[1] > gaps[1] - gaps[0], gaps  # the delay doubles

        sleeper = setup_module_instance(
            gdos, node_id, pack("sleeper", stop_timeout=2), start=True, module="sleep"
        )
        pid = sleeper.pid
        stopped = gdos.stop_instance(sleeper.id)
        assert stopped.state == InstanceState.STOPPED
        time.sleep(2.5)
        again = gdos.get_instance(sleeper.id)
        assert again.state == InstanceState.STOPPED and again.restarts == 0
        assert pid is not None and not psutil.pid_exists(pid)
