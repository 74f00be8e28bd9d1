"""Node liveness, planned nodes, approval, and reconciliation after a node was away."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from gdos_sdk import ConflictError, InstanceState
from gdos_sdk.testing import LocalCluster, wait_until

from .test_lifecycle import setup_module_instance

pytestmark = pytest.mark.e2e


def test_frozen_worker_goes_offline_within_interval_plus_grace(running: LocalCluster) -> None:
    worker = running.workers[0]
    with running.client() as gdos:
        node_id = running.wait_worker_connected(worker)
        assert gdos.get_node(node_id).status.value == "online"
        os.kill(worker.pid, signal.SIGSTOP)  # the TCP connection stays open: a half-dead node
        try:
            began = time.monotonic()
            wait_until(
                lambda: gdos.get_node(node_id).status.value == "offline",
                timeout=15,
                interval=0.1,
                what="node offline",
            )
            took = time.monotonic() - began
            settings = gdos.get_settings()
            assert took <= settings.offline_after + 1.0, took  # interval + grace (+ sweep)
            assert gdos.get_node(node_id).latest is None
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        wait_until(
            lambda: gdos.get_node(node_id).status.value == "online",
            timeout=15,
            what="node back online",
        )


def test_planned_node_is_claimed_by_the_worker_with_its_claim_token(
    cluster: LocalCluster,
) -> None:
    cluster.start_master()
    with cluster.client() as gdos:
        planned = gdos.plan_node(socket.gethostname(), alias="rack-1", labels={"zone": "a"})
        assert planned.status.value == "planned" and planned.claim_token is not None
        worker = cluster.start_worker(env={"OPS_WORKER_CONNECT_CLAIM_TOKEN": planned.claim_token})
        node_id = cluster.wait_worker_connected(worker)
        assert node_id == planned.id  # the worker took the planned node's id
        node = wait_until(
            lambda: (n := gdos.get_node(planned.id)).status.value == "online" and n,
            what="planned node online",
        )
        assert node.alias == "rack-1" and node.labels == {"zone": "a"}
        assert len(gdos.list_nodes()) == 1


def test_approval_gates_a_new_node(cluster: LocalCluster, pack: Callable[..., Path]) -> None:
    cluster.start_master(env={"OPS_MASTER_AUTH_REQUIRE_APPROVAL": "true"})
    worker = cluster.start_worker()
    with cluster.client() as gdos:
        node_id = cluster.wait_worker_connected(worker)
        assert gdos.get_node(node_id).status.value == "pending"
        with pytest.raises(ConflictError):
            setup_module_instance(gdos, node_id, pack("sleeper"), start=True)
        gdos.approve_node(node_id)
        wait_until(
            lambda: gdos.get_node(node_id).status.value == "online",
            timeout=20,
            what="approved node online",
        )
        module = gdos.list_modules(gdos.list_systems()[0].id)[0]
        instance = gdos.deploy(module.id, node_id, wait="started")
        assert instance.state == InstanceState.RUNNING


def test_actions_while_a_node_is_away_are_applied_when_it_returns(
    running: LocalCluster, pack: Callable[..., Path]
) -> None:
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        keep = setup_module_instance(
            gdos, node_id, pack("sleeper", stop_timeout=2), start=True, module="keep"
        )
        doomed = gdos.deploy(keep.module_id, node_id, start=True, wait="started")
        worker_dir = running.root / "worker0"
        running.workers[0].terminate()  # graceful worker stop: services keep running
        assert psutil.pid_exists(keep.pid) and psutil.pid_exists(doomed.pid)
        wait_until(lambda: gdos.get_node(node_id).status.value == "offline", what="offline")

        added = gdos.deploy(
            keep.module_id, node_id, start=True, wait="started"
        )  # accepted, applied later
        assert added.state == InstanceState.UNKNOWN and not added.node_online
        stopped = gdos.stop_instance(keep.id)
        assert stopped.desired_state.value == "stopped"
        gdos.destroy_instance(doomed.id)
        assert (worker_dir / "instances" / doomed.id).exists()

        running.start_worker(work_dir=worker_dir)
        wait_until(
            lambda: gdos.get_instance(added.id).state == InstanceState.RUNNING,
            timeout=20,
            what="offline deploy applied",
        )
        wait_until(
            lambda: gdos.get_instance(keep.id).state == InstanceState.STOPPED,
            timeout=20,
            what="offline stop applied",
        )
        wait_until(
            lambda: not (worker_dir / "instances" / doomed.id).exists(),
            timeout=20,
            what="orphan destroyed",
        )
        assert (
            not psutil.pid_exists(keep.pid)
            or psutil.Process(keep.pid).status() == psutil.STATUS_ZOMBIE
        )
        audit = gdos.list_audit(action="instance.", limit=50).items
        codes = {(e.action, e.status) for e in audit}
        assert ("instance.deploy", 202) in codes and ("instance.stop", 202) in codes
