"""Finding #2 on the worker: services run as an unprivileged account, for real.

A worker running as root (these tests do) starts a service, its stop program
and its ``cmd`` health check as ``runtime.default_user`` or the module's
account; what it started for an adopted module is gone after a destroy.
Checked through /proc, with real processes.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest

from gdos_sdk.adoption import AdoptionSpec, AdoptionStrategy
from gdos_sdk.errors import SpawnError
from gdos_sdk.executors.posix import PosixExecutor
from gdos_sdk.protocol import InstanceSpec, InstanceStatus
from gdos_sdk.states import Health, InstanceState
from gdos_worker.adopted import AdoptedRunner
from gdos_worker.runner import InstanceRunner
from gdos_worker.state import WorkDir

from ..worker.specs import instance_spec, stopped_record

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(os.geteuid() != 0, reason="switching accounts needs a root worker"),
]

NOBODY = pwd.getpwnam("nobody")

SERVICE = """#!/bin/sh
id > "$GDOS_APP_DIR/id.txt"
echo started
exec sleep 600
"""


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder another account can traverse (pytest's own tmp folders are 0700 root)."""
    folder = Path(tempfile.mkdtemp(prefix="gdos-runas-", dir="/tmp"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("GDOS_WORK_DIR", "").startswith(str(folder)):
                    proc.kill()
            except psutil.Error:
                pass
        shutil.rmtree(folder, ignore_errors=True)


def ids(pid: int) -> dict[str, list[int]]:
    """Uid, Gid and Groups lines of /proc/<pid>/status (real, effective, saved, fs)."""
    found: dict[str, list[int]] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            found[key] = [int(v) for v in value.split()]
    return found


def package_runner(
    root: Path, *, default_user: str = "", manifest: dict[str, object] | None = None, **spec: object
) -> InstanceRunner:
    record = stopped_record(
        instance_spec(
            package="who",
            version="1",
            manifest={
                "name": "who",
                "version": "1",
                "entrypoint": "main.sh",
                "stop_timeout": 5,
                **(manifest or {}),
            },
            **spec,
        )
    )
    root.mkdir(mode=0o711, exist_ok=True)  # the work dir's parent, as /opt would be
    root.chmod(0o711)
    workdir = WorkDir(root / "work")
    workdir.prepare()
    paths = workdir.paths("i-1")
    paths.app.mkdir(parents=True)
    main = paths.app / "main.sh"
    main.write_text(SERVICE)
    main.chmod(0o755)
    return InstanceRunner(
        record,
        workdir=workdir,
        executor=PosixExecutor(),
        node_id="n-1",
        on_change=lambda _: None,
        base_env={"PATH": "/usr/bin:/bin", "HOME": "/root", "USER": "root"},
        default_user=default_user,
    )


async def wait_for(path: Path, timeout: float = 10.0) -> str:
    with anyio.fail_after(timeout):
        while not path.is_file() or not path.read_text():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return path.read_text()


async def test_a_service_runs_as_the_default_user_not_root(open_dir: Path) -> None:
    runner = package_runner(open_dir, default_user="nobody")
    status = await runner.start()
    try:
        assert status.state == InstanceState.RUNNING and status.pid is not None
        found = ids(status.pid)
        # Real, effective, saved and file-system ids all dropped; root's groups gone too.
        assert found["Uid"] == [NOBODY.pw_uid] * 4
        assert found["Gid"] == [NOBODY.pw_gid] * 4
        assert 0 not in found["Groups"]
        assert f"uid={NOBODY.pw_uid}(nobody)" in await wait_for(runner.paths.app / "id.txt")
        # Its environment says who it is, not root's HOME.
        env = psutil.Process(status.pid).environ()
        assert (env["USER"], env["HOME"]) == ("nobody", NOBODY.pw_dir)
        # It owns its package folder; its record and the console log stay the worker's.
        assert runner.paths.app.stat().st_uid == NOBODY.pw_uid
        assert runner.paths.logs.stat().st_uid == 0
        assert runner.paths.record.stat().st_uid == 0
        assert stat.S_IMODE(runner.paths.root.stat().st_mode) & stat.S_IXOTH
    finally:
        stopped = await runner.stop()  # root stops the nobody process
    assert stopped.state == InstanceState.STOPPED
    assert not psutil.pid_exists(status.pid) or psutil.Process(status.pid).status() == "zombie"
    assert "started" in runner.paths.console_log.read_text()


async def test_the_module_account_wins_and_a_worker_without_default_keeps_its_own(
    open_dir: Path,
) -> None:
    named = package_runner(open_dir / "a", user="nobody", group="nogroup")
    status = await named.start()
    try:
        assert status.pid is not None and ids(status.pid)["Uid"][0] == NOBODY.pw_uid
    finally:
        await named.stop()
    own = package_runner(open_dir / "b")  # no account anywhere, no default: the worker's
    status = await own.start()
    try:
        assert status.pid is not None and ids(status.pid)["Uid"][0] == 0
    finally:
        await own.stop()


async def test_an_unknown_account_fails_the_start_with_its_name(open_dir: Path) -> None:
    runner = package_runner(open_dir, manifest={"user": "no-such-account-here"})
    with pytest.raises(SpawnError, match="no user 'no-such-account-here'"):
        await runner.start()
    assert runner.record.state == InstanceState.FAILED


async def test_cmd_health_check_and_stop_program_run_as_the_service_account(
    open_dir: Path,
) -> None:
    check = {
        "type": "cmd",
        "command": ["/bin/sh", "-c", f'test "$(id -u)" = {NOBODY.pw_uid}'],
        "interval": 0.2,
        "retries": 1,
    }
    stop = open_dir / "stop-id.txt"
    runner = package_runner(
        open_dir,
        default_user="nobody",
        manifest={
            "health_check": check,
            "stop_entrypoint": "/bin/sh",
            "stop_args": ["-c", f"id -u > {stop}"],
        },
    )
    open_dir.chmod(0o733)  # the stop program (as nobody) writes its id here
    await runner.start()
    with anyio.fail_after(10):
        while runner.record.health != Health.HEALTHY:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await runner.stop()
    assert stop.read_text().strip() == str(NOBODY.pw_uid)


async def test_destroying_an_adopted_spawn_leaves_nothing_running(open_dir: Path) -> None:
    """The issue's evidence: a spawned adopted process survived the instance's destroy."""
    marker = open_dir / "spawned.txt"
    adoption = AdoptionSpec(
        strategy=AdoptionStrategy.SPAWN,
        command=f"sh -c 'id > {marker}; (sleep 600 &) ; exec sleep 600'",
        stop_timeout=2,
    )
    spec: InstanceSpec = instance_spec(module_name="legacy", adoption=adoption)
    workdir = WorkDir(open_dir / "work")
    workdir.prepare()
    workdir.paths("i-1").logs.mkdir(parents=True)
    reports: list[InstanceStatus] = []
    runner = AdoptedRunner(
        stopped_record(spec),
        workdir=workdir,
        executor=PosixExecutor(),
        node_id="n",
        on_change=reports.append,
        base_env={"PATH": "/usr/bin:/bin"},
    )
    status = await runner.start()
    assert status.pid is not None
    executor = PosixExecutor()
    try:
        await wait_for(marker)
        with anyio.fail_after(10):  # the daemon is forked just after the marker is written
            while len(tagged := executor.find_tag("i-1")) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert status.pid in tagged  # the service and its own daemon
    finally:
        await runner.destroy()
    with anyio.fail_after(10):
        while executor.find_tag("i-1"):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert not runner.paths.root.exists()


@pytest.mark.e2e
def test_an_operator_deploy_on_a_root_worker_runs_as_nobody(open_dir: Path, tmp_path: Path) -> None:
    """The review's setup end to end: real master, real root worker, an operator's token."""
    from gdos_sdk import PermissionDenied
    from gdos_sdk.client import Client
    from gdos_sdk.testing import LocalCluster

    from ..conftest import write_service
    from ..e2e.conftest import gdos_pack

    folder = write_service(
        tmp_path / "who",
        {"name": "who", "version": "1.0.0", "entrypoint": "main.sh", "stop_timeout": 2},
        {"main.sh": SERVICE},
        exec_files=("main.sh",),
    )
    zipped = tmp_path / "who.zip"
    assert gdos_pack("build", str(folder), "-o", str(zipped)).returncode == 0
    with LocalCluster(tmp_path / "cluster") as cluster:
        cluster.start_master()
        worker = cluster.start_worker(
            work_dir=open_dir / "work", env={"OPS_WORKER_RUNTIME_DEFAULT_USER": "nobody"}
        )
        node_id = cluster.wait_worker_connected(worker)
        with cluster.client() as admin:
            admin.create_user("ops", "password-1234", "operator")
        with Client(cluster.url) as ops:
            ops.login("ops", "password-1234")
            system = ops.create_system("apps")
            with pytest.raises(PermissionDenied):
                ops.create_adopted_module(
                    system.id,
                    "root-shell",
                    AdoptionSpec(strategy=AdoptionStrategy.SPAWN, command="sh -c 'id'"),
                )
            package = ops.upload_package(zipped)
            module = ops.create_module(system.id, "who", package.name, package.version)
            instance = ops.deploy(module.id, node_id, wait="started")
            assert instance.state == InstanceState.RUNNING and instance.pid is not None
            assert ids(instance.pid)["Uid"] == [NOBODY.pw_uid] * 4
            ops.destroy_instance(instance.id)


def test_a_worker_that_is_not_root_runs_as_itself_and_refuses_another_account() -> None:
    """The account code run as nobody: no switch, a clear error for another account."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    site = [p for p in sys.path if p.endswith("site-packages")]
    script = (
        "from gdos_sdk.executors.accounts import *\n"
        "from gdos_sdk.errors import SpawnError\n"
        "assert not can_switch_accounts()\n"
        "assert switch_arguments(current_account(), 'x') == {}\n"
        "try:\n"
        "    switch_arguments(lookup_account('root'), 'x')\n"
        "except SpawnError as exc:\n"
        "    print(exc.message)\n"
    )
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    result = subprocess.run(
        [python, "-c", script],
        env={"PYTHONPATH": ":".join([str(root), *site]), "PATH": "/usr/bin:/bin"},
        user="nobody",
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "only a worker running as root can switch accounts" in result.stdout
