"""The local terminal for ``gdos ssh``: raw mode that is always undone, and its size.

POSIX only (termios); on other platforms :func:`raw_mode` refuses with a clear error.

Example::

    with raw_mode(sys.stdin.fileno()):
        ...  # keystrokes arrive one by one, unechoed; Ctrl-C is a byte, not a signal
    rows, cols = window_size(sys.stdout.fileno())
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from gdos_cli.core import CliError, ExitCode

__all__ = ["raw_mode", "window_size"]


def window_size(fd: int, default: tuple[int, int] = (24, 80)) -> tuple[int, int]:
    """``(rows, columns)`` of the terminal on ``fd``; ``default`` when it is not one."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return default
    if size.lines <= 0 or size.columns <= 0:
        return default
    return size.lines, size.columns


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Put the terminal on ``fd`` in raw mode; restore it however the block ends.

    A ``fd`` that is not a terminal (input piped in) is left alone.
    """
    if not os.isatty(fd):
        yield
        return
    if sys.platform == "win32":  # pragma: no cover - the CI runs Linux
        raise CliError("gdos ssh needs a POSIX terminal (Linux or macOS)", ExitCode.USAGE)
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
