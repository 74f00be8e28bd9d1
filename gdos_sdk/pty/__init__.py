"""Pseudo-terminals: one :class:`Pty` protocol, one implementation per platform.

:class:`~gdos_sdk.pty.posix.PosixPty` wraps ``ptyprocess`` (a real PTY, a new
session with the shell as its leader); :class:`~gdos_sdk.pty.windows.WindowsPty`
wraps ``pywinpty`` (ConPTY). :func:`open_pty` picks the one for this platform.
Both are blocking at the OS level; :meth:`Pty.read` and :meth:`Pty.write` run
the blocking calls off the event loop, so a busy terminal never stalls it.

Example::

    pty = open_pty(PtySpec(argv=default_shell(), rows=24, cols=80))
    await pty.write(b"echo hi\\n")
    data = await pty.read()      # b"" once the shell has exited
    pty.resize(40, 120)
    await pty.close()
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Protocol

import attrs

__all__ = ["TERM", "Pty", "PtySpec", "default_shell", "open_pty", "pty_env"]

TERM = "xterm-256color"


@attrs.frozen
class PtySpec:
    """What to run in a pseudo-terminal, and its first size."""

    argv: list[str]
    rows: int = 24
    cols: int = 80
    cwd: str | None = None
    env: Mapping[str, str] | None = None


class Pty(Protocol):
    """A process attached to a pseudo-terminal."""

    @property
    def pid(self) -> int: ...

    async def read(self, size: int = 65536) -> bytes:
        """The next output bytes (at most ``size``); ``b""`` once the process has exited."""
        ...

    def read_ready(self, size: int = 65536) -> bytes:
        """Output already waiting (up to ``size`` bytes), without waiting; may be ``b""``."""
        ...

    async def write(self, data: bytes) -> None:
        """Send ``data`` as if typed."""
        ...

    def resize(self, rows: int, cols: int) -> None:
        """Set the window size (the process gets SIGWINCH on POSIX)."""
        ...

    def exit_code(self) -> int | None:
        """The exit status once the process has ended, else None."""
        ...

    async def close(self) -> None:
        """End the process (hang-up, then kill) and release the terminal."""
        ...


def default_shell() -> list[str]:
    """The login shell of the user running this process (``$SHELL``, passwd, or a fallback)."""
    if sys.platform == "win32":
        return [os.environ.get("COMSPEC", "cmd.exe")]
    else:
        shell = ""
        try:
            import pwd

            shell = pwd.getpwuid(os.getuid()).pw_shell
        except (KeyError, ImportError):
            pass
        shell = shell or os.environ.get("SHELL", "") or "/bin/sh"
        if not os.access(shell, os.X_OK):
            shell = "/bin/sh"
        return [shell, "-l"]


def pty_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default this process's environment) with ``TERM`` set and ``OPS_*`` dropped.

    The worker's own settings (``OPS_WORKER_*``, which may hold the join token) are not
    handed to an interactive shell.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    env = {k: v for k, v in env.items() if not k.startswith("OPS_")}
    env["TERM"] = TERM
    env.setdefault("LANG", "C.UTF-8")
    return env


def open_pty(spec: PtySpec) -> Pty:
    """Start ``spec.argv`` in a new pseudo-terminal of this platform.

    Raises :class:`~gdos_sdk.errors.SpawnError` when the program cannot be started.
    """
    if sys.platform == "win32":
        from gdos_sdk.pty.windows import WindowsPty

        return WindowsPty.spawn(spec)
    else:
        from gdos_sdk.pty.posix import PosixPty

        return PosixPty.spawn(spec)
