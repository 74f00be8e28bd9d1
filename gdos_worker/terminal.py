"""The worker's end of web terminals: a PTY per session and its own stream socket.

On ``terminal_open`` the worker starts the shell on a PTY and dials back
``/api/v1/agent/terminal/<session id>`` (node credential + the session's
one-time token). Output goes to the master as binary frames as soon as the
PTY has it; binary frames from the master are typed into the PTY, text frames
are control messages (``resize``, ``close``). The agent channel carries only
the open request and its answer, so a busy terminal never delays heartbeats.
The session ends when the shell exits (an ``exit`` frame is sent) or the
socket closes (the shell is hung up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import ssl
from collections.abc import Mapping

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from gdos_sdk.errors import GdosError, TransportError, ValidationError
from gdos_sdk.protocol import TerminalOpenCommand
from gdos_sdk.pty import Pty, PtySpec, default_shell, open_pty, pty_env
from gdos_sdk.terminal import TERMINAL_TOKEN_HEADER, control, parse_control

__all__ = ["TerminalHost", "shell_argv"]

log = logging.getLogger("gdos.worker.terminal")

READ_SIZE = 64 * 1024
MAX_FRAME = 256 * 1024  # largest output frame to the master
MAX_PENDING = 1024 * 1024  # output read ahead of the socket before the shell is held up
EXIT_GRACE = 5.0  # seconds the master has to read the exit frame and close the stream


def shell_argv(configured: str) -> list[str]:
    """``terminal.shell`` split into argv, or the login shell when empty."""
    return shlex.split(configured) if configured.strip() else default_shell()


class TerminalHost:
    """The open terminal sessions of this worker."""

    def __init__(
        self,
        *,
        master_url: str,
        shell: str,
        cwd: str,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        base = master_url.rstrip("/")
        self.ws_base = "ws" + base[len("http") :] + "/api/v1/agent/terminal/"
        self.shell = shell
        self.cwd = cwd
        self._ssl = ssl_context
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def sessions(self) -> int:
        return len(self._tasks)

    async def open(self, command: TerminalOpenCommand, headers: Mapping[str, str]) -> None:
        """Start the PTY, dial the stream; return once both are up (raise if not)."""
        if command.session_id in self._tasks:
            raise ValidationError(f"terminal session {command.session_id} is already open")
        pty = open_pty(
            PtySpec(
                argv=shell_argv(self.shell),
                rows=command.rows,
                cols=command.cols,
                cwd=self.cwd,
                env=pty_env(),
            )
        )
        try:
            ws = await connect(
                self.ws_base + command.session_id,
                additional_headers={**headers, TERMINAL_TOKEN_HEADER: command.token},
                open_timeout=10,
                ping_interval=20,
                compression=None,
                max_size=4 * 1024 * 1024,
                ssl=self._ssl,
            )
        except (OSError, WebSocketException, TimeoutError) as exc:
            await pty.close()
            raise TransportError(f"cannot open the terminal stream to the master: {exc}") from exc
        task = asyncio.get_running_loop().create_task(self._serve(command.session_id, pty, ws))
        self._tasks[command.session_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(command.session_id, None))
        log.info("terminal %s opened (pid %d)", command.session_id, pty.pid)

    async def _serve(self, session_id: str, pty: Pty, ws: ClientConnection) -> None:
        async def output() -> None:
            # Two stages: the PTY is drained into a bounded buffer while the previous frame
            # is on its way, and each frame carries everything gathered meanwhile. Keystroke
            # echo goes out at once; bulk output crosses in few large frames and the shell is
            # not held up by the sockets (until MAX_PENDING bytes wait: then it is).
            pending = bytearray()
            ready = asyncio.Event()
            room = asyncio.Event()
            room.set()
            ended = False

            async def drain_pty() -> None:
                nonlocal ended
                while True:
                    await room.wait()
                    data = await pty.read(READ_SIZE)
                    if not data:
                        ended = True
                        ready.set()
                        return
                    pending.extend(data)
                    ready.set()
                    if len(pending) >= MAX_PENDING:
                        room.clear()

            reader = asyncio.ensure_future(drain_pty())
            try:
                while True:
                    await ready.wait()
                    if not pending:
                        if ended:
                            return
                        ready.clear()
                        continue
                    frame = bytes(pending[:MAX_FRAME])
                    del pending[: len(frame)]
                    room.set()
                    await ws.send(frame)
            finally:
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader

        async def input() -> None:
            async for frame in ws:
                if isinstance(frame, bytes):
                    await pty.write(frame)
                    continue
                try:
                    message = parse_control(frame)
                except GdosError:
                    continue
                if message["op"] == "resize":
                    pty.resize(message["rows"], message["cols"])
                elif message["op"] == "close":
                    return

        out = asyncio.ensure_future(output())
        inp = asyncio.ensure_future(input())
        try:
            done, _ = await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
            if out in done:  # the shell ended: tell the master how
                code = await asyncio.wait_for(_exit_code(pty), 5)
                with contextlib.suppress(WebSocketException, OSError):
                    await ws.send(control("exit", code=code, reason="exited"))
                    # The master closes the stream once it has read that frame. Closing
                    # first could lose it: the master's handler is cancelled when the
                    # socket goes, frames unread, and the session would end "worker_lost".
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(ws.wait_closed(), EXIT_GRACE)
        except (WebSocketException, OSError, TimeoutError) as exc:
            log.info("terminal %s stream ended: %s", session_id, exc)
        finally:
            for task in (out, inp):
                task.cancel()
            for task in (out, inp):
                with contextlib.suppress(BaseException):
                    await task
            await pty.close()
            with contextlib.suppress(Exception):
                await ws.close()
            log.info("terminal %s closed", session_id)

    async def close(self) -> None:
        """End every session (the worker is stopping)."""
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(BaseException):
                await task


async def _exit_code(pty: Pty) -> int | None:
    while (code := pty.exit_code()) is None:  # noqa: ASYNC110 - polling the OS
        await asyncio.sleep(0.02)
    return code
