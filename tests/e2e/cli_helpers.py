"""Running the real ``gdos`` command as a subprocess, with a profile file of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["gdos_argv", "isolated_env", "run_gdos"]


def gdos_argv() -> list[str]:
    """The installed ``gdos`` script beside this Python, else ``python -m gdos_cli``."""
    script = Path(sys.executable).with_name("gdos")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gdos_cli"]


def isolated_env(config: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any GDOS_* variable, with its own profile file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GDOS_")}
    env.update({"GDOS_CONFIG": str(config), "COLUMNS": "200", **extra})
    return env


def run_gdos(
    *args: str, env: dict[str, str], input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*gdos_argv(), *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
