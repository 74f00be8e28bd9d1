"""Adoption of real processes GDOS did not start: nginx by pid file, redis by match, spawn."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from gdos_sdk import AdoptionSpec, Client, ConflictError, InstanceState
from gdos_sdk.models import Instance
from gdos_sdk.testing import LocalCluster, free_port, wait_until

pytestmark = pytest.mark.e2e

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
REDIS = shutil.which("redis-server")

NGINX_CONF = """
daemon on;
master_process on;
worker_processes 2;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "adopted\\n"; }}
    }}
}}
"""


def gone(pid: int) -> bool:
    """Not running (a zombie waiting for a container's PID 1 counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything under it, reaping what is ours."""
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        # The root first: an nginx master whose worker dies forks a new one at once.
        procs = [root, *root.children(recursive=True)]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=5)


def kill_matching(text: str) -> None:
    """SIGKILL every process whose command line or environment mentions ``text``."""
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if text in " ".join(proc.cmdline()) or any(text in v for v in proc.environ().values()):
                kill_tree(proc.pid)


def http_ok(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_instance(gdos: Client, instance_id: str, check: object, timeout: float = 30.0) -> Instance:
    def ready() -> Instance | None:
        instance = gdos.get_instance(instance_id)
        return instance if check(instance) else None  # type: ignore[operator]

    return wait_until(ready, timeout=timeout, what=f"instance {instance_id} never matched")


def adopted_system(gdos: Client, name: str) -> str:
    return gdos.create_system(f"legacy-{name}").id


@pytest.fixture
def nginx_root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A private nginx config on a free loopback port; every nginx of it killed at the end."""
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    root = tmp_path / "nginx"
    (root / "tmp").mkdir(parents=True)
    port = free_port()
    (root / "nginx.conf").write_text(NGINX_CONF.format(root=root, port=port))
    try:
        yield root, port
    finally:
        pid = read_pid(root / "nginx.pid")
        if pid is not None:
            kill_tree(pid)
        kill_matching(str(root))


def nginx(root: Path, *args: str) -> None:
    assert NGINX is not None
    result = subprocess.run(
        [NGINX, "-p", str(root), "-c", str(root / "nginx.conf"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def start_nginx_outside(root: Path, port: int) -> int:
    """Start nginx as an operator would, outside GDOS; return its master pid."""
    (root / "nginx.pid").unlink(missing_ok=True)
    nginx(root)
    pid = wait_until(lambda: read_pid(root / "nginx.pid"), timeout=15, what="no nginx pid")
    wait_until(lambda: http_ok(port), timeout=15, what="nginx does not answer")
    return pid


def test_nginx_adopted_by_pid_file_without_restart_followed_stopped_and_started(
    running: LocalCluster, nginx_root: tuple[Path, int]
) -> None:
    root, port = nginx_root
    master_pid = start_nginx_outside(root, port)
    created = psutil.Process(master_pid).create_time()
    spec = AdoptionSpec(
        strategy="pid_file",  # type: ignore[arg-type]
        pid_file=str(root / "nginx.pid"),
        name="nginx",
        start_command=f"{NGINX} -p {root} -c {root / 'nginx.conf'}",
        follow_timeout=15,
        log_paths=[str(root / "error.log")],
    )
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        # Candidates before adopting: the master process the pid file names.
        found = gdos.adoption_candidates(node_id, spec)
        assert [c.pid for c in found] == [master_pid]
        module = gdos.create_adopted_module(adopted_system(gdos, "nginx"), "nginx", spec)
        assert module.kind == "adopted"

        instance = gdos.deploy(module.id, node_id, wait="started")
        # Adopted as it was: same pid, same process (not restarted).
        assert instance.state == InstanceState.RUNNING
        assert instance.pid == master_pid
        assert psutil.Process(master_pid).create_time() == created

        # Metrics flow for the whole tree (master + 2 workers).
        wait_instance(
            gdos,
            instance.id,
            lambda i: i.metrics is not None and i.metrics.processes >= 3,
            timeout=20,
        )

        # A reload keeps the master pid: GDOS keeps tracking it, nothing restarts.
        nginx(root, "-s", "reload")
        time.sleep(2)
        current = gdos.get_instance(instance.id)
        assert (current.state, current.pid) == (InstanceState.RUNNING, master_pid)
        assert http_ok(port)

        # An outside restart (new master pid): GDOS follows the new process.
        os.kill(master_pid, signal.SIGQUIT)
        wait_until(lambda: gone(master_pid), timeout=15, what="old nginx did not quit")
        new_pid = start_nginx_outside(root, port)
        assert new_pid != master_pid
        followed = wait_instance(
            gdos,
            instance.id,
            lambda i: i.state == InstanceState.RUNNING and i.pid == new_pid,
            timeout=30,
        )
        assert followed.desired_state == "running"

        # Stop through GDOS (stop signal to the tracked tree): nginx is gone.
        stopped = gdos.stop_instance(instance.id)
        assert stopped.state == InstanceState.STOPPED
        wait_until(lambda: gone(new_pid), timeout=15, what="nginx survived the stop")
        assert not http_ok(port)

        # Start through GDOS runs the start command and tracks the new master.
        started = gdos.start_instance(instance.id)
        assert started.state == InstanceState.RUNNING
        assert started.pid == read_pid(root / "nginx.pid")
        assert started.pid not in (master_pid, new_pid)
        wait_until(lambda: http_ok(port), timeout=15, what="nginx did not come back")

        # Restart without a restart command: stop by signal, then the start command.
        restarted = gdos.restart_instance(instance.id)
        assert restarted.state == InstanceState.RUNNING
        assert restarted.pid not in (None, started.pid)
        assert restarted.pid == read_pid(root / "nginx.pid")
        wait_until(lambda: http_ok(port), timeout=15, what="nginx did not come back")

        # GDOS started this nginx (its start command): destroying the instance stops it.
        gdos.destroy_instance(instance.id)
        assert restarted.pid is not None
        wait_until(lambda: gone(restarted.pid or 0), timeout=15, what="nginx survived destroy")


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    if REDIS is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    try:
        yield port
    finally:
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error):
                if proc.name() == "redis-server" and re.search(
                    rf":{port}\b", " ".join(proc.cmdline())
                ):
                    kill_tree(proc.pid)


def start_redis_outside(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    assert REDIS is not None
    folder = tmp_path / "redis"
    folder.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: _redis_ping(port), timeout=15, what="redis-server does not answer PING")
    return proc


def _redis_ping(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_redis_adopted_by_match_followed_and_stopped(
    running: LocalCluster, redis_port: int, tmp_path: Path
) -> None:
    outside = start_redis_outside(tmp_path, redis_port)
    try:
        spec = AdoptionSpec(
            strategy="match",  # type: ignore[arg-type]
            name="redis-server",
            cmdline=f":{redis_port}\\b",
            follow_timeout=15,
        )
        with running.client() as gdos:
            node_id = running.wait_worker_connected(running.workers[0])
            found = gdos.adoption_candidates(node_id, spec)
            assert [c.pid for c in found] == [outside.pid]
            assert found[0].name == "redis-server"
            module = gdos.create_adopted_module(adopted_system(gdos, "redis"), "redis", spec)
            instance = gdos.deploy(module.id, node_id, wait="started")
            assert (instance.state, instance.pid) == (InstanceState.RUNNING, outside.pid)
            assert outside.poll() is None  # not restarted
            wait_instance(gdos, instance.id, lambda i: i.metrics is not None, timeout=20)

            # Restarted outside GDOS: the new matching process is followed.
            outside.terminate()
            outside.wait(10)
            second = start_redis_outside(tmp_path, redis_port)
            try:
                wait_instance(
                    gdos,
                    instance.id,
                    lambda i: i.state == InstanceState.RUNNING and i.pid == second.pid,
                    timeout=30,
                )
                # Stop through GDOS: no stop command, so the stop signal goes to the pid.
                stopped = gdos.stop_instance(instance.id)
                assert stopped.state == InstanceState.STOPPED
                assert second.wait(15) is not None
                # No start command and nothing running: starting says why.
                with pytest.raises(ConflictError, match="no start command"):
                    gdos.start_instance(instance.id)
            finally:
                if second.poll() is None:
                    second.kill()
                second.wait(10)
    finally:
        if outside.poll() is None:
            outside.kill()
        outside.wait(10)


def test_stale_pid_file_naming_a_reused_pid_is_not_the_service(
    running: LocalCluster, tmp_path: Path
) -> None:
    pid_file = tmp_path / "legacy.pid"
    pid_file.write_text("0\n")
    # A process that started after the pid file was written took the pid it names.
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        pid_file.write_text(f"{stranger.pid}\n")
        old = time.time() - 3600
        os.utime(pid_file, (old, old))
        spec = AdoptionSpec(strategy="pid_file", pid_file=str(pid_file))  # type: ignore[arg-type]
        with running.client() as gdos:
            node_id = running.wait_worker_connected(running.workers[0])
            assert gdos.adoption_candidates(node_id, spec) == []
            module = gdos.create_adopted_module(adopted_system(gdos, "stale"), "legacy", spec)
            # The caller's input is at fault, not the worker: 409 with the worker's words.
            with pytest.raises(ConflictError, match="stale") as refused:
                gdos.deploy(module.id, node_id, wait="started")
            assert refused.value.details["node_id"] == node_id
            # Nothing recorded, and the stranger was never touched.
            assert gdos.list_instances(module_id=module.id) == []
            assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait(10)


def test_spawn_strategy_starts_tracks_and_stops_its_command(
    running: LocalCluster, tmp_path: Path
) -> None:
    port = free_port()
    spec = AdoptionSpec(
        strategy="spawn",  # type: ignore[arg-type]
        command=f"python3 -m http.server {port} --bind 127.0.0.1",
        cwd=str(tmp_path),
    )
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        module = gdos.create_adopted_module(adopted_system(gdos, "spawn"), "web", spec)
        instance = gdos.deploy(module.id, node_id, wait="started")
        assert instance.state == InstanceState.RUNNING and instance.pid is not None
        assert "http.server" in " ".join(psutil.Process(instance.pid).cmdline())
        wait_until(lambda: http_ok(port), timeout=15, what="spawned server does not answer")
        stopped = gdos.stop_instance(instance.id)
        assert stopped.state == InstanceState.STOPPED
        wait_until(lambda: gone(instance.pid or 0), timeout=15, what="spawn survived stop")
        gdos.destroy_instance(instance.id)


def test_worker_restart_reattaches_the_adopted_process_and_follows_a_successor(
    running: LocalCluster, tmp_path: Path
) -> None:
    marker = str(tmp_path / "legacy-daemon")
    script = "import sys, time\nwhile True: time.sleep(1)\n"
    argv = ["python3", "-c", script, marker]

    def start_outside() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, start_new_session=True)

    first = start_outside()
    later: list[subprocess.Popen[bytes]] = []
    try:
        spec = AdoptionSpec(
            strategy="match",  # type: ignore[arg-type]
            name="python3",
            cmdline=f"{marker}$",
            follow_timeout=20,
        )
        with running.client() as gdos:
            node_id = running.wait_worker_connected(running.workers[0])
            wait_until(
                lambda: [c.pid for c in gdos.adoption_candidates(node_id, spec)] == [first.pid],
                timeout=15,
                what="the outside process as the only candidate",
            )
            module = gdos.create_adopted_module(adopted_system(gdos, "daemon"), "daemon", spec)
            instance = gdos.deploy(module.id, node_id, wait="started")
            assert instance.pid == first.pid

            # kill -9 the worker: the adopted process is untouched, a new worker re-attaches.
            running.workers[0].kill()
            assert first.poll() is None
            running.start_worker(work_dir=running.root / "worker0")
            wait_instance(
                gdos,
                instance.id,
                lambda i: i.node_online and i.state == InstanceState.RUNNING and i.pid == first.pid,
                timeout=30,
            )
            assert gdos.get_instance(instance.id).restarts == 0

            # It dies and is started again outside GDOS: the re-attached worker follows.
            first.kill()
            first.wait(10)
            later.append(start_outside())
            wait_instance(
                gdos,
                instance.id,
                lambda i: i.state == InstanceState.RUNNING and i.pid == later[0].pid,
                timeout=30,
            )
            gdos.stop_instance(instance.id)
            assert later[0].wait(15) is not None
    finally:
        for proc in [first, *later]:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
