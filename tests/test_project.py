"""Project-level checks: exported names, generated docs, packaging metadata."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PUBLIC_MODULES = [
    "gdos_sdk",
    "gdos_sdk.errors",
    "gdos_sdk.adoption",
    "gdos_sdk.models",
    "gdos_sdk.protocol",
    "gdos_sdk.codec",
    "gdos_sdk.constraints",
    "gdos_sdk.config",
    "gdos_sdk.states",
    "gdos_sdk.manifest",
    "gdos_sdk.archive",
    "gdos_sdk.versions",
    "gdos_sdk.storage",
    "gdos_sdk.executors",
    "gdos_sdk.metrics",
    "gdos_sdk.client",
    "gdos_sdk.backoff",
    "gdos_sdk.backups",
    "gdos_sdk.commands",
    "gdos_sdk.logfiles",
    "gdos_sdk.restart",
    "gdos_sdk.testing",
    "gdos_sdk.privileges",
    "gdos_sdk.redaction",
    "gdos_sdk.executors.accounts",
    "gdos_sdk.logformat",
    "gdos_sdk.flaghelp",
    "gdos_sdk.alerts",
    "gdos_sdk.display",
    "gdos_sdk.frames",
    "gdos_sdk.profiles",
    "gdos_sdk.live",
    "gdos_sdk.follow",
    "gdos_sdk.deploywait",
    "gdos_sdk.progress",
    "gdos_sdk.cluster",
    "gdos_sdk.parentwatch",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_lists_exactly_public_existing_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), "duplicates in __all__"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names missing {item}"
        if not item.startswith("__"):
            assert not item.startswith("_")


def test_sdk_imports_no_server_package() -> None:
    for path in (ROOT / "gdos_sdk").rglob("*.py"):
        text = path.read_text()
        for server in ("gdos_master", "gdos_worker", "gdos_pack"):
            assert f"import {server}" not in text and f"from {server}" not in text, path


def test_generated_docs_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_package_ships_py_typed() -> None:
    for package in ("gdos_sdk", "gdos_master", "gdos_worker", "gdos_pack"):
        assert (ROOT / package / "py.typed").is_file()
