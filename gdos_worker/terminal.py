"""The worker's end of web terminals: a PTY per session and its own stream socket.

On ``terminal_open`` the worker starts the shell on a PTY and dials back
``/api/v1/agent/terminal/<session id>`` (node credential + the session's
one-time token). Output goes to the master as binary frames as soon as the
PTY has it; binary frames from the master are typed into the PTY, text frames
are control messages (``resize``, ``close``). The agent channel carries only
the open request and its answer, so a busy terminal never delays heartbeats.
The session ends when the shell exits (an ``exit`` frame is sent) or the
socket closes (the shell is hung up).

With several masters, a terminal opened on a master the worker is not connected to
comes through the owner with that master's URL (``master_url``): the worker dials the
stream straight to it, with its node credential. It does so only when its own
``connect.master_url`` lists that master (same scheme, host and port; the worker dials
its own entry, not the URL it was sent), so no master can make it send its credential
anywhere else (:func:`dial_back_url`; docs/security.md, "Web terminal").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import ssl
import urllib.parse
from collections.abc import Mapping, Sequence

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from gdos_sdk.errors import GdosError, PermissionDenied, TransportError, ValidationError
from gdos_sdk.protocol import TerminalOpenCommand
from gdos_sdk.pty import Pty, PtySpec, default_shell, open_pty, pty_env
from gdos_sdk.terminal import TERMINAL_TOKEN_HEADER, control, parse_control

__all__ = ["TerminalHost", "dial_back_url", "same_master", "shell_argv"]

log = logging.getLogger("gdos.worker.terminal")

READ_SIZE = 64 * 1024
MAX_FRAME = 256 * 1024  # largest output frame to the master
MAX_PENDING = 1024 * 1024  # output read ahead of the socket before the shell is held up
EXIT_GRACE = 5.0  # seconds the master has to read the exit frame and close the stream


def shell_argv(configured: str) -> list[str]:
    """``terminal.shell`` split into argv, or the login shell when empty."""
    return shlex.split(configured) if configured.strip() else default_shell()


def _origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an http(s) URL, the default port filled in; None if not."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or (443 if scheme == "https" else 80)


def same_master(a: str, b: str) -> bool:
    """Whether two URLs name the same master: same scheme, host and port (path ignored).

    Example::

        same_master("https://M1.example.com/", "https://m1.example.com:443")  # True
        same_master("https://m1:8443", "http://m1:8443")  # False
    """
    origin = _origin(a)
    return origin is not None and origin == _origin(b)


def dial_back_url(requested: str, masters: Sequence[str], current: str) -> str:
    """The master URL a terminal stream is dialled to.

    Empty ``requested``: ``current``, the master the worker is connected to. Otherwise
    the entry of ``masters`` (the worker's own ``connect.master_url``) that names the
    same master as ``requested``: the worker's own spelling is dialled, never the text
    a master sent.

    Raises:
        PermissionDenied: ``requested`` is not one of ``masters``; the message names it
            (without any user name or password) and the fix.
    """
    if not requested:
        return current
    for url in masters:
        if same_master(url, requested):
            return url
    shown = _shown(requested)
    raise PermissionDenied(
        f"this worker dials terminal streams only to the masters in its connect.master_url,"
        f" and {shown} is not one of them: add it to the worker's -master list"
        f" (or set the opening master's server.public_url to a URL the worker lists)"
    )


def _shown(url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return repr(url[:100])
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
    return urllib.parse.urlunsplit(parts)[:200]


class TerminalHost:
    """The open terminal sessions of this worker.

    Parameters:
        master_url: the master the worker is connected to (the agent keeps it current).
        masters: every master of the worker's ``connect.master_url``: the only ones a
            stream may be dialled to.
    """

    def __init__(
        self,
        *,
        master_url: str,
        shell: str,
        cwd: str,
        ssl_context: ssl.SSLContext | None = None,
        masters: Sequence[str] = (),
    ) -> None:
        self.master_url = master_url  # the agent sets the master it is connected to
        self.masters = tuple(masters) or (master_url,)
        self.shell = shell
        self.cwd = cwd
        self._ssl = ssl_context
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def ws_base(self) -> str:
        """Where terminal streams are dialled: the current master's terminal endpoint."""
        return _stream_base(self.master_url)

    @property
    def sessions(self) -> int:
        return len(self._tasks)

    async def open(self, command: TerminalOpenCommand, headers: Mapping[str, str]) -> None:
        """Start the PTY, dial the stream; return once both are up (raise if not)."""
        if command.session_id in self._tasks:
            raise ValidationError(f"terminal session {command.session_id} is already open")
        try:
            master = dial_back_url(command.master_url, self.masters, self.master_url)
        except PermissionDenied as exc:
            log.warning("terminal %s refused: %s", command.session_id, exc.message)
            raise
        pty = open_pty(
            PtySpec(
                argv=shell_argv(self.shell),
                rows=command.rows,
                cols=command.cols,
                cwd=self.cwd,
                env=pty_env(),
            )
        )
        url = _stream_base(master) + command.session_id
        try:
            ws = await connect(
                url,
                additional_headers={**headers, TERMINAL_TOKEN_HEADER: command.token},
                open_timeout=10,
                ping_interval=20,
                compression=None,
                max_size=4 * 1024 * 1024,
                ssl=self._ssl if url.startswith("wss://") else None,
            )
        except (OSError, WebSocketException, TimeoutError) as exc:
            await pty.close()
            raise TransportError(
                f"cannot open the terminal stream to the master {_shown(master)}: {exc}"
            ) from exc
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


def _stream_base(master_url: str) -> str:
    base = master_url.rstrip("/")
    return "ws" + base[len("http") :] + "/api/v1/agent/terminal/"


async def _exit_code(pty: Pty) -> int | None:
    while (code := pty.exit_code()) is None:  # noqa: ASYNC110 - polling the OS
        await asyncio.sleep(0.02)
    return code
