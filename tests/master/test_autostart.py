"""``gdos-master -autostart``: the flag's error paths (installing: tests/sdk/test_autostart.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gdos_master.cli import main


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./config.yaml from the checkout


def test_bad_switch_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--autostart=yes please"]) == 2
    assert "-autostart takes 1" in capsys.readouterr().err


def test_flags_are_checked_before_anything_is_installed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["-store_type", "s3", "-autostart", "1"]) == 2
    assert "storage.type" in capsys.readouterr().err
