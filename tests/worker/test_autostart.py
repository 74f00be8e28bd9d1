"""``gdos-worker -autostart``: the flag's error paths, which never touch the system.

Installing and removing is tested on the function the command calls,
:func:`gdos_sdk.autostart.apply`, with fake service-manager tools
(tests/sdk/test_autostart.py): a test must not write /etc/systemd/system.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gdos_worker.cli import main


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./worker.yaml from the checkout


@pytest.mark.parametrize("args", [["-autostart", "maybe"], ["--autostart"], ["-autostart="]])
def test_bad_switch_value(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    assert "-autostart takes 1" in capsys.readouterr().err


def test_flags_are_checked_before_anything_is_installed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["-autostart", "1", "-prot", ":9"]) == 2
    assert "did you mean -port?" in capsys.readouterr().err
    assert main(["-autostart", "1", "-master", "ftp://m"]) == 2
    assert "http://" in capsys.readouterr().err


def test_help_mentions_autostart(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-h"]) == 0
    assert "-autostart 1|0" in capsys.readouterr().out


def test_a_secret_flag_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-autostart", "1", "-join_token", "t0ken"]) == 2
    err = capsys.readouterr().err
    assert "OPS_WORKER_CONNECT_JOIN_TOKEN" in err and "t0ken" not in err
