"""Issue 12, finding 6: what GDOS keeps on disk is readable by its own user only.

A real master and worker: a package, an instance with a secret in its env, a backup and an
open terminal session (its recording) put every kind of file in place; then every folder
under the master's data dir and the worker's work dir must be 0700 and every file 0600
(the extracted package keeps its own modes inside its 0700 folder). An install made by an
older version (0755/0644) is repaired when the master and worker start.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from gdos_sdk.filemodes import Owner, private_dir, secure_tree
from gdos_sdk.testing import LocalCluster

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits"),
]

SHELL = {"OPS_WORKER_TERMINAL_SHELL": "/bin/sh -i"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path / "cluster")
    try:
        yield local
    finally:
        local.close()


def modes(root: Path) -> dict[str, int]:
    """Permission bits of everything under ``root`` (not inside extracted packages)."""
    found = {".": stat.S_IMODE(root.lstat().st_mode)}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        for name in dirs + files:
            path = here / name
            if path.is_symlink():
                continue
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
        if here.parent.name == "instances" and "app" in dirs:
            dirs.remove("app")  # the package's own files: modes as packed, in a 0700 folder
    return found


def not_private(root: Path) -> dict[str, str]:
    wrong = {}
    for name, mode in modes(root).items():
        expected = 0o700 if (root / name).is_dir() else 0o600
        if mode != expected:
            wrong[name] = oct(mode)
    return wrong


def package(tmp_path: Path) -> Path:
    path = tmp_path / "sleepy-1.0.0.zip"
    with zipfile.ZipFile(path, "w") as zf:
        manifest = {"name": "sleepy", "version": "1.0.0", "entrypoint": "run.sh"}
        zf.writestr("service.json", json.dumps(manifest))
        script = zipfile.ZipInfo("run.sh")
        script.external_attr = 0o755 << 16
        zf.writestr(script, "#!/bin/sh\necho up\nexec sleep 1000\n")
    return path


def test_data_and_work_dirs_are_private_and_repaired_at_start(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    cluster.start_master()
    worker = cluster.start_worker(env=SHELL)
    node_id = cluster.wait_worker_connected(worker)
    data, work = cluster.root / "master", cluster.root / "worker0"
    with cluster.client() as gdos:
        uploaded = gdos.upload_package(package(tmp_path))
        system = gdos.create_system("shop")
        module = gdos.create_module(
            system.id, "db", uploaded.name, uploaded.version, env={"DB_PASSWORD": "hunter2-x"}
        )
        instance = gdos.deploy(module.id, node_id, start=True, wait="started")
        gdos.create_backup(include_packages=True)
        url = f"ws://127.0.0.1:{cluster.master_port}/api/v1/terminal/{node_id}?rows=24&cols=80"
        headers = {"Authorization": f"Bearer {cluster.admin_token()}"}
        with connect(url, additional_headers=headers, open_timeout=30) as term:
            while json.loads(term.recv(timeout=30)).get("op") != "session":
                pass
            term.send(b"echo typed-in-terminal\n")
            time.sleep(0.5)
            recordings = list((data / "tmp" / "recordings").glob("*.cast"))
            assert recordings, "the open session's recording"
            master_wrong = not_private(data)
        record = work / "instances" / instance.id / "instance.json"
        assert "hunter2-x" in record.read_text()  # the secret this is about
        expected = {
            data / "ops.db",
            data / "ops.db-wal",
            data / "ops.db-shm",
            work / "node.json",
            work / "instances" / instance.id / "logs" / "console.log",
            work / "instances" / instance.id / "app",
        }
        assert all(p.exists() for p in expected), [p for p in expected if not p.exists()]
        assert list((data / "storage").rglob("*.zip")) and list((work / "cache").glob("*.zip"))
        assert list((data / "storage").rglob("*.tar.gz"))  # the backup
        assert master_wrong == {}
        assert not_private(work) == {}

        # An install left by an older version: everything world-readable.
        worker.terminate()
        assert cluster.master is not None
        cluster.master.terminate()
        for root in (data, work):
            for name in modes(root):
                path = root / name
                path.chmod(0o755 if path.is_dir() else 0o644)
        assert not_private(data) and not_private(work)
        cluster.start_master()
        worker = cluster.start_worker(work_dir=work, env=SHELL)
        cluster.wait_worker_connected(worker)
        assert not_private(data) == {}
        assert not_private(work) == {}
        assert "private to this user" in cluster.master.output()


def test_the_helpers_make_private_and_repair_without_following_links(tmp_path: Path) -> None:
    made = private_dir(tmp_path / "a" / "b", owner=Owner(os.getuid(), os.getgid()))
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    passable = private_dir(tmp_path / "a" / "pass", mode=0o711)
    assert stat.S_IMODE(passable.stat().st_mode) == 0o711

    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    outside.chmod(0o644)
    (made / "f").write_text("x")
    (made / "f").chmod(0o664)
    (made / "app").mkdir(mode=0o755)
    (made / "app" / "run.sh").write_text("#!/bin/sh\n")
    (made / "app" / "run.sh").chmod(0o755)
    (made / "link").symlink_to(outside)
    changed = secure_tree(tmp_path / "a", descend=lambda folder: folder.name != "app")
    assert changed == 3  # pass, f, app (not the package's file, not the link's target)
    assert stat.S_IMODE((made / "f").stat().st_mode) == 0o600
    assert stat.S_IMODE((made / "app").stat().st_mode) == 0o700
    assert stat.S_IMODE((made / "app" / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
