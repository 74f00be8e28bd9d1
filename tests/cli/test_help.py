"""``gdos --help`` everywhere, ``--version``, "did you mean", completion: no master needed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import click
import pytest

from gdos_cli import cli, main
from gdos_cli.core import ExitCode
from gdos_sdk.__about__ import __version__

SKIP = {"help", "version"}  # click's own eager options: not settings


def _walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(cli))


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_command_tree_has_what_operators_need() -> None:
    names = {" ".join(p) for p in COMMANDS}
    for needed in (
        "login",
        "logout",
        "nodes",
        "ps",
        "packages",
        "push",
        "deploy",
        "start",
        "stop",
        "restart",
        "destroy",
        "logs",
        "run",
        "ssh",
        "alerts",
        "audit",
        "backup",
        "backup create",
        "backup download",
        "backup restore",
        "rollout start",
        "rollout back",
        "rollout list",
        "rollout status",
        "rollout promote",
        "rollout pause",
        "rollout resume",
        "rollout abort",
        "completion",
    ):
        assert needed in names, needed


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "gdos")
def test_every_command_helps_with_every_option_its_default_and_variable(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run([*path, "--help"], capsys)
    assert code == 0
    assert out.startswith(f"Usage: gdos {' '.join(path)}".rstrip() + " ")
    text = " ".join(out.split())  # help lines wrap anywhere
    command = _command(path)
    assert command.help, path
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in SKIP:
            continue
        record = param.get_help_record(click.Context(command, auto_envvar_prefix="GDOS"))
        assert record is not None, (path, param.name)
        extra = record[1]
        assert "env var: GDOS_" in extra, (path, param.name, extra)
        assert "default: " in extra, (path, param.name, extra)
        assert param.help, (path, param.name)
        assert " ".join(param.help.split()) in text, (path, param.name)
        assert param.opts[-1] in text


def test_environment_variable_names(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(["--help"], capsys)
    for name in ("GDOS_URL", "GDOS_TOKEN", "GDOS_PROFILE", "GDOS_CONFIG"):
        assert name in out
    _, out, _ = run(["ps", "--help"], capsys)
    text = " ".join(out.split())
    assert "env var: GDOS_OUTPUT; default: table" in text  # -o is one setting for all
    assert "env var: GDOS_PS_STATE; default: (none)" in text
    _, out, _ = run(["logs", "--help"], capsys)
    text = " ".join(out.split())
    assert "GDOS_LOGS_LINES; default: 100" in text and "GDOS_LOGS_FOLLOW; default: (off)" in text
    _, out, _ = run(["rollout", "start", "--help"], capsys)
    text = " ".join(out.split())
    assert "GDOS_ROLLOUT_START_MAX_PARALLEL; default: 1;" in text
    assert "GDOS_ROLLOUT_START_WAIT; default: stable" in text
    _, out, _ = run(["rollout", "abort", "--help"], capsys)
    assert "default: (the rollout's auto-revert setting)" in " ".join(out.split())


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert (code, out.strip()) == (0, f"gdos {__version__}")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["lgoin"], "No such command 'lgoin'. Did you mean 'login'?"),
        (["backup", "restor", "x"], "No such command 'restor'. Did you mean 'restore'?"),
        (["alerts", "histroy"], "Did you mean 'history'?"),
        (["rollout", "strat", "shop/web", "2.0.0"], "Did you mean 'start'?"),
        (["rollout", "start", "shop/web", "2.0.0", "--max-paralel", "2"], "'--max-parallel'?"),
        (["rollout", "start", "shop/web", "2.0.0", "--wait", "up"], "'up' is not one of"),
        (["completion", "bsh"], "'bsh' is not one of 'bash', 'zsh', 'fish'"),
        (["ps", "--stat", "running"], "Did you mean '--state'?"),
        (["logs", "--folow", "x"], "Did you mean '--follow'?"),
        (["backup", "create", "--include-package"], "Did you mean '--include-packages'?"),
        (["--profil", "x", "nodes"], "Did you mean '--profile'?"),
        (["--verison"], "Did you mean '--version'?"),
    ],
)
def test_unknown_commands_and_options_get_a_guess(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert code == ExitCode.USAGE
    assert expected in " ".join(err.split()) and out == ""


def test_no_master_configured_is_an_auth_error(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GDOS_URL", raising=False)
    monkeypatch.delenv("GDOS_TOKEN", raising=False)
    monkeypatch.delenv("GDOS_PROFILE", raising=False)
    monkeypatch.setenv("GDOS_CONFIG", str(tmp_path) + "/none.toml")
    code, out, err = run(["nodes"], capsys)
    assert code == ExitCode.AUTH and out == ""
    assert err.startswith("gdos: error: no GDOS master URL") and "gdos login" in err


def _gdos(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "gdos_cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_and_what_they_complete(shell: str) -> None:
    assert "_GDOS_COMPLETE" in _gdos({}, "completion", shell)


def test_completion_completes_commands_and_options() -> None:
    def complete(words: str) -> set[str]:
        env = {
            "_GDOS_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        out = _gdos(env)  # bash's protocol: one "type,value" per line
        return {line.split(",", 1)[1] for line in out.splitlines()}

    assert {"login", "logout", "logs"} <= complete("gdos lo")
    assert "--state" in complete("gdos ps --st")
    assert complete("gdos backup re") == {"restore"}
    assert complete("gdos rollout st") == {"start", "status"}
    assert complete("gdos rollout start shop/web 2.0.0 --wait h") == {"healthy"}
    assert complete("gdos ps --state r") == {"running"}
