"""The fuzz session: one subprocess seeds a real master and worker and fuzzes them per role.

``GDOS_FUZZ_PROFILE=full`` (what ``nox -s fuzz`` sets) fuzzes hard; the default is the
bounded profile that is part of the normal suite. ``GDOS_FUZZ_OUT`` keeps the cluster's
logs and the reports in a known folder (a temporary one otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .harness import PROFILES
from .session import command

ROLES = ["admin", "viewer"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fuzz_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each role's result: exit code, problems (empty when it passed), console report."""
    profile = os.environ.get("GDOS_FUZZ_PROFILE", "bounded")
    if profile not in PROFILES:
        raise pytest.UsageError(f"GDOS_FUZZ_PROFILE must be one of {', '.join(PROFILES)}")
    chosen = os.environ.get("GDOS_FUZZ_OUT")
    out = Path(chosen).absolute() if chosen else tmp_path_factory.mktemp("fuzz")
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        command(out, profile, ROLES),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    results: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        path = out / f"result-{role}.json"
        if path.is_file():
            results[role] = json.loads(path.read_text())
        else:
            results[role] = {
                "returncode": done.returncode,
                "problems": [f"the fuzz session ended without a result (exit {done.returncode})"],
                "output": done.stdout[-20000:],
            }
    return results
