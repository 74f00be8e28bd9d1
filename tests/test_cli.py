"""The four command lines: --help from the settings definitions, --version, "did you mean"."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from gdos_master.cli import main as master_main
from gdos_pack.cli import main as pack_main
from gdos_sdk.__about__ import __version__
from gdos_sdk.config import MasterSettings, WorkerSettings, iter_options
from gdos_worker.cli import main as worker_main

Main = Callable[[Sequence[str]], int]


def migrate_main(argv: Sequence[str]) -> int:
    return master_main(["migrate-storage", *argv])


COMMANDS: list[tuple[str, Main, type | None, str]] = [
    ("gdos-master", master_main, MasterSettings, "OPS_MASTER_"),
    ("gdos-master migrate-storage", migrate_main, MasterSettings, "OPS_MASTER_"),
    ("gdos-worker", worker_main, WorkerSettings, "OPS_WORKER_"),
    ("gdos-pack", pack_main, None, ""),
]


def entry_at(lines: list[str], at: int) -> str:
    """The help entry starting at line ``at`` (its continuation lines are indented deeper)."""
    end = at + 1
    while end < len(lines) and lines[end].startswith(" " * 10):
        end += 1
    return " ".join(" ".join(lines[at:end]).split())


def run(main: Main, argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize(("prog", "main", "settings", "prefix"), COMMANDS)
@pytest.mark.parametrize("flag", ["--version", "-version"])
def test_every_command_prints_the_one_version(
    prog: str,
    main: Main,
    settings: type | None,
    prefix: str,
    flag: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, text = run(main, [flag], capsys)
    assert code == 0
    assert text.strip() == f"{prog.split()[0]} {__version__}"


@pytest.mark.parametrize(("prog", "main", "settings", "prefix"), COMMANDS[:3])
def test_help_lists_every_setting_with_default_env_and_meaning(
    prog: str, main: Main, settings: type, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = run(main, ["--help"], capsys)
    assert code == 0
    assert text.startswith(f"usage: {prog} ")
    lines = text.splitlines()
    for option in iter_options(settings):
        env = option.env_name(prefix)
        if option.flag:
            # "-flag METAVAR   help [default X]" then "env NAME, file section.key"
            at = next(i for i, line in enumerate(lines) if line.startswith(f"  -{option.flag} "))
            entry = entry_at(lines, at)
            assert f"env {env}, file {option.key}" in entry, option.key
        else:
            at = next(i for i, line in enumerate(lines) if line.strip() == env)
            entry = entry_at(lines, at)
            assert f"file {option.key}" in entry, option.key
        assert " ".join(option.help.split()) in entry, option.key
        if not (option.default == "" and "default" in option.help):
            assert "[default " in entry, option.key
    assert "--version" in text and "-config FILE" in text


def test_help_defaults_are_the_real_ones(capsys: pytest.CaptureFixture[str]) -> None:
    _, text = run(master_main, ["-h"], capsys)
    assert "address to listen on: ':8080', '127.0.0.1:8080' [default \":8080\"]" in text
    assert "[default 536870912]" in text  # storage.max_package_bytes
    assert "gc_freeze" in text and "[default true]" in text
    _, text = run(worker_main, ["-port", ":1", "--help"], capsys)  # help wins anywhere
    assert '[default "http://127.0.0.1:8080"]' in text


def test_migrate_storage_help_lists_its_own_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run(migrate_main, ["--help"], capsys)
    assert code == 0
    assert "-to local|minio" in text and "-from local|minio" in text
    assert "-minio_endpoint VALUE" in text  # the master's flags say where the back ends are


@pytest.mark.parametrize(
    ("main", "argv", "expected"),
    [
        (master_main, ["-prot", ":9"], "unknown flag '-prot'; did you mean -port?"),
        (master_main, ["--log_fromat=json"], "did you mean -log_format?"),
        (master_main, ["-autostrat", "1"], "did you mean -autostart?"),
        (master_main, ["migrate-storag"], "did you mean 'migrate-storage'?"),
        (migrate_main, ["-too", "minio"], "unknown flag '-too'; did you mean -to?"),
        (migrate_main, ["-form", "local", "-to", "minio"], "did you mean -from?"),
        (migrate_main, ["-data_dri", "x", "-to", "minio"], "did you mean -data_dir?"),
        (worker_main, ["-mastr", "http://m"], "did you mean -master?"),
        (worker_main, ["-log_formt", "json"], "did you mean -log_format?"),
        (pack_main, ["buidl", "x"], "unknown command 'buidl'; did you mean 'build'?"),
        (pack_main, ["build", "x", "--outptu", "y.zip"], "did you mean --output?"),
        (pack_main, ["inspect", "-jsn", "x.zip"], "did you mean --json?"),
        (pack_main, ["--verison"], "did you mean --version?"),
    ],
)
def test_unknown_flags_and_commands_get_a_guess(
    main: Main, argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = run(main, argv, capsys)
    assert code == 2
    assert expected in text


def test_migrate_storage_lists_to_and_from_among_known_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, text = run(migrate_main, ["-xyzzy", "1"], capsys)
    assert code == 2
    assert "known flags:" in text
    known = text.split("known flags:", 1)[1]
    assert "-to" in known.split(", ") and "-from" in known.split(", ")


@pytest.mark.parametrize(
    ("main", "argv", "expected"),
    [
        (master_main, ["-log_format", "jsno"], "log.format must be text or json"),
        (worker_main, ["-log_level", "loud"], "log.level must be one of debug, info"),
    ],
)
def test_bad_log_settings_are_refused(
    main: Main, argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = run(main, argv, capsys)
    assert code == 2
    assert expected in text
