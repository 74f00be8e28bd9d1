"""What a packaged instance's process is started with: command line and environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from gdos_sdk.errors import SpawnError
from gdos_worker.runner import InstanceRunner
from gdos_worker.state import WorkDir

from .specs import instance_spec, stopped_record


def make_runner(tmp_path: Path, manifest: dict[str, object], **spec: object) -> InstanceRunner:
    record = stopped_record(
        instance_spec(
            instance_id="i-7",
            module_name="api",
            package="shop",
            version="1.2.0",
            manifest={"name": "shop", "version": "1.2.0", **manifest},
            **spec,
        )
    )
    workdir = WorkDir(tmp_path / "work")
    workdir.prepare()
    paths = workdir.paths("i-7")
    paths.app.mkdir(parents=True)
    (paths.app / "run.sh").write_text("#!/bin/sh\n")
    return InstanceRunner(
        record,
        workdir=workdir,
        executor=None,  # type: ignore[arg-type]  # _spawn_spec spawns nothing
        node_id="n-1",
        on_change=lambda _: None,
        base_env={"PATH": "/usr/bin:/bin", "LANG": "C", "OPS_WORKER_JOIN_TOKEN": "secret"},
    )


def test_environment_layers_and_gdos_variables(tmp_path: Path) -> None:
    runner = make_runner(
        tmp_path,
        {"entrypoint": "run.sh", "args": ["--port", "${PORT}"], "env": {"PORT": "80", "A": "m"}},
        env={"PORT": "8081"},
    )
    spec = runner._spawn_spec()
    paths = runner.paths
    assert spec.argv == [str((paths.app / "run.sh").resolve()), "--port", "8081"]
    assert spec.cwd == str(paths.app) and spec.tag == "i-7"
    assert spec.log_path == str(paths.console_log) and paths.logs.is_dir()
    # worker env < manifest env < module env < GDOS_*; the worker's settings stay out.
    assert spec.env["LANG"] == "C" and spec.env["A"] == "m" and spec.env["PORT"] == "8081"
    assert not any(k.startswith("OPS_") for k in spec.env)
    assert {k: v for k, v in spec.env.items() if k.startswith("GDOS_")} == {
        "GDOS_INSTANCE_ID": "i-7",
        "GDOS_NODE_ID": "n-1",
        "GDOS_MODULE": "api",
        "GDOS_SYSTEM_ID": "s",
        "GDOS_PACKAGE": "shop",
        "GDOS_VERSION": "1.2.0",
        "GDOS_INSTANCE_DIR": str(paths.root),
        "GDOS_APP_DIR": str(paths.app),
        "GDOS_LOG_DIR": str(paths.logs),
        "GDOS_WORK_DIR": str(runner.workdir.root),
    }


def test_entrypoint_from_path_and_a_missing_one(tmp_path: Path) -> None:
    assert make_runner(tmp_path / "a", {"entrypoint": "sh"})._spawn_spec().argv == ["/usr/bin/sh"]
    with pytest.raises(SpawnError, match="neither a file in the package nor on PATH"):
        make_runner(tmp_path / "b", {"entrypoint": "no-such-program-here"})._spawn_spec()
