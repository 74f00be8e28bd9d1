"""A Windows pseudo-console (ConPTY) on ``pywinpty``.

Windows only: ``pywinpty`` exists only there. Type-checked with
``mypy --platform win32`` but not run by this repository's tests (they run on
Linux); the calls used are the documented ``winpty.PtyProcess`` ones
(``spawn``, ``read``, ``write``, ``setwinsize``, ``isalive``, ``exitstatus``,
``terminate``). Reads block in pywinpty, so they run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from gdos_sdk.errors import SpawnError
from gdos_sdk.pty import PtySpec, pty_env

__all__ = ["WindowsPty"]


class WindowsPty:
    """A console program on a ConPTY.

    Example::

        pty = WindowsPty.spawn(PtySpec(argv=["cmd.exe"]))
        await pty.write(b"echo hi\\r\\n")
    """

    def __init__(self, proc: Any) -> None:
        self._proc = proc
        self._closed = False
        self._code: int | None = None

    @classmethod
    def spawn(cls, spec: PtySpec) -> WindowsPty:
        from winpty import PtyProcess

        env = dict(spec.env) if spec.env is not None else pty_env()
        try:
            proc = PtyProcess.spawn(
                spec.argv, cwd=spec.cwd, env=env, dimensions=(spec.rows, spec.cols)
            )
        except Exception as exc:  # pywinpty raises plain exceptions (WinptyError, OSError)
            raise SpawnError(f"cannot start {spec.argv[0]!r} in a console: {exc}") from exc
        return cls(proc)

    @property
    def pid(self) -> int:
        return int(self._proc.pid)

    def _read_blocking(self, size: int) -> bytes:
        try:
            text = self._proc.read(size)
        except EOFError:
            return b""
        if isinstance(text, bytes):
            return text
        return str(text).encode("utf-8", errors="replace")

    async def read(self, size: int = 65536) -> bytes:
        if self._closed:
            return b""
        data = await asyncio.to_thread(self._read_blocking, size)
        while data == b"" and self._proc.isalive() and not self._closed:
            # pywinpty may return an empty read while the console is idle.
            await asyncio.sleep(0.02)
            data = await asyncio.to_thread(self._read_blocking, size)
        return data

    def read_ready(self, size: int = 65536) -> bytes:
        """Nothing: pywinpty has no non-blocking read (reads already return what is there)."""
        return b""

    async def write(self, data: bytes) -> None:
        if self._closed:
            return
        text = data.decode("utf-8", errors="replace")
        await asyncio.to_thread(self._proc.write, text)

    def resize(self, rows: int, cols: int) -> None:
        if not self._closed:
            with contextlib.suppress(Exception):
                self._proc.setwinsize(max(1, rows), max(1, cols))

    def exit_code(self) -> int | None:
        if self._code is None and not self._proc.isalive():
            status = self._proc.exitstatus
            self._code = int(status) if status is not None else -1
        return self._code

    async def wait(self, poll: float = 0.1) -> int:
        """Wait for the program to end; its exit code."""
        while (code := self.exit_code()) is None:  # noqa: ASYNC110 - polling the OS
            await asyncio.sleep(poll)
        return code

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._proc.terminate, True)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._proc.close, True)
