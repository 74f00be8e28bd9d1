"""Crashes with real processes: the old run is gone before the new one starts; honest reasons."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from gdos_sdk.executors import ProcessRef, default_executor
from gdos_sdk.protocol import InstanceStatus
from gdos_sdk.states import DesiredState, InstanceState
from gdos_worker.runner import InstanceRunner
from gdos_worker.state import InstanceRecord, WorkDir

from .specs import instance_spec

pytestmark = pytest.mark.anyio

FORKER = Path(__file__).parents[1] / "e2e" / "services" / "forker.py"
RESTART = {
    "policy": "always",
    "max_restarts": 10,
    "window_seconds": 60,
    "backoff_initial": 0.1,
    "backoff_max": 0.2,
    "start_seconds": 0.1,
}


def make_runner(
    tmp_path: Path, main: str, **manifest: object
) -> tuple[InstanceRunner, list[InstanceStatus]]:
    workdir = WorkDir(tmp_path / "work")
    workdir.prepare()
    spec = instance_spec(
        instance_id=f"crash-{os.getpid()}-{time.monotonic_ns()}",
        package="svc",
        version="1.0.0",
        # The interpreter itself, not a #! line: a version-manager shim would fork helpers.
        manifest={
            "name": "svc",
            "version": "1.0.0",
            "entrypoint": sys.executable,
            "args": ["main.py"],
            **manifest,
        },
    )
    paths = workdir.paths(spec.instance_id)
    paths.app.mkdir(parents=True)
    (paths.app / "main.py").write_text(main)
    record = InstanceRecord(
        spec=spec, desired_state=DesiredState.STOPPED, state=InstanceState.STOPPED
    )
    reports: list[InstanceStatus] = []
    runner = InstanceRunner(
        record,
        workdir=workdir,
        executor=default_executor(),
        node_id="n",
        on_change=reports.append,
    )
    return runner, reports


async def eventually(check: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {timeout} s")
        await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def runs(pids_file: Path) -> list[dict[str, int]]:
    """Each run's four processes (main, child1, grandchild, child2) as the service noted them."""
    found: list[dict[str, int]] = []
    if not pids_file.exists():
        return found
    for line in pids_file.read_text().splitlines():
        role, pid = line.split()
        if role == "main":
            found.append({})
        found[-1][role] = int(pid)
    return found


def complete(pids_file: Path, run: int) -> bool:
    found = runs(pids_file)
    return len(found) > run and len(found[run]) == 4


async def test_a_crash_restart_first_clears_the_whole_old_tree(tmp_path: Path) -> None:
    runner, _ = make_runner(tmp_path, FORKER.read_text(), stop_timeout=1, restart=RESTART)
    pids_file = runner.paths.root / "pids"
    executor = runner.executor
    try:
        await runner.start()
        for crash in range(3):
            await eventually(lambda: complete(pids_file, crash))  # noqa: B023
            old = runs(pids_file)[crash]
            assert os.getpgid(old["grandchild"]) != old["main"]  # it left the group
            os.kill(old["main"], signal.SIGKILL)
            await eventually(lambda: len(runs(pids_file)) == crash + 2)  # noqa: B023
            # The new run's first process only exists once every old one is gone.
            new_main = psutil.Process(runs(pids_file)[crash + 1]["main"])
            for role, pid in old.items():
                assert not alive(pid), (crash, role, pid)
            assert new_main.is_running()
        await eventually(lambda: complete(pids_file, 3))
        latest = runs(pids_file)[3]
        # Exactly one live tree: the four processes of the last run carry the tag.
        await eventually(
            lambda: sorted(executor.find_tag(runner.instance_id)) == sorted(latest.values())
        )
        assert runner.record.state == InstanceState.RUNNING and runner.record.restarts == 3
    finally:
        await runner.destroy()
    assert executor.find_tag(runner.instance_id) == []


async def test_a_reattached_process_that_dies_is_reported_as_vanished(tmp_path: Path) -> None:
    runner, reports = make_runner(
        tmp_path,
        "import time\nwhile True:\n    time.sleep(1)\n",
        restart={"policy": "never"},
    )
    # A service started by an earlier worker: not our child (its parent exited).
    env = {**os.environ, "GDOS_INSTANCE_ID": runner.instance_id}
    launcher = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'],"
        " start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL)\n"
        "print(p.pid)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", launcher, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    pid = int(out)
    try:
        ref = ProcessRef(
            pid=pid, create_time=psutil.Process(pid).create_time(), pgid=pid, tag=runner.instance_id
        )
        runner.record.process = ref
        runner.record.desired_state = DesiredState.RUNNING
        runner.record.state = InstanceState.RUNNING
        runner.resume()
        assert runner.handle is not None and not runner.handle.is_child
        os.kill(pid, signal.SIGKILL)
        await eventually(lambda: runner.record.state == InstanceState.STOPPED)
        reason = reports[-1].reason
        assert reason.startswith(
            "the process vanished (its exit status cannot be read after a worker restart)"
        ), reason
        assert "not a child" not in reason
    finally:
        await runner.close()
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
