"""End-to-end fixtures: a real master and workers on loopback, real packages from gdos-pack."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gdos_sdk.testing import LocalCluster

from ..conftest import write_service

pytestmark = pytest.mark.e2e

SERVICES = Path(__file__).parent / "services"


@pytest.fixture
def cluster(tmp_path: Path, db_url: str) -> Iterator[LocalCluster]:
    """A master (not yet started) whose processes are all stopped at the end, even on failure.

    Its database is SQLite, or PostgreSQL too for a test marked ``both_engines``.
    """
    local = LocalCluster(tmp_path / "cluster", db_url=db_url)
    try:
        yield local
    finally:
        local.close()


@pytest.fixture
def running(cluster: LocalCluster) -> LocalCluster:
    """A started master with one connected worker."""
    cluster.start_master()
    cluster.start_worker()
    return cluster


def gdos_pack(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("gdos-pack")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "gdos_pack"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def pack(tmp_path: Path) -> Callable[..., Path]:
    """Build one of tests/e2e/services/<name>.py into a package with the real gdos-pack."""

    def build(
        service: str, *, name: str | None = None, version: str = "1.0.0", **manifest: Any
    ) -> Path:
        source = (SERVICES / f"{service}.py").read_text()
        folder = tmp_path / "src" / f"{name or service}-{version}"
        body = {"name": name or service, "version": version, "entrypoint": "main.py", **manifest}
        write_service(folder, body, {"main.py": source}, exec_files=("main.py",))
        out = tmp_path / "pkgs" / f"{folder.name}.zip"
        out.parent.mkdir(exist_ok=True)
        result = gdos_pack("build", str(folder), "-o", str(out))
        assert result.returncode == 0, result.stderr
        return out

    return build


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
