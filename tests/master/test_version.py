"""One version: gdos_sdk/__about__.py, and everything that shows a version agrees with it.

tests/test_cli.py checks the commands' --version and tests/test_packaging.py the metadata of
a built wheel; this checks the source tree, the installed metadata and the API.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from quart import Quart

import gdos_master
import gdos_pack.cli
import gdos_sdk
import gdos_worker
from gdos_sdk.__about__ import __version__
from gdos_sdk.client import AsyncClient

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_is_written_once() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "gdos_sdk.__about__.__version__"}
    written = [
        path.relative_to(ROOT).as_posix()
        for package in ("gdos_sdk", "gdos_master", "gdos_worker", "gdos_pack")
        for path in (ROOT / package).rglob("*.py")
        if re.search(r"^__version__\s*=", path.read_text(), re.MULTILINE)
    ]
    assert written == ["gdos_sdk/__about__.py"]


def test_packages_and_installed_metadata_agree() -> None:
    assert gdos_sdk.__version__ == gdos_master.__version__ == gdos_worker.__version__
    assert gdos_pack.cli.__version__ == __version__ == gdos_sdk.__version__
    # The editable install's metadata (nox reinstalls before every run).
    assert importlib.metadata.version("gdos") == __version__


@pytest.mark.anyio
async def test_the_api_reports_the_same_version(app: Quart, admin: AsyncClient) -> None:
    health = await (await app.test_client().get("/api/v1/health")).get_json()  # no login
    assert health["version"] == __version__
    assert (await admin.openapi())["info"]["version"] == __version__
