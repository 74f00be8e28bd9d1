"""deploy(wait=...) with real services: crashes inside the window raise DeployFailed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gdos_sdk import Client, DeployFailed, DeployTimeout, Health, InstanceState
from gdos_sdk.progress import Progress
from gdos_sdk.testing import LocalCluster, free_port, wait_until

from ..conftest import raw_zip
from .proxy import TcpProxy

pytestmark = pytest.mark.e2e


def module_of(gdos: Client, package: Path, name: str, **extra: object) -> str:
    uploaded = gdos.upload_package(package)
    system = next((s for s in gdos.list_systems() if s.name == "waits"), None)
    system = system or gdos.create_system("waits")
    module = gdos.create_module(system.id, name, uploaded.name, uploaded.version, **extra)
    return module.id


def test_stable_raises_deploy_failed_for_a_service_that_crashes_after_a_second(
    running: LocalCluster, pack: Callable[..., Path]
) -> None:
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        module_id = module_of(gdos, pack("late_crasher"), "flaky")

        began = time.monotonic()
        with pytest.raises(DeployFailed) as failed:
            gdos.deploy(module_id, node_id, wait="stable", min_healthy_time=4)
        took = time.monotonic() - began
        error = failed.value
        assert not isinstance(error, DeployTimeout)
        # It failed when the crash happened (about 1 s in), not at the end of the window.
        assert took < 3.5, took
        # Crashed after 1 s (past start_seconds): restarted at once, or caught in backoff.
        assert error.state in ("running", "backoff"), error
        assert "exited with code 2" in error.reason, error.reason
        assert error.exit_code in (None, 2)
        assert "fatal: lost the database connection" in error.log_lines
        assert "booting: config loaded" in error.log_lines
        assert "fatal: lost the database connection" in str(error)
        assert error.details["instance_id"] == error.instance.id
        # The record stays, for the operator to inspect.
        assert gdos.get_instance(error.instance.id).node_id == node_id

        # wait="running" is what deploy() used to do: it passes for the same service.
        instance = gdos.deploy(module_id, node_id, wait="running")
        assert instance.state == InstanceState.RUNNING


def test_stable_returns_a_service_that_keeps_running_after_min_healthy_time(
    running: LocalCluster, pack: Callable[..., Path]
) -> None:
    seen: list[Progress] = []
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        module_id = module_of(gdos, pack("sleeper", stop_timeout=2), "steady")

        began = time.monotonic()
        instance = gdos.deploy(
            module_id, node_id, wait="stable", min_healthy_time=2, progress=seen.append
        )
        took = time.monotonic() - began
        assert instance.state == InstanceState.RUNNING and instance.restarts == 0
        assert 2 <= took < 10, took
        assert {p.unit for p in seen} == {"s"} and {p.total for p in seen} == {2}
        assert seen[-1].done >= 2 and seen[-1].message == "running"
        assert [p.done for p in seen] == sorted(p.done for p in seen)

        # The default waits for health; a service without a check is done once stable.
        assert gdos.deploy(module_id, node_id, min_healthy_time=1).health == Health.NONE


def test_healthy_waits_for_the_check_and_fails_on_an_unhealthy_verdict(
    running: LocalCluster, pack: Callable[..., Path], tmp_path: Path
) -> None:
    check = {
        "type": "http",
        "url": "http://127.0.0.1:${PORT}/",
        "interval": 0.5,
        "timeout": 1,
        "retries": 1,
    }
    package = pack("healthy", health_check=check)
    sick = tmp_path / "sick"
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        env = {"PORT": str(free_port()), "LISTEN_DELAY": "1.5", "SICK_FILE": str(sick)}
        # Listening after 1.5 s, inside the start period: the early failures do not count.
        booting = {**check, "start_period": 10}
        module_id = module_of(gdos, package, "web", env=env, health_check=booting)
        instance = gdos.deploy(module_id, node_id, min_healthy_time=0.5)  # wait="healthy"
        assert (instance.state, instance.health) == (InstanceState.RUNNING, Health.HEALTHY)

        sick.touch()  # answers 500 from the start: the first counted check fails it
        env = {"PORT": str(free_port()), "SICK_FILE": str(sick)}
        bad = module_of(gdos, package, "sick", env=env)
        with pytest.raises(DeployFailed, match="health check failed") as failed:
            gdos.deploy(bad, node_id, min_healthy_time=0.5, timeout=30)
        assert failed.value.instance.health == Health.UNHEALTHY
        assert "answered 500" in failed.value.reason


def test_an_offline_node_fails_at_once_unless_wait_started(running: LocalCluster) -> None:
    with running.client() as gdos:
        planned = gdos.plan_node("not-yet-here")
        package = running.root / "tiny.zip"
        raw_zip(
            package,
            {
                "service.json": b'{"name": "tiny", "version": "1.0.0", "entrypoint": "run.sh"}',
                "run.sh": b"#!/bin/sh\nsleep 1000\n",
            },
        )
        module_id = module_of(gdos, package, "later")
        began = time.monotonic()
        with pytest.raises(DeployFailed, match="node is offline"):
            gdos.deploy(module_id, planned.id)
        assert time.monotonic() - began < 5
        queued = gdos.deploy(module_id, planned.id, wait="started")
        assert queued.state == InstanceState.UNKNOWN


@pytest.fixture
def proxied(cluster: LocalCluster) -> Iterator[tuple[LocalCluster, TcpProxy]]:
    """A master answering commands within 2 s, and one worker that reaches it via a proxy."""
    cluster.start_master(env={"OPS_MASTER_FLEET_COMMAND_TIMEOUT": "2"})
    with TcpProxy(cluster.master_port) as proxy:
        cluster.start_worker("-master", proxy.url)
        yield cluster, proxy


def test_running_waits_through_a_deploying_answer(
    proxied: tuple[LocalCluster, TcpProxy], pack: Callable[..., Path]
) -> None:
    cluster, proxy = proxied
    stages: list[str] = []
    with cluster.client() as gdos:
        node_id = cluster.wait_worker_connected(cluster.workers[0])
        module_id = module_of(gdos, pack("sleeper", stop_timeout=2), "slow")
        proxy.hold(b"GET /api/v1/agent/packages/")  # the worker cannot fetch the package yet

        def release_once_answered() -> None:
            wait_until(lambda: "deploying" in stages, timeout=20, what="a deploying answer")
            time.sleep(0.5)
            proxy.release()

        releaser = threading.Thread(target=release_once_answered, daemon=True)
        releaser.start()
        instance = gdos.deploy(
            module_id, node_id, wait="running", progress=lambda p: stages.append(p.message)
        )
        releaser.join(5)
        assert instance.state == InstanceState.RUNNING and instance.pid
        assert stages[0] == "deploying" and stages[-1] == "running"
