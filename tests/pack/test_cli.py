"""gdos-pack: in-process through main() and once as a real ``python -m gdos_pack``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import gdos_pack
from gdos_pack.cli import main
from gdos_sdk.archive import sha256_file
from gdos_sdk.manifest import Manifest, schema_text

ROOT = Path(__file__).resolve().parents[2]


def make_service(folder: Path, **extra: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"name": "demo", "version": "1.2.0", "entrypoint": "run.sh", **extra}
    (folder / "service.json").write_text(json.dumps(data))
    run = folder / "run.sh"
    run.write_text("#!/bin/sh\necho hi\n")
    run.chmod(0o755)
    return folder


def test_all_is_sorted_and_complete() -> None:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical.
    names = gdos_pack.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert all(hasattr(gdos_pack, n) for n in names)


def test_init_writes_a_valid_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "My Cool_App!"
    assert main(["init", str(folder)]) == 0
    manifest = Manifest.from_json((folder / "service.json").read_bytes())
    assert manifest.name == "my-cool_app"
    assert manifest.version == "0.1.0"
    assert manifest.entrypoint == "python3" and manifest.args == ["main.py"]
    assert "wrote" in capsys.readouterr().out


def test_init_writes_a_minimal_service_that_runs_and_stops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "svc"
    assert main(["init", str(folder)]) == 0
    assert f"wrote {folder / 'main.py'}" in capsys.readouterr().out
    # What init writes builds cleanly, strict checks included.
    assert main(["build", str(folder), "-o", str(tmp_path / "svc.zip"), "--strict"]) == 0
    assert "warning" not in capsys.readouterr().err
    with subprocess.Popen(
        [sys.executable, "main.py"],
        cwd=folder,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "GDOS_MODULE": "svc"},
    ) as service:
        try:
            assert service.stdout is not None
            assert service.stdout.readline().startswith("svc started (pid ")
            service.send_signal(signal.SIGTERM)
            rest, _ = service.communicate(timeout=10)
            assert service.returncode == 0 and rest == "svc stopped\n"
        finally:
            if service.poll() is None:
                service.kill()


def test_init_never_overwrites_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "svc"
    folder.mkdir()
    (folder / "main.py").write_text("print('mine')\n")
    assert main(["init", "--force", str(folder)]) == 0
    assert f"kept {folder / 'main.py'}" in capsys.readouterr().out
    assert (folder / "main.py").read_text() == "print('mine')\n"


def test_build_and_validate_warn_about_files_the_package_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["main.py", "--config", "conf/app.yaml", "-m", "http.server", "logs/out.log", "${X}"]
    src = make_service(tmp_path / "svc", entrypoint="python3", args=args)
    (src / "conf").mkdir()
    (src / "conf" / "other.yaml").write_text("a: 1\n")
    out = tmp_path / "svc.zip"
    expected = [
        "gdos-pack: warning: $.args[0]: main.py is not in the package;"
        " the service would not find it when it starts",
        "gdos-pack: warning: $.args[2]: conf/app.yaml is not in the package;"
        " the service would not find it when it starts",
    ]
    assert main(["build", str(src), "-o", str(out)]) == 0  # a warning, not an error
    assert capsys.readouterr().err.splitlines() == expected
    assert main(["validate", str(src)]) == 0
    assert capsys.readouterr().err.splitlines() == expected
    assert main(["validate", str(out)]) == 0
    assert capsys.readouterr().err.splitlines() == expected

    out.unlink()
    assert main(["build", str(src), "-o", str(out), "-strict"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "gdos-pack: error: the package lacks files its service.json names:"
    assert "  $.args[0]: main.py is not in the package;" in err[1]
    assert not out.exists()
    assert main(["validate", "--strict", str(src)]) == 1
    capsys.readouterr()

    (src / "main.py").write_text("print('hi')\n")
    (src / "conf" / "app.yaml").write_text("a: 2\n")
    assert main(["build", str(src), "-o", str(out), "--strict"]) == 0
    assert capsys.readouterr().err == ""


def test_an_entrypoint_file_must_be_there_and_executable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_service(tmp_path / "svc", entrypoint="bin/api")
    assert main(["validate", str(src)]) == 0
    assert "$.entrypoint: bin/api is not in the package" in capsys.readouterr().err
    (src / "run.sh").chmod(0o644)
    (src / "service.json").write_text(
        json.dumps({"name": "demo", "version": "1.2.0", "entrypoint": "run.sh"})
    )
    assert main(["validate", "--strict", str(src)]) == 1
    assert "$.entrypoint: run.sh is not executable" in capsys.readouterr().err


def test_init_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_service(tmp_path / "svc")
    before = (tmp_path / "svc" / "service.json").read_text()
    assert main(["init", str(tmp_path / "svc")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "svc" / "service.json").read_text() == before
    assert main(["init", "-force", str(tmp_path / "svc")]) == 0
    assert Manifest.from_json((tmp_path / "svc" / "service.json").read_bytes()).name == "svc"


@pytest.mark.parametrize(
    "args",
    [
        ["build", "{src}", "-o", "{out}"],
        ["build", "-o", "{out}", "{src}"],
        ["build", "--output", "{out}", "{src}"],
        ["build", "{src}", "-output", "{out}"],
        ["build", "-output={out}", "{src}"],
    ],
    ids=["dir-first", "option-first", "double-dash", "single-dash-long", "equals"],
)
def test_build_accepts_options_in_any_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    src = make_service(tmp_path / "svc")
    out = tmp_path / "svc.zip"
    argv = [a.format(src=src, out=out) for a in args]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "name:    demo" in printed and "version: 1.2.0" in printed
    assert f"sha256:  {sha256_file(out)}" in printed
    assert f"size:    {out.stat().st_size} bytes" in printed


def test_build_default_output_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_service(tmp_path / "svc")
    monkeypatch.chdir(tmp_path)
    assert main(["build", str(src)]) == 0
    assert (tmp_path / "demo-1.2.0.zip").is_file()


def test_build_reports_invalid_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_service(tmp_path / "svc", restart={"polcy": "never"})
    assert main(["build", str(src), "-o", str(tmp_path / "x.zip")]) == 1
    err = capsys.readouterr().err
    assert "$.restart.polcy: unknown field 'polcy'; did you mean 'policy'?" in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.zip").exists()


def test_validate_folder_prints_each_problem_with_suggestions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "svc"
    folder.mkdir()
    (folder / "service.json").write_text(
        json.dumps({"name": "demo", "version": "1", "entrypont": "x", "stop_timout": 3})
    )
    assert main(["validate", str(folder)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert "  $.entrypont: unknown field 'entrypont'; did you mean 'entrypoint'?" in lines
    assert "  $.stop_timout: unknown field 'stop_timout'; did you mean 'stop_timeout'?" in lines
    assert "  $.entrypoint: entrypoint is required unless is_external is true" in lines


def test_validate_ok_for_folder_and_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_service(tmp_path / "svc")
    assert main(["validate", str(src)]) == 0
    assert capsys.readouterr().out.startswith("ok: demo 1.2.0")
    assert main(["build", str(src), "-o", str(tmp_path / "a.zip")]) == 0
    capsys.readouterr()
    assert main(["validate", str(tmp_path / "a.zip")]) == 0
    assert capsys.readouterr().out.startswith("ok: demo 1.2.0 (2 entries")


def test_validate_zip_names_the_bad_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("service.json", json.dumps({"name": "d", "version": "1", "entrypoint": "x"}))
        zf.writestr("../escape.sh", "x")
    assert main(["validate", str(bad)]) == 1
    assert "  ../escape.sh: '..' in the path" in capsys.readouterr().err.splitlines()


def test_inspect_human_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_service(tmp_path / "svc")
    out = tmp_path / "a.zip"
    assert main(["build", str(src), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert '"name": "demo"' in text
    assert "-rwxr-xr-x" in text and "run.sh" in text
    assert f"sha256:  {sha256_file(out)}" in text
    assert main(["inspect", "-json", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sha256"] == sha256_file(out) and data["size"] == out.stat().st_size
    assert data["manifest"]["name"] == "demo"
    run = next(e for e in data["entries"] if e["name"] == "run.sh")
    assert run["mode"] == 0o755 and run["is_symlink"] is False


def test_inspect_not_a_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_text("nope")
    assert main(["inspect", str(junk)]) == 1
    assert "not a zip archive" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["build"], ["build", "a", "b"], ["inspect", "--nope", "x.zip"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err


def test_missing_paths_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "none.zip")]) == 2
    assert main(["validate", str(tmp_path / "none")]) == 2
    assert main(["build", str(tmp_path / "none")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-help"]) == 0
    assert "init" in capsys.readouterr().out


def test_schema_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == schema_text()


def test_real_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gdos_pack", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    src = make_service(tmp_path / "svc")
    built = run("build", "-output", str(tmp_path / "a.zip"), str(src))
    assert built.returncode == 0, built.stderr
    assert f"sha256:  {sha256_file(tmp_path / 'a.zip')}" in built.stdout
    (src / "service.json").write_text('{"name": "demo", "version": "1", "entrypont": "x"}')
    bad = run("validate", str(src))
    assert bad.returncode == 1
    assert "did you mean 'entrypoint'?" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert run("no-such-command").returncode == 2
