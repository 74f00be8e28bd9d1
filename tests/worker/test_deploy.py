"""Deploys on the worker: one at a time per instance, cancelled by a destroy, all or nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest

from gdos_sdk.errors import SpawnError
from gdos_sdk.executors import default_executor
from gdos_sdk.protocol import InstanceSpec, InstanceStatus
from gdos_sdk.states import InstanceState
from gdos_worker.state import WorkDir
from gdos_worker.supervisor import Supervisor

from ..conftest import raw_zip
from .specs import instance_spec

pytestmark = pytest.mark.anyio


class HeldStore:
    """A download that waits until ``release`` is set (a slow or cut-off network path)."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.release = asyncio.Event()
        self.calls = 0

    async def __call__(self, path: str, dest: Path) -> None:
        self.calls += 1
        await self.release.wait()
        dest.write_bytes(self.content)


def package(tmp_path: Path, entrypoint: str = "run.sh") -> bytes:
    manifest = {"name": "shop", "version": "1.0.0", "entrypoint": entrypoint}
    path = raw_zip(
        tmp_path / "shop.zip",
        {"service.json": json.dumps(manifest).encode(), "run.sh": b"#!/bin/sh\nsleep 100\n"},
    )
    return path.read_bytes()


def make(tmp_path: Path, store: HeldStore) -> tuple[Supervisor, list[InstanceStatus]]:
    workdir = WorkDir(tmp_path / "work")
    workdir.prepare()
    reports: list[InstanceStatus] = []
    supervisor = Supervisor(
        workdir,
        default_executor(),
        node_id="n",
        download=store,
        on_change=reports.append,
        fetch_attempts=1,
    )
    return supervisor, reports


def spec_of(content: bytes, entrypoint: str = "run.sh") -> InstanceSpec:
    manifest = {"name": "shop", "version": "1.0.0", "entrypoint": entrypoint}
    return instance_spec(
        package="shop",
        version="1.0.0",
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
        download_path="/api/v1/agent/packages/x",
        manifest=manifest,
    )


async def test_a_second_deploy_of_the_same_instance_joins_the_first(tmp_path: Path) -> None:
    content = package(tmp_path)
    store = HeldStore(content)
    supervisor, _ = make(tmp_path, store)
    spec = spec_of(content)
    first = asyncio.ensure_future(supervisor.deploy(spec, start=False))
    await asyncio.sleep(0.05)
    # The master timed out, the channel came back, and the reconcile sends it again.
    second = asyncio.ensure_future(supervisor.deploy(spec, start=False))
    await asyncio.sleep(0.05)
    store.release.set()
    results = await asyncio.gather(first, second)
    assert [r.state for r in results] == [InstanceState.STOPPED] * 2
    assert store.calls == 1 and list(supervisor.runners) == ["i-1"]


async def test_a_destroy_cancels_a_deploy_in_progress_and_leaves_nothing(tmp_path: Path) -> None:
    content = package(tmp_path)
    store = HeldStore(content)
    supervisor, _ = make(tmp_path, store)
    deploy = asyncio.ensure_future(supervisor.deploy(spec_of(content), start=True))
    await asyncio.sleep(0.05)
    await supervisor.destroy("i-1")
    with pytest.raises(asyncio.CancelledError):
        await deploy
    assert supervisor.runners == {}
    assert not supervisor.workdir.paths("i-1").root.exists()


async def test_a_deploy_that_cannot_start_leaves_nothing(tmp_path: Path) -> None:
    content = package(tmp_path, entrypoint="no-such-program-here")
    store = HeldStore(content)
    store.release.set()
    supervisor, reports = make(tmp_path, store)
    with pytest.raises(SpawnError, match="neither a file in the package nor on PATH"):
        await supervisor.deploy(spec_of(content, "no-such-program-here"), start=True)
    # The master forgets an instance whose deploy failed: the worker must keep nothing.
    assert supervisor.runners == {} and supervisor.inventory() == []
    assert not supervisor.workdir.paths("i-1").root.exists()
    assert reports[-1].state == InstanceState.FAILED


async def test_processes_of_an_instance_without_a_record_are_reported_then_destroyed(
    tmp_path: Path,
) -> None:
    content = package(tmp_path)
    supervisor, _ = make(tmp_path, HeldStore(content))
    folder = supervisor.workdir.paths("lost-1").root
    folder.mkdir(parents=True)  # its instance.json is gone (a disk full, a manual cleanup)
    env = {**os.environ, "GDOS_INSTANCE_ID": "lost-1"}
    proc = await asyncio.create_subprocess_exec("sleep", "300", env=env, start_new_session=True)
    try:
        # The parent may run again before the kernel has finished the child's exec (vfork
        # returns at the switch of address space), when its environment still reads empty:
        # wait until the tag can be seen, as it can for any process that has been running.
        environ = Path(f"/proc/{proc.pid}/environ")
        for _ in range(500):
            if b"GDOS_INSTANCE_ID=lost-1" in environ.read_bytes():
                break
            await asyncio.sleep(0.01)
        supervisor.load()
        [stray] = supervisor.inventory()
        assert (stray.instance_id, stray.state, stray.pid) == ("lost-1", "unknown", proc.pid)
        assert "without a usable record" in stray.reason
        await supervisor.destroy("lost-1")  # what the master commands for an orphan
        assert await asyncio.wait_for(proc.wait(), 10) == -9
        assert supervisor.inventory() == [] and not folder.exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
