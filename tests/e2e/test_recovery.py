"""Crashes of either side: kill -9 the worker or the master and nothing is lost or doubled."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from gdos_sdk import AuthError, Client, InstanceState, PermissionDenied
from gdos_sdk.testing import LocalCluster, free_port, wait_until

from .test_lifecycle import setup_module_instance

pytestmark = pytest.mark.e2e


def gone(pid: int) -> bool:
    """Not running. A re-attached service is not the worker's child: its parent is init,
    which here (a container's PID 1) may leave it a zombie for a while."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def tagged(instance_id: str) -> list[int]:
    """Every live process carrying the instance's tag."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if (
                proc.environ().get("GDOS_INSTANCE_ID") == instance_id
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def test_worker_kill9_then_new_worker_reattaches_without_restarting(
    running: LocalCluster, pack: Callable[..., Path]
) -> None:
    ports = [free_port(), free_port()]
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        package = pack("http")
        first = setup_module_instance(
            gdos, node_id, package, env={"PORT": str(ports[0])}, start=True, module="a"
        )
        second = gdos.deploy(
            gdos.create_module(
                first.system_id, "b", "http", "1.0.0", env={"PORT": str(ports[1])}
            ).id,
            node_id,
            wait="started",
        )
        pids = {first.id: first.pid, second.id: second.pid}
        assert all(pids.values())

        old = running.workers[0]
        old.kill()  # kill -9: no chance to clean up
        for pid in pids.values():
            assert psutil.pid_exists(pid), "instances must outlive their worker"

        began = time.monotonic()
        running.start_worker(work_dir=running.root / "worker0")

        def both_running() -> bool:
            found = {i.id: i for i in gdos.list_instances()}
            return all(
                found[i].state == InstanceState.RUNNING
                and found[i].pid == pid
                and found[i].node_online
                for i, pid in pids.items()
            )

        wait_until(both_running, timeout=5, what="both instances running with original pids")
        assert time.monotonic() - began < 5 + 1
        for instance_id, pid in pids.items():
            assert tagged(instance_id) == [pid]  # no duplicate process
        for port, pid in zip(ports, pids.values(), strict=True):
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=2).json()["pid"] == pid
        assert gdos.get_instance(first.id).restarts == 0

        # The re-attached worker still supervises: a crash is noticed and restarted.
        psutil.Process(pids[first.id]).kill()
        wait_until(
            lambda: (
                (i := gdos.get_instance(first.id)).state == InstanceState.RUNNING
                and i.pid != pids[first.id]
                and i.restarts == 1
            ),
            timeout=15,
            what="restart after crash of a re-attached instance",
        )
        # And a stop works on a re-attached process.
        stopped = gdos.stop_instance(second.id)
        assert stopped.state == InstanceState.STOPPED
        assert gone(pids[second.id])


@pytest.mark.both_engines
def test_master_kill9_keeps_everything_and_worker_comes_back(
    running: LocalCluster, pack: Callable[..., Path]
) -> None:
    port = free_port()
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        instance = setup_module_instance(
            gdos, node_id, pack("http"), env={"PORT": str(port)}, start=True
        )
        viewer = gdos.create_user("vera", "password-1234", "viewer")
        token = gdos.create_token("keep-me")
        before = {
            "systems": [s.id for s in gdos.list_systems()],
            "modules": [m.id for m in gdos.list_modules(instance.system_id)],
            "instances": [(i.id, i.pid) for i in gdos.list_instances()],
            "packages": [(p.name, p.latest) for p in gdos.list_packages()],
            "users": sorted(u.username for u in gdos.list_users()),
            "tokens": sorted(t.id for t in gdos.list_tokens()),
            "audit": gdos.list_audit(limit=1000).total,
        }
    worker_pid = running.workers[0].pid
    assert running.master is not None
    running.master.kill()  # kill -9 of the master
    time.sleep(0.5)
    assert psutil.pid_exists(instance.pid)
    running.start_master(port=running.master_port)

    with Client(running.url, token=token.secret) as gdos:
        wait_until(
            lambda: gdos.get_node(node_id).status.value == "online",
            timeout=20,
            what="worker back online",
        )
        after = {
            "systems": [s.id for s in gdos.list_systems()],
            "modules": [m.id for m in gdos.list_modules(instance.system_id)],
            "instances": [(i.id, i.pid) for i in gdos.list_instances()],
            "packages": [(p.name, p.latest) for p in gdos.list_packages()],
            "users": sorted(u.username for u in gdos.list_users()),
            "tokens": sorted(t.id for t in gdos.list_tokens()),
        }
        assert {k: v for k, v in before.items() if k != "audit"} == after
        assert gdos.list_audit(limit=1000).total >= before["audit"]
        assert gdos.get_instance(instance.id).state == InstanceState.RUNNING
        assert gdos.get_user(viewer.id).username == "vera"
    assert running.workers[0].pid == worker_pid and running.workers[0].alive()
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=2).json()["pid"] == instance.pid


def test_worker_credential_is_refused_on_user_endpoints(running: LocalCluster) -> None:
    import json

    node_file = running.root / "worker0" / "node.json"
    credential = json.loads(node_file.read_text())["credential"]
    assert credential.startswith("gdosn_")
    assert oct(node_file.stat().st_mode & 0o777) == "0o600"
    with Client(running.url, token=credential) as as_node:
        with pytest.raises(PermissionDenied) as caught:
            as_node.list_systems()
        assert "node credential" in caught.value.message
    with Client(running.url, token="gdosn_forged") as forged, pytest.raises(AuthError):
        forged.list_nodes()
    response = httpx.get(f"{running.url}/api/v1/systems", timeout=5)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_first_start_prints_admin_password_once(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "c", env={})
    try:
        import os

        env = {k: v for k, v in os.environ.items() if not k.startswith("OPS_")}
        cluster.env = env
        cluster.admin_password = ""
        cluster.start_master()
        output = cluster.master.output() if cluster.master else ""
        line = next(x for x in output.splitlines() if x.startswith("admin password:"))
        password = line.split(":", 1)[1].split()[0]
        with Client(cluster.url) as client:
            assert client.login("admin", password).user.role.value == "admin"
        cluster.master.terminate()  # type: ignore[union-attr]
        cluster.start_master()
        assert "admin password:" not in cluster.master.output().split("listening")[-1]  # type: ignore[union-attr]
    finally:
        cluster.close()
