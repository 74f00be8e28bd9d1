"""Health checks with real services: http, tcp and cmd checks; check_restart restarts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gdos_sdk import Client, Health, InstanceState, ValidationError
from gdos_sdk.models import Instance
from gdos_sdk.testing import LocalCluster, free_port, wait_until

pytestmark = pytest.mark.e2e

FAST = {"interval": 0.3, "timeout": 1}


def deploy(
    gdos: Client,
    node_id: str,
    package: Path,
    module: str,
    *,
    env: dict[str, str],
    health_check: dict[str, object] | None = None,
) -> Instance:
    uploaded = gdos.upload_package(package)
    system = next((s for s in gdos.list_systems() if s.name == "health"), None)
    system = system or gdos.create_system("health")
    created = gdos.create_module(
        system.id, module, uploaded.name, uploaded.version, env=env, health_check=health_check
    )
    return gdos.deploy(created.id, node_id, start=True, wait="started")


def health_is(gdos: Client, instance_id: str, health: Health) -> Instance | None:
    instance = gdos.get_instance(instance_id)
    return instance if instance.health == health else None


def test_http_check_turns_unhealthy_and_check_restart_restarts_it(
    running: LocalCluster, pack: Callable[..., Path], tmp_path: Path
) -> None:
    sick = tmp_path / "sick"
    check = {
        "type": "http",
        "url": "http://127.0.0.1:${PORT}/health",
        "retries": 2,
        "check_restart": {"limit": 5, "grace": 0},
        **FAST,
    }
    package = pack("healthy", health_check=check)
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        env = {"PORT": str(free_port()), "SICK_FILE": str(sick)}
        instance = deploy(gdos, node_id, package, "web", env=env)
        assert instance.health in (Health.STARTING, Health.HEALTHY)
        healthy = wait_until(
            lambda: health_is(gdos, instance.id, Health.HEALTHY), timeout=15, what="healthy"
        )
        first_pid = healthy.pid
        metrics = httpx.get(
            f"{running.url}/metrics",
            headers={"Authorization": f"Bearer {running.admin_token()}"},
            timeout=5,
        ).text
        assert any(
            line.startswith("gdos_instance_healthy{")
            and instance.id in line
            and float(line.rsplit(" ", 1)[1]) == 1
            for line in metrics.splitlines()
        ), metrics

        sick.touch()  # the endpoint now answers 500
        unhealthy = wait_until(
            lambda: health_is(gdos, instance.id, Health.UNHEALTHY), timeout=10, what="unhealthy"
        )
        assert unhealthy.pid == first_pid
        assert unhealthy.state == InstanceState.RUNNING
        assert "500" in unhealthy.reason and "expected 200" in unhealthy.reason

        restarted = wait_until(
            lambda: (i := gdos.get_instance(instance.id)).pid not in (None, first_pid) and i,
            timeout=15,
            what="check_restart to restart the instance",
        )
        sick.unlink()
        assert restarted.restarts == 1
        again = wait_until(
            lambda: health_is(gdos, instance.id, Health.HEALTHY), timeout=15, what="healthy again"
        )
        assert again.pid == restarted.pid and again.state == InstanceState.RUNNING

        # Stopped instances have no health; the listing shows health too.
        stopped = gdos.stop_instance(instance.id)
        assert stopped.state == InstanceState.STOPPED and stopped.health == Health.NONE
        listed = {i.id: i for i in gdos.list_instances()}
        assert listed[instance.id].health == Health.NONE


def test_tcp_and_cmd_checks_from_module_overrides(
    running: LocalCluster, pack: Callable[..., Path], tmp_path: Path
) -> None:
    sick = tmp_path / "cmd-sick"
    package = pack("healthy")  # no check in service.json: the modules bring theirs
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        port, closed = free_port(), free_port()
        tcp_ok = deploy(
            gdos,
            node_id,
            package,
            "tcp-ok",
            env={"PORT": str(port), "LISTEN_DELAY": "1"},
            health_check={"type": "tcp", "port": port, **FAST},
        )
        tcp_bad = deploy(
            gdos,
            node_id,
            package,
            "tcp-bad",
            env={"PORT": str(free_port())},
            health_check={"type": "tcp", "port": closed, "retries": 2, **FAST},
        )
        script = "import os, sys; sys.exit(3 if os.path.exists(os.environ['SICK_FILE']) else 0)"
        cmd = deploy(
            gdos,
            node_id,
            package,
            "cmd",
            env={"PORT": str(free_port()), "SICK_FILE": str(sick)},
            health_check={"type": "cmd", "command": [sys.executable, "-c", script], **FAST},
        )
        wait_until(lambda: health_is(gdos, tcp_ok.id, Health.HEALTHY), timeout=15, what="tcp ok")
        bad = wait_until(
            lambda: health_is(gdos, tcp_bad.id, Health.UNHEALTHY), timeout=15, what="tcp bad"
        )
        assert f"port {closed}" in bad.reason
        # Without check_restart an unhealthy instance is reported, never restarted.
        assert bad.state == InstanceState.RUNNING and bad.restarts == 0
        wait_until(lambda: health_is(gdos, cmd.id, Health.HEALTHY), timeout=15, what="cmd ok")
        sick.touch()
        failing = wait_until(
            lambda: health_is(gdos, cmd.id, Health.UNHEALTHY), timeout=15, what="cmd failing"
        )
        assert "exited with 3" in failing.reason
        sick.unlink()
        wait_until(lambda: health_is(gdos, cmd.id, Health.HEALTHY), timeout=15, what="cmd back")

        # A bad override is refused with the field named.
        system = next(s for s in gdos.list_systems() if s.name == "health")
        with pytest.raises(ValidationError) as refused:
            gdos.create_module(
                system.id, "bad", "healthy", "1.0.0", health_check={"type": "tcp", "prot": 1}
            )
        assert "$.health_check.prot" in str(refused.value.details)
