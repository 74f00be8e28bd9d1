"""Backups with real processes: restore in place (same pid), onto a fresh master, rejection,
and migrating the stored objects from the local disk to MinIO (SeaweedFS)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import psutil
import pytest

from gdos_sdk import BackupError, Client, InstanceState, NotFoundError
from gdos_sdk.models import Instance
from gdos_sdk.testing import LocalCluster, wait_until

from ..storage.seaweed import SeaweedFS
from .conftest import read_json
from .test_lifecycle import setup_module_instance
from .test_minio import objects, online_node

pytestmark = pytest.mark.e2e


@pytest.fixture
def seaweed(tmp_path: Path) -> Iterator[SeaweedFS]:
    server = SeaweedFS(tmp_path / "seaweedfs")
    try:
        server.start()
        yield server
    finally:
        server.kill()


def instance_dirs(cluster: LocalCluster) -> set[str]:
    root = cluster.root / "worker0" / "instances"
    return {p.name for p in root.iterdir()} if root.exists() else set()


@pytest.mark.both_engines
def test_restore_in_place_keeps_the_process_and_reconciles_workers(
    running: LocalCluster, pack: Callable[..., Path]
) -> None:
    master_pid = running.master.pid if running.master else 0
    with running.client() as gdos:
        node_id = online_node(gdos)
        kept = setup_module_instance(gdos, node_id, pack("sleeper"), start=True)
        kept_pid = gdos.get_instance(kept.id).pid
        doomed = gdos.create_system("doomed")
        backup = gdos.create_backup()

        # Change everything the backup covers.
        gdos.delete_system(doomed.id)
        gdos.upload_package(pack("sleeper", name="extra", version="2.0.0"))
        later = gdos.deploy(kept.module_id, node_id, start=True, wait="started")
        assert later.state == InstanceState.RUNNING
        assert instance_dirs(running) == {kept.id, later.id}

        result = gdos.restore_backup(backup.name)
        assert result.nodes_reconnected == 1

        # The same master process answers with the backed-up state.
        assert running.master is not None and running.master.alive()
        assert running.master.pid == master_pid and psutil.pid_exists(master_pid)
        assert sorted(s.name for s in gdos.list_systems()) == ["doomed", "shop"]
        assert [p.name for p in gdos.list_packages()] == ["sleeper"]
        with pytest.raises(NotFoundError):
            gdos.get_package("extra", "2.0.0")
        assert [i.id for i in gdos.list_instances()] == [kept.id]

        # The worker reconnects and is reconciled: the instance made after the backup is
        # destroyed on the node; the one in the backup keeps running, not restarted.
        wait_until(lambda: instance_dirs(running) == {kept.id}, timeout=30, what="reconcile")
        running_again = wait_until(
            lambda: (i := gdos.get_instance(kept.id)).state == InstanceState.RUNNING and i,
            timeout=30,
            what="instance running after reconnect",
        )
        assert running_again.pid == kept_pid
        actions = {e.action for e in gdos.list_audit(action="backup.restore").items}
        assert actions == {"backup.restore"}


def test_restore_onto_a_fresh_master_and_reject_a_truncated_archive(
    tmp_path: Path, pack: Callable[..., Path]
) -> None:
    password = "same-admin-password-1"
    with LocalCluster(tmp_path / "old", admin_password=password) as old:
        old.start_master()
        with old.client() as gdos:
            package = gdos.upload_package(pack("sleeper"))
            system = gdos.create_system("billing")
            gdos.create_module(system.id, "web", "sleeper", "1.0.0")
            backup = gdos.create_backup(include_packages=True)
            archive = gdos.download_backup(backup.name, tmp_path / backup.name)

    with LocalCluster(tmp_path / "new", admin_password=password) as new:
        proc = new.start_master()
        with new.client() as gdos:
            # A truncated archive: a 422 naming the problem, nothing stored or changed.
            data = archive.read_bytes()
            with pytest.raises(BackupError, match="truncated or corrupt") as caught:
                gdos.upload_backup(data[: len(data) * 2 // 3])
            assert caught.value.status == 422
            assert gdos.list_backups() == [] and gdos.list_systems() == []
            assert gdos.list_packages() == []

            uploaded = gdos.upload_backup(archive)
            result = gdos.restore_backup(uploaded.name)
            assert result.objects_restored == 1
        # The backup's admin (same password, another account id) is back: log in again.
        with Client(new.url) as fresh:
            fresh.login("admin", password)
            assert [s.name for s in fresh.list_systems()] == ["billing"]
            assert [m.name for m in fresh.list_modules(fresh.list_systems()[0].id)] == ["web"]
            saved = fresh.download_package("sleeper", "1.0.0", tmp_path / "dl.zip")
            assert hashlib.sha256(saved.read_bytes()).hexdigest() == package.sha256
        assert proc.alive() and new.master is proc


def gdos_master(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("gdos-master")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "gdos_master"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120, check=False)


def test_migrate_local_to_minio_then_serve_from_minio(
    cluster: LocalCluster, seaweed: SeaweedFS, pack: Callable[..., Path], tmp_path: Path
) -> None:
    bucket = "gdos-migrated"
    cluster.start_master()
    with cluster.client() as gdos:
        package = gdos.upload_package(pack("sleeper"))
        backup = gdos.create_backup()
    assert cluster.master is not None
    cluster.master.terminate()
    data_dir = str(cluster.root / "master")
    flags = [*seaweed.master_flags(bucket), "-data_dir", data_dir]

    # Nothing to copy from: a clear error, exit status 2, nothing written.
    bad = gdos_master("migrate-storage", *flags)
    assert bad.returncode == 2 and "-to minio" in bad.stderr

    first = gdos_master("migrate-storage", "-from", "local", "-to", "minio", *flags)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 copied" in first.stdout and "0 failed" in first.stdout
    stored = {o.key: o.size for o in objects(seaweed, bucket)}
    assert stored[f"packages/{package.sha256}.zip"] == package.size
    assert f"backups/{backup.name}" in stored

    # Run again: idempotent, everything is found with the same digest.
    again = gdos_master("migrate-storage", "--from=local", "--to=minio", *flags)
    assert again.returncode == 0 and "0 copied" in again.stdout and "2 already" in again.stdout

    # A damaged object at the destination is noticed by its digest and copied again.
    async def damage() -> None:
        storage = seaweed.storage(bucket)
        bogus = tmp_path / "bogus.zip"
        bogus.write_bytes(b"x" * package.size)
        try:
            await storage.put_file(f"packages/{package.sha256}.zip", bogus)
        finally:
            await storage.close()

    anyio.run(damage)
    healed = gdos_master("migrate-storage", "-from", "local", "-to", "minio", *flags)
    assert healed.returncode == 0 and "1 copied" in healed.stdout

    # The master on MinIO serves the package and the backup; the local copies are not used.
    cluster.start_master(*seaweed.master_flags(bucket))
    for path in (cluster.root / "master" / "storage").rglob("*"):
        if path.is_file():
            path.unlink()
    with cluster.client() as gdos:
        saved = gdos.download_package("sleeper", "1.0.0", tmp_path / "from-minio.zip")
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == package.sha256
        assert [b.name for b in gdos.list_backups()] == [backup.name]
        cluster.start_worker()
        instance = setup_module_instance_existing(gdos, online_node(gdos))
        assert instance.state == InstanceState.RUNNING
        spec = read_json(cluster.root / "worker0" / "instances" / instance.id / "instance.json")[
            "spec"
        ]
        assert str(spec["download_path"]).startswith(f"http://{seaweed.endpoint}/{bucket}/")

        # Backups live in MinIO too; a restore brings back an instance destroyed since, and
        # the reconnecting worker deploys it again (fetching from MinIO by presigned URL).
        full = gdos.create_backup(include_packages=True)
        assert f"backups/{full.name}" in {o.key for o in objects(seaweed, bucket)}
        gdos.destroy_instance(instance.id)
        assert not (cluster.root / "worker0" / "instances" / instance.id).exists()
        result = gdos.restore_backup(full.name)
        assert result.objects_present == 1 and result.objects_restored == 0
        assert [i.id for i in gdos.list_instances()] == [instance.id]
        back = wait_until(
            lambda: (i := gdos.get_instance(instance.id)).state == InstanceState.RUNNING and i,
            timeout=60,
            what="the restored instance to run again",
        )
        assert back.node_online


def setup_module_instance_existing(gdos: Client, node_id: str) -> Instance:
    system = gdos.create_system("shop")
    module = gdos.create_module(system.id, "web", "sleeper", "1.0.0")
    return gdos.deploy(module.id, node_id, start=True, wait="started")
