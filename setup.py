"""The one build step pyproject.toml cannot declare: the web console.

Everything about the package is in pyproject.toml. This file adds a ``build_py`` that first
builds the console from ``web/`` (``npm ci`` + ``npm run build``, which writes
``gdos_master/static``), so a wheel built from a clean clone or from the sdist always holds the
console, and never whatever happened to be on disk. Without npm the build stops with an error
that says so. Editable installs (``pip install -e .``) skip the step: they serve
``gdos_master/static`` in place, which ``nox -s web`` builds.

``GDOS_SKIP_CONSOLE_BUILD=1`` skips the step on purpose: the package then carries whatever
``gdos_master/static`` holds (nothing on a clean clone, and the master's ``/`` says so).
See docs/packaging.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import ExecError

ROOT = Path(__file__).resolve().parent
WEB = ROOT / "web"
STATIC = ROOT / "gdos_master" / "static"
SKIP_VARIABLE = "GDOS_SKIP_CONSOLE_BUILD"


def _node_range() -> str:
    try:
        engines = json.loads((WEB / "package.json").read_text(encoding="utf-8"))["engines"]
        return f"Node.js {engines['node']}"
    except (OSError, KeyError, ValueError):
        return "Node.js"


def build_console() -> None:
    """``npm ci`` + ``npm run build`` in web/; raise ExecError with the cause if it fails."""
    if not (WEB / "package.json").is_file():
        raise ExecError(
            f"cannot build the GDOS web console: {WEB} is missing (the sdist carries it;"
            f" set {SKIP_VARIABLE}=1 to build a package without the console)"
        )
    npm = shutil.which("npm")
    if npm is None:
        raise ExecError(
            f"building GDOS needs npm ({_node_range()}) to build the web console, and npm is not"
            f" on PATH. Install Node.js, or set {SKIP_VARIABLE}=1 to build a package without"
            " the console (its master then serves the API only)."
        )
    steps = (
        [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"],
        [npm, "run", "build"],
    )
    for step in steps:
        print(f"gdos: {' '.join(step[1:])} (in {WEB})", flush=True)
        code = subprocess.call(step, cwd=WEB)
        if code != 0:
            raise ExecError(
                f"building the GDOS web console failed: 'npm {' '.join(step[1:])}' exited with"
                f" {code} (see its output above; the console needs {_node_range()})"
            )
    if not (STATIC / "index.html").is_file():
        raise ExecError(f"the console build wrote no {STATIC / 'index.html'}")


class BuildWithConsole(build_py):
    """``build_py`` that builds the web console first (not in editable mode)."""

    def run(self) -> None:
        if not self.editable_mode:
            if os.environ.get(SKIP_VARIABLE, "") not in ("", "0"):
                state = "holds a console" if (STATIC / "index.html").is_file() else "is empty"
                print(f"gdos: {SKIP_VARIABLE} set: not building the console ({STATIC} {state})")
            else:
                build_console()
            # The console's files are package data: list them again now that they exist.
            self.__dict__.pop("data_files", None)
        super().run()


if __name__ == "__main__":  # how setuptools' build backend runs this file
    setup(cmdclass={"build_py": BuildWithConsole})
