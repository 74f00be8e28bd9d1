"""Network trouble between master and worker, made with a TCP proxy (tests/e2e/proxy.py).

The worker dials the master through the proxy, for its agent channel and its package
downloads alike, so a test can hold back the downloads while the channel stays up, or
freeze the channel without closing it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from gdos_sdk import Client, InstanceState
from gdos_sdk.testing import LocalCluster, wait_until

from .proxy import TcpProxy

pytestmark = pytest.mark.e2e

PACKAGES = b"GET /api/v1/agent/packages/"


@pytest.fixture
def proxied(cluster: LocalCluster) -> Iterator[tuple[LocalCluster, TcpProxy]]:
    """A master answering commands within 2 s, and one worker that reaches it via a proxy."""
    cluster.start_master(env={"OPS_MASTER_FLEET_COMMAND_TIMEOUT": "2"})
    with TcpProxy(cluster.master_port) as proxy:
        cluster.start_worker("-master", proxy.url, env={"OPS_WORKER_RUNTIME_FETCH_ATTEMPTS": "1"})
        yield cluster, proxy


def tagged(root: Path) -> dict[str, list[int]]:
    """Live service processes under ``root``, by the instance id they are tagged with."""
    found: dict[str, list[int]] = {}
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
            if not env.get("GDOS_WORK_DIR", "").startswith(str(root)):
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        found.setdefault(env["GDOS_INSTANCE_ID"], []).append(proc.pid)
    return found


def post_deploy(cluster: LocalCluster, module_id: str, node_id: str) -> httpx.Response:
    """POST /instances over the wire (the SDK's deploy() hides 201 vs 202)."""
    return httpx.post(
        f"{cluster.url}/api/v1/instances",
        json={"module_id": module_id, "node_id": node_id, "start": True},
        headers={"Authorization": f"Bearer {cluster.admin_token()}"},
        timeout=30,
    )


def module_of(gdos: Client, package: Path, name: str) -> str:
    uploaded = gdos.upload_package(package)
    systems = {s.name: s for s in gdos.list_systems()}
    system = systems.get("net") or gdos.create_system("net")
    return gdos.create_module(system.id, name, uploaded.name, uploaded.version).id


def test_a_deploy_outliving_the_command_timeout_is_never_left_unmanaged(
    proxied: tuple[LocalCluster, TcpProxy], pack: Callable[..., Path]
) -> None:
    cluster, proxy = proxied
    with cluster.client() as gdos:
        node_id = cluster.wait_worker_connected(cluster.workers[0])
        module_id = module_of(gdos, pack("sleeper", stop_timeout=2), "slow")

        # The download path is down, the agent channel is up: the master stops waiting.
        proxy.hold(PACKAGES)
        answer = post_deploy(cluster, module_id, node_id)
        assert answer.status_code == 202, answer.text
        body = answer.json()
        instance_id = body["id"]
        assert body["state"] == "deploying", body
        assert "no answer yet" in body["reason"] and "within 2 s" in body["reason"]
        assert proxy.held == 1
        assert gdos.get_instance(instance_id).state == InstanceState.DEPLOYING

        # The path comes back after the answer: the worker finishes, the master follows.
        proxy.release()
        running = gdos.wait_for_instance(instance_id, "running", timeout=30)
        assert running.pid is not None and running.pid in tagged(cluster.root)[instance_id]

        # Another deploy whose download fails after the answer: recorded as failed, with
        # the worker's reason, and nothing runs for it.
        failing = module_of(gdos, pack("sleeper", version="2.0.0", stop_timeout=2), "cut")
        proxy.hold(PACKAGES)
        answer = post_deploy(cluster, failing, node_id)
        assert answer.status_code == 202, answer.text
        failed_id = answer.json()["id"]
        proxy.release(drop=True)
        failed = gdos.wait_for_instance(failed_id, "failed", timeout=30)
        assert failed.reason.startswith("deploy failed: cannot fetch package sleeper@2.0.0")

        # Master and worker agree on every instance.
        listed = {i.id: i for i in gdos.list_instances()}
        assert set(listed) == {instance_id, failed_id}
        live = tagged(cluster.root)
        assert set(live) == {instance_id} and listed[instance_id].pid in live[instance_id]
        worker_dir = cluster.root / "worker0" / "instances"
        assert sorted(p.name for p in worker_dir.iterdir()) == [instance_id]


def test_a_silent_channel_is_dropped_by_both_ends_and_the_worker_dials_again(
    cluster: LocalCluster,
) -> None:
    cluster.start_master(env={"OPS_MASTER_FLEET_OFFLINE_GRACE": "1"})
    with TcpProxy(cluster.master_port) as proxy:
        worker = cluster.start_worker(
            "-master",
            proxy.url,
            env={
                "OPS_WORKER_CONNECT_PING_INTERVAL": "1",
                "OPS_WORKER_CONNECT_PING_TIMEOUT": "2",
            },
        )
        node_id = cluster.wait_worker_connected(worker)
        with cluster.client() as gdos:
            wait_until(lambda: gdos.get_node(node_id).status.value == "online", what="online")
            # The path goes silent: no FIN, no RST, nothing gets through either way.
            assert proxy.freeze() == 1
            # The master misses heartbeats and drops the node ...
            wait_until(
                lambda: gdos.get_node(node_id).status.value == "offline",
                timeout=15,
                what="master to notice",
            )
            # ... and the worker, whose pings go unanswered, drops the channel and dials
            # again (a new connection: the frozen one stays frozen).
            wait_until(
                lambda: "keepalive ping timeout" in worker.output(),
                timeout=20,
                what="worker to notice",
            )
            wait_until(lambda: proxy.connections >= 2, timeout=15, what="a new connection")
            cluster.wait_worker_connected(worker, timeout=15)
            wait_until(lambda: gdos.get_node(node_id).status.value == "online", what="back")
            ingest = httpx.get(
                f"{cluster.url}/api/v1/metrics/ingest",
                headers={"Authorization": f"Bearer {cluster.admin_token()}"},
                timeout=10,
            ).json()
            assert ingest["disconnects"] == 1, ingest
