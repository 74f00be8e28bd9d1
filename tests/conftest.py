"""Shared fixtures: the anyio backend and small package builders."""

from __future__ import annotations

import json
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write_service(
    folder: Path,
    manifest: dict[str, Any],
    files: dict[str, str],
    *,
    exec_files: tuple[str, ...] = (),
) -> Path:
    """A service source folder with service.json and the given files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "service.json").write_text(json.dumps(manifest, indent=2))
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if name in exec_files:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def raw_zip(path: Path, entries: dict[str, bytes]) -> Path:
    """A zip with exactly these entries (no validation: for bad-input tests)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def manifest(name: str = "demo", version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {"name": name, "version": version, "entrypoint": "run.sh", **extra}


@pytest.fixture
def make_zip(tmp_path: Path) -> Callable[..., bytes]:
    """Bytes of a minimal valid package zip."""

    def build(name: str = "demo", version: str = "1.0.0", **extra: Any) -> bytes:
        path = tmp_path / f"{name}-{version}-{len(list(tmp_path.iterdir()))}.zip"
        raw_zip(
            path,
            {
                "service.json": json.dumps(manifest(name, version, **extra)).encode(),
                "run.sh": b"#!/bin/sh\nsleep 1000\n",
            },
        )
        return path.read_bytes()

    return build
