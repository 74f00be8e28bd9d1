"""A worker given several masters moves to another one when its own stops answering.

Real processes on loopback: two ``gdos-master`` on one PostgreSQL database (sharing a
package folder, as they would share MinIO), a real ``gdos-worker`` with ``-master A,B``
running a real service. The instance never restarts on a move, and the master the worker
moved to runs it as its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from gdos_sdk import InstanceState
from gdos_sdk.models import NodeStatus
from gdos_sdk.testing import LocalCluster, ManagedProcess, free_port, wait_until

from ..conftest import PostgresForTests
from .proxy import TcpProxy
from .test_lifecycle import setup_module_instance

pytestmark = pytest.mark.e2e

# An explicit shell, as in test_terminal.py: a login profile may make the first prompt late.
SHELL = {"OPS_WORKER_TERMINAL_SHELL": "/bin/bash --noprofile --norc -i"}

# The defaults a failover is measured against: fleet.offline_grace + the push interval of a
# node (fleet.heartbeat_interval while it is watched).
OFFLINE_GRACE = 5.0
PUSH_INTERVAL = 1.0


@pytest.fixture
def two_masters(
    tmp_path: Path, postgres: PostgresForTests
) -> Iterator[tuple[LocalCluster, LocalCluster]]:
    """Masters A and B on one fresh PostgreSQL database; every process stopped at the end."""
    name, db_url = postgres.fresh()
    password = "failover-admin-pw"
    a = LocalCluster(tmp_path / "a", db_url=db_url, admin_password=password)
    b = LocalCluster(tmp_path / "b", db_url=db_url, admin_password=password)
    b.join_token = a.join_token  # one cluster: one join token
    shared = {"OPS_MASTER_STORAGE_LOCAL_DIR": str(tmp_path / "packages")}
    try:
        a.start_master(env=shared)
        b.start_master(env=shared)
        yield a, b
    finally:
        a.close()
        b.close()
        postgres.drop(name)


def connections(worker: ManagedProcess) -> list[str]:
    """The masters the worker's log says it connected to, in order."""
    return [
        line.split("connected to ", 1)[1].split(" ", 1)[0]
        for line in worker.output().splitlines()
        if "connected to " in line and " as node " in line
    ]


def same_process(pid: int, created: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_kill_9_of_its_master_moves_the_worker_to_the_next_and_nothing_restarts(
    two_masters: tuple[LocalCluster, LocalCluster], pack: Callable[..., Path]
) -> None:
    a, b = two_masters
    worker = a.start_worker("-master", f"{a.url},{b.url}", env=SHELL)
    node_id = a.node_id(worker)
    assert connections(worker) == [a.url]
    with a.client() as via_a, b.client() as via_b:
        instance = setup_module_instance(via_a, node_id, pack("sleeper"), start=True)
        assert instance.state == InstanceState.RUNNING and instance.pid
        pid = instance.pid
        created = psutil.Process(pid).create_time()
        assert via_b.get_instance(instance.id).pid == pid  # B reads the same records

        assert a.master is not None
        a.master.kill()  # kill -9: no goodbye to anyone
        killed = time.monotonic()
        wait_until(
            lambda: via_b.get_node(node_id).status == NodeStatus.ONLINE,
            timeout=OFFLINE_GRACE + PUSH_INTERVAL + 10,  # reported below, asserted tightly
            interval=0.05,
            what="the node online on master B",
        )
        took = time.monotonic() - killed
        print(f"failover after kill -9: {took:.2f} s")
        assert took < OFFLINE_GRACE + PUSH_INTERVAL, f"failover took {took:.2f} s"
        assert connections(worker) == [a.url, b.url]
        assert f"moving to master {b.url}" in worker.output()
        assert same_process(pid, created), "the instance must keep running through the move"

        # B runs the instance as its own: it sees it running, stops it and starts it again.
        seen = wait_until(
            lambda: via_b.get_instance(instance.id),
            what="the instance on master B",
        )
        assert seen.state == InstanceState.RUNNING and seen.pid == pid and seen.node_online
        stopped = via_b.stop_instance(instance.id)
        assert stopped.state == InstanceState.STOPPED
        wait_until(lambda: not same_process(pid, created), what="the old process to end")
        started = via_b.start_instance(instance.id)
        assert started.state == InstanceState.RUNNING and started.pid and started.pid != pid
        assert psutil.pid_exists(started.pid)

        # Packages come from the master the worker is connected to now.
        other = setup_module_instance(
            via_b, node_id, pack("sleeper", name="other"), start=True, module="other"
        )
        assert other.state == InstanceState.RUNNING and other.pid

        # The worker dials terminal streams back to the master it is connected to now.
        with via_b.open_terminal(node_id) as term:
            term.write("echo via-$((6*7))-b\r")
            seen_output = b""
            deadline = time.monotonic() + 15
            while b"via-42-b" not in seen_output and time.monotonic() < deadline:
                seen_output += term.read(timeout=0.5)
            assert b"via-42-b" in seen_output, seen_output[-500:]
    assert worker.alive()


def test_a_worker_whose_first_master_is_down_connects_to_the_next(
    cluster: LocalCluster,
) -> None:
    cluster.start_master()
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    began = time.monotonic()
    worker = cluster.start_worker("-master", f"{down},{cluster.url}")
    took = time.monotonic() - began
    node_id = cluster.node_id(worker)
    with cluster.client() as gdos:
        assert gdos.get_node(node_id).status == NodeStatus.ONLINE
    assert connections(worker) == [cluster.url]
    log = worker.output()
    assert f"agent channel to {down}:" in log and f"moving to master {cluster.url}" in log
    assert took < 15, f"the worker took {took:.1f} s to start and connect"


def test_a_silent_master_is_left_within_the_push_interval_and_offline_grace(
    cluster: LocalCluster,
) -> None:
    """The same master reached two ways: through a proxy that goes silent, and directly.

    No FIN and no RST: only the channel's pings show the master is gone (2 s apart, 3 s
    to answer, 1 s to give up the close handshake).
    """
    cluster.start_master()
    with TcpProxy(cluster.master_port) as proxy:
        worker = cluster.start_worker("-master", f"{proxy.url},{cluster.url}")
        assert connections(worker) == [proxy.url]
        time.sleep(1.0)  # a heartbeat or two through the proxy
        assert proxy.freeze() == 1
        frozen = time.monotonic()
        wait_until(
            lambda: connections(worker) == [proxy.url, cluster.url],
            timeout=20,
            interval=0.05,
            what="the worker to move to the direct URL",
        )
        took = time.monotonic() - frozen
        print(f"move away from a silent master: {took:.2f} s")
        assert "no answer to a ping within 3 s" in worker.output()
        # ping interval + ping timeout + close timeout + the move's random wait (0.5 s), and
        # a second for the dial and the log line on a busy machine
        assert took < 2.0 + 3.0 + 1.0 + 0.5 + 1.0, f"moving took {took:.2f} s"
