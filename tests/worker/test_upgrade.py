"""Upgrades in place on the worker: same instance, new version, old ones kept for a rollback."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from gdos_sdk.errors import ConflictError, TransportError
from gdos_sdk.executors import default_executor
from gdos_sdk.protocol import InstanceSpec, InstanceStatus
from gdos_sdk.states import DesiredState, InstanceState
from gdos_sdk.testing import wait_until
from gdos_worker.state import WorkDir
from gdos_worker.supervisor import Supervisor

from .specs import instance_spec

pytestmark = pytest.mark.anyio


class Store:
    """Package downloads served from memory, counted by digest."""

    def __init__(self) -> None:
        self.packages: dict[str, bytes] = {}
        self.calls: list[str] = []
        self.broken = False

    async def __call__(self, path: str, dest: Path) -> None:
        sha = path.rsplit("/", 1)[1]
        self.calls.append(sha)
        if self.broken:
            raise TransportError("download failed: HTTP 503")
        dest.write_bytes(self.packages[sha])


def build(
    tmp_path: Path, store: Store, version: str, *, entrypoint: str = "run.sh"
) -> InstanceSpec:
    """A package whose service prints its version, then sleeps; its spec for instance i-1."""
    manifest = {"name": "shop", "version": version, "entrypoint": entrypoint}
    script = f"#!/bin/sh\necho running {version}\nexec sleep 100\n".encode()
    path = tmp_path / f"shop-{version}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("service.json", json.dumps(manifest))
        entry = zipfile.ZipInfo("run.sh")
        entry.external_attr = 0o755 << 16  # executable
        zf.writestr(entry, script)
    content = path.read_bytes()
    sha = hashlib.sha256(content).hexdigest()
    store.packages[sha] = content
    return instance_spec(
        package="shop",
        version=version,
        sha256=sha,
        size=len(content),
        download_path=f"/api/v1/agent/packages/{sha}",
        manifest=manifest,
    )


def make(tmp_path: Path, store: Store, keep: int = 3) -> tuple[Supervisor, list[InstanceStatus]]:
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
        keep_versions=keep,
    )
    return supervisor, reports


def console(supervisor: Supervisor) -> str:
    return supervisor.workdir.paths("i-1").console_log.read_text()


async def test_an_upgrade_keeps_the_instance_and_a_rollback_needs_no_download(
    tmp_path: Path,
) -> None:
    store = Store()
    v1, v2 = build(tmp_path, store, "1.0.0"), build(tmp_path, store, "2.0.0")
    supervisor, reports = make(tmp_path, store)
    try:
        first = await supervisor.deploy(v1, start=True)
        runner = supervisor.get("i-1")
        runner.record.restarts = 4  # its history, which the upgrade must keep
        wait_until(lambda: "running 1.0.0" in console(supervisor), timeout=10, what="v1 output")

        status = await supervisor.upgrade(v2)
        assert status.state == InstanceState.RUNNING and status.version == "2.0.0"
        assert status.pid != first.pid and status.restarts == 4
        assert supervisor.get("i-1") is runner  # one instance, moved in place
        wait_until(lambda: "running 2.0.0" in console(supervisor), timeout=10, what="v2 output")
        assert "running 1.0.0" in console(supervisor)  # the same log file goes on
        # The worker reported each step, and the new version with it.
        steps = [(r.state, r.version) for r in reports]
        assert (InstanceState.STOPPING, "1.0.0") in steps
        assert steps[-1] == (InstanceState.RUNNING, "2.0.0")
        paths = supervisor.workdir.paths("i-1")
        assert supervisor.workdir.kept_releases(paths) == [v1.sha256]
        record = json.loads(paths.record.read_text())
        assert record["spec"]["version"] == "2.0.0" and record["upgrade"] is None

        downloads = len(store.calls)
        back = await supervisor.upgrade(v1)
        assert back.version == "1.0.0" and back.state == InstanceState.RUNNING
        assert len(store.calls) == downloads  # v1 was still extracted: no download
        wait_until(
            lambda: console(supervisor).count("running 1.0.0") == 2, timeout=10, what="v1 again"
        )
        # Asked again for the version it has (a reconcile, a resumed rollout): left alone.
        again = await supervisor.upgrade(v1)
        assert again.pid == back.pid
    finally:
        await supervisor.destroy("i-1")


async def test_older_versions_beyond_keep_versions_are_removed_with_their_zips(
    tmp_path: Path,
) -> None:
    store = Store()
    specs = [build(tmp_path, store, v) for v in ("1.0.0", "2.0.0", "3.0.0")]
    supervisor, _ = make(tmp_path, store, keep=2)
    await supervisor.deploy(specs[0], start=False)
    for spec in specs[1:]:
        status = await supervisor.upgrade(spec)
        assert status.state == InstanceState.STOPPED and status.version == spec.version
    paths = supervisor.workdir.paths("i-1")
    assert supervisor.workdir.kept_releases(paths) == [specs[1].sha256]
    cached = {p.stem for p in supervisor.workdir.cache_dir.glob("*.zip")}
    assert cached == {specs[1].sha256, specs[2].sha256}
    # The oldest is gone from disk: going back to it downloads it again.
    store.calls.clear()
    await supervisor.upgrade(specs[0])
    assert store.calls == [specs[0].sha256]


async def test_a_failed_fetch_leaves_the_old_version_running(tmp_path: Path) -> None:
    store = Store()
    v1, v2 = build(tmp_path, store, "1.0.0"), build(tmp_path, store, "2.0.0")
    supervisor, _ = make(tmp_path, store)
    try:
        before = await supervisor.deploy(v1, start=True)
        store.broken = True
        with pytest.raises(TransportError, match=r"cannot fetch package shop@2\.0\.0"):
            await supervisor.upgrade(v2)
        after = supervisor.get("i-1").status()
        assert (after.state, after.pid, after.version) == (
            InstanceState.RUNNING,
            before.pid,
            "1.0.0",
        )
        with pytest.raises(ConflictError, match="runs package 'shop'"):
            await supervisor.upgrade(instance_spec(package="other", sha256="x", manifest={}))
    finally:
        await supervisor.destroy("i-1")


async def test_a_new_version_that_cannot_start_is_failed_on_that_version(tmp_path: Path) -> None:
    store = Store()
    v1 = build(tmp_path, store, "1.0.0")
    bad = build(tmp_path, store, "2.0.0", entrypoint="no-such-program-here")
    supervisor, _ = make(tmp_path, store)
    try:
        await supervisor.deploy(v1, start=True)
        status = await supervisor.upgrade(bad)
        assert status.state == InstanceState.FAILED and status.version == "2.0.0"
        assert "neither a file in the package nor on PATH" in status.reason
        assert status.desired_state == DesiredState.RUNNING
        back = await supervisor.upgrade(v1)  # a revert
        assert back.state == InstanceState.RUNNING and back.version == "1.0.0"
    finally:
        await supervisor.destroy("i-1")


async def test_a_switch_cut_short_by_a_worker_crash_is_settled_at_the_next_start(
    tmp_path: Path,
) -> None:
    store = Store()
    v1, v2 = build(tmp_path, store, "1.0.0"), build(tmp_path, store, "2.0.0")
    supervisor, _ = make(tmp_path, store)
    await supervisor.deploy(v1, start=False)
    await supervisor.upgrade(v2)
    await supervisor.upgrade(v1)  # app/ holds v1, releases/ holds v2
    workdir = supervisor.workdir
    paths = workdir.paths("i-1")
    runner = supervisor.get("i-1")

    # Died between the two renames: app/ is gone, v1 already moved aside.
    runner.record.upgrade = v2
    workdir.save_record(runner.record)
    paths.app.rename(paths.release(v1.sha256))
    again, _ = make(tmp_path, store)
    again.load()
    status = again.get("i-1").status()
    assert status.version == "1.0.0" and (paths.app / "run.sh").is_file()
    assert workdir.kept_releases(paths) == [v2.sha256]

    # Died after the switch, before the record said so: the record follows app/.
    record = again.get("i-1").record
    record.upgrade = v2
    workdir.save_record(record)
    workdir.switch_release(paths, v1.sha256, v2.sha256)
    third, _ = make(tmp_path, store)
    third.load()
    assert third.get("i-1").status().version == "2.0.0"
    assert json.loads(paths.record.read_text())["upgrade"] is None
