"""Which manifest references to package files are checked, and what a missing one says."""

from __future__ import annotations

from typing import Any

from gdos_sdk.archive import EntryInfo
from gdos_sdk.contents import check_contents
from gdos_sdk.manifest import Manifest


def file(name: str, mode: int = 0o644) -> EntryInfo:
    return EntryInfo(name=name, size=1, mode=mode, is_dir=False, is_symlink=False)


def folder(name: str) -> EntryInfo:
    return EntryInfo(name=name + "/", size=0, mode=0o755, is_dir=True, is_symlink=False)


ENTRIES = [
    file("service.json"),
    file("run.sh", 0o755),
    file("app.py"),
    folder("bin"),
    file("bin/api", 0o755),
    folder("conf"),
    file("conf/app.yaml"),
    EntryInfo(
        name="start", size=0, mode=0o777, is_dir=False, is_symlink=True, link_target="run.sh"
    ),
]


def fields(**manifest: Any) -> list[str]:
    m = Manifest.from_dict({"name": "x", "version": "1", **manifest})
    return [p.field for p in check_contents(m, ENTRIES)]


def test_what_the_package_has_passes() -> None:
    assert fields(entrypoint="run.sh") == []
    assert fields(entrypoint="./bin/api", args=["--config", "conf/app.yaml"]) == []
    assert fields(entrypoint="python3", args=["app.py"]) == []
    assert fields(entrypoint="start") == []  # a link: its target decides at run time


def test_programs_from_path_options_and_runtime_paths_are_not_files() -> None:
    args = ["-m", "http.server", "--port=8000", "${APP}", "/etc/app.py", "logs/out.log"]
    assert fields(entrypoint="python3", args=[*args, "http://x/y.py", "a b.py"]) == []
    assert fields(entrypoint="node", args=["-e", "1/2"]) == []


def test_missing_or_unusable_files_are_named() -> None:
    assert fields(entrypoint="python3", args=["main.py"]) == ["$.args[0]"]
    assert fields(entrypoint="python3", args=["x", "conf/other.yaml"]) == ["$.args[1]"]
    assert fields(entrypoint="server.sh") == ["$.entrypoint"]
    assert fields(entrypoint="lib/server") == ["$.entrypoint"]
    assert fields(entrypoint="conf") == []  # a bare name: looked up on PATH
    assert fields(entrypoint="conf/") == ["$.entrypoint"]  # a folder, not a program
    assert fields(entrypoint="app.py") == ["$.entrypoint"]  # not executable
    m = Manifest.from_dict(
        {
            "name": "x",
            "version": "1",
            "entrypoint": "run.sh",
            "stop_entrypoint": "stop.sh",
            "stop_args": ["drain.py"],
        }
    )
    problems = check_contents(m, ENTRIES)
    assert [p.field for p in problems] == ["$.stop_entrypoint", "$.stop_args[0]"]
    assert problems[0].message.startswith("stop.sh is not in the package")
