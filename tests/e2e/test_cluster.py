"""LocalCluster as a user starts it: no arguments, and nothing left behind however it ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from gdos_sdk import Client, LocalCluster
from gdos_sdk.testing import kill_instances_under, wait_until

pytestmark = pytest.mark.e2e

#: a child Python that starts a cluster, deploys a service, prints the pids, then
#: either waits to be killed (argv[1] == "wait") or just ends without close()
CHILD = textwrap.dedent(
    """
    import json, sys, tempfile, time
    from pathlib import Path
    from gdos_sdk import LocalCluster
    from gdos_sdk.archive import build_archive

    src = Path(tempfile.mkdtemp())
    (src / "service.json").write_text(json.dumps(
        {"name": "idle", "version": "1.0.0", "entrypoint": "main.py", "stop_timeout": 2}))
    (src / "main.py").write_text(
        "#!/usr/bin/env python3\\nimport time\\nwhile True: time.sleep(1)\\n")
    (src / "main.py").chmod(0o755)
    build_archive(src, src / "idle.zip")

    cluster = LocalCluster(workers=1)
    gdos = cluster.client()
    package = gdos.upload_package(src / "idle.zip")
    system = gdos.create_system("s")
    module = gdos.create_module(system.id, "idle", package.name, package.version)
    instance = gdos.deploy(module.id, cluster.node_ids()[0], wait="running")
    pids = {
        "master": cluster.master.pid,
        "workers": [w.pid for w in cluster.workers],
        "service": instance.pid,
        "root": str(cluster.root),
    }
    print(json.dumps(pids), flush=True)
    if sys.argv[1] == "wait":
        time.sleep(600)
    """
)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def run_child(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    child = subprocess.Popen(
        [sys.executable, str(script), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        _, errors = child.communicate(timeout=30)
        pytest.fail(f"the child failed:\n{errors}")
    return child, json.loads(line)


def finish(child: subprocess.Popen[str]) -> None:
    child.kill()
    child.communicate()  # reaps it and closes its pipes


def pids_of(found: dict[str, object]) -> list[int]:
    workers = found["workers"]
    assert isinstance(workers, list)
    return [int(str(found["master"])), *map(int, workers), int(str(found["service"]))]


def test_no_arguments_gives_a_running_cluster_that_close_removes(tmp_path: Path) -> None:
    cluster = LocalCluster(workers=2)
    try:
        root = cluster.root
        assert root.is_dir() and cluster.admin_password
        assert cluster.console_url == cluster.url + "/"
        assert repr(cluster).startswith(f"<LocalCluster {cluster.url} running workers=2/2")
        page = cluster._repr_html_()
        assert f'href="{cluster.console_url}"' in page and "worker1" in page
        with cluster.client() as gdos:
            nodes = wait_until(
                lambda: (
                    [n for n in gdos.list_nodes() if n.status.value == "online"][1:]
                    and gdos.list_nodes()
                ),
                what="two online nodes",
            )
            assert sorted(n.id for n in nodes) == sorted(cluster.node_ids())
        with Client(cluster.url) as browser:
            assert browser.login("admin", cluster.admin_password).user.username == "admin"
        pids = [p.pid for p in (cluster.master, *cluster.workers) if p is not None]
    finally:
        cluster.close()
    assert all(gone(pid) for pid in pids)
    assert not root.exists()
    assert repr(cluster) == f"<LocalCluster closed root={root}>"
    cluster.close()  # twice: nothing happens


def test_a_sigkilled_parent_leaves_no_master_worker_or_service(tmp_path: Path) -> None:
    child, found = run_child(tmp_path, "wait")
    pids = pids_of(found)
    try:
        assert not any(gone(pid) for pid in pids)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        wait_until(lambda: all(gone(pid) for pid in pids), timeout=30, what="every process gone")
    finally:
        finish(child)
        kill_instances_under(Path(str(found["root"])))
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_interpreter_exit_without_close_stops_everything(tmp_path: Path) -> None:
    child, found = run_child(tmp_path, "exit")
    pids = pids_of(found)
    try:
        assert child.wait(60) == 0, child.communicate()[1]
        # Stopped by the exit itself (no parent-death polling needed): at once.
        assert all(gone(pid) for pid in pids), [p for p in pids if not gone(p)]
        assert not Path(str(found["root"])).exists()
    finally:
        finish(child)
        kill_instances_under(Path(str(found["root"])))
