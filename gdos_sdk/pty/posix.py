"""A POSIX pseudo-terminal on ``ptyprocess``, read and written without threads.

The master side of the PTY is made non-blocking and watched by the event loop
(``add_reader`` / ``add_writer``), so output is read as soon as the kernel has
it and a thousand idle terminals cost no threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import sys

import psutil
from ptyprocess import PtyProcess

from gdos_sdk.errors import SpawnError
from gdos_sdk.pty import PtySpec, pty_env

__all__ = ["PosixPty"]

assert sys.platform != "win32", "gdos_sdk.pty.posix is for POSIX systems"

KILL_AFTER = 2.0  # seconds between the hang-up and SIGKILL on close


class PosixPty:
    """A shell (or any program) in a new session on its own PTY.

    Example::

        pty = PosixPty.spawn(PtySpec(argv=["/bin/sh"]))
        await pty.write(b"exit 3\\n")
        while await pty.read():
            pass
        await pty.wait()  # 3
    """

    def __init__(self, proc: PtyProcess) -> None:
        self._proc = proc
        self._fd: int = proc.fd
        os.set_blocking(self._fd, False)
        self._closed = False
        self._code: int | None = None

    @classmethod
    def spawn(cls, spec: PtySpec) -> PosixPty:
        env = dict(spec.env) if spec.env is not None else pty_env()
        try:
            proc = PtyProcess.spawn(
                spec.argv, cwd=spec.cwd, env=env, dimensions=(spec.rows, spec.cols)
            )
        except (OSError, ValueError) as exc:  # ptyprocess reports exec failures as OSError
            raise SpawnError(f"cannot start {spec.argv[0]!r} in a terminal: {exc}") from exc
        return cls(proc)

    @property
    def pid(self) -> int:
        return int(self._proc.pid)

    async def _ready(self, writing: bool) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        if writing:
            loop.add_writer(self._fd, wake)
        else:
            loop.add_reader(self._fd, wake)
        try:
            await future
        finally:
            if writing:
                loop.remove_writer(self._fd)
            else:
                loop.remove_reader(self._fd)

    async def read(self, size: int = 65536) -> bytes:
        while not self._closed:
            try:
                data = os.read(self._fd, size)
            except BlockingIOError:
                await self._ready(writing=False)
                continue
            except OSError as exc:
                # Linux answers EIO once the last process holding the terminal is gone.
                if exc.errno in (errno.EIO, errno.EBADF):
                    return b""
                raise
            return data + self.read_ready(size - len(data)) if len(data) >= 1024 else data
        return b""

    def read_ready(self, size: int = 65536) -> bytes:
        """What output is already waiting (up to ``size`` bytes), without waiting for more.

        The kernel hands a PTY's output over in pieces of at most ~4 KiB; bulk output moves
        in fewer, larger frames when the reader takes what else is there.
        """
        parts: list[bytes] = []
        total = 0
        while total < size and not self._closed:
            try:
                more = os.read(self._fd, size - total)
            except OSError:  # nothing more now (EAGAIN), or the end: the next read() says
                break
            if not more:
                break
            parts.append(more)
            total += len(more)
        return b"".join(parts)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._closed:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                await self._ready(writing=True)
                continue
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EBADF):
                    return
                raise
            view = view[written:]

    def resize(self, rows: int, cols: int) -> None:
        if self._closed:
            return
        with contextlib.suppress(OSError):
            self._proc.setwinsize(max(1, rows), max(1, cols))

    def exit_code(self) -> int | None:
        if self._code is None:
            try:
                alive = self._proc.isalive()
            except Exception:  # already reaped elsewhere
                return None
            if not alive:
                status = self._proc.exitstatus
                self._code = int(status) if status is not None else -int(self._proc.signalstatus)
        return self._code

    async def wait(self, poll: float = 0.05) -> int:
        """Wait for the process to end; its exit code (negative: the signal that ended it)."""
        while (code := self.exit_code()) is None:  # noqa: ASYNC110 - polling the OS
            await asyncio.sleep(poll)
        return code

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        pid = self.pid
        # Everything the shell started in its session (background jobs have their own
        # process groups) is hung up too, as when a terminal window closes; then killed.
        members = _session_members(pid)
        if self.exit_code() is None:
            members.append(pid)
        for member in members:
            for sig in (signal.SIGHUP, signal.SIGCONT):
                with contextlib.suppress(OSError):
                    os.kill(member, sig)
        # Close through ptyprocess, without its blocking terminate(): we wait below.
        with contextlib.suppress(OSError):
            self._proc.fileobj.close()
        self._proc.fd = -1
        self._proc.closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + KILL_AFTER
        while loop.time() < deadline and (  # noqa: ASYNC110 - polling the OS
            self.exit_code() is None or _session_members(pid)
        ):
            await asyncio.sleep(0.05)
        for member in _session_members(pid):
            with contextlib.suppress(OSError):
                os.kill(member, signal.SIGKILL)
        if self.exit_code() is None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            await self.wait()


def _session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` other than its leader."""
    found = []
    for pid in psutil.pids():
        if pid == sid:
            continue
        try:
            if os.getsid(pid) == sid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
        except (OSError, psutil.Error):
            continue
    return found
