"""``gdos ssh NODE``: the web terminal in this terminal.

The local terminal goes into raw mode (every key, Ctrl-C included, goes to the remote
shell), window changes (SIGWINCH) are sent as resize messages, and a dropped connection
is reattached to the same shell within ``--reattach-timeout`` seconds (the master keeps
it for ``terminal.reattach_grace``) without printing anything twice. The terminal is
restored however the command ends. The exit status is the remote shell's.

Input that is not a terminal (``echo uptime | gdos ssh web-01``) is typed as it is, and
its end is sent as Ctrl-D.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

import click

from gdos_cli.core import Env, ExitCode, GdosCommand, option, pass_env
from gdos_cli.resolve import Names
from gdos_cli.tty import raw_mode, window_size
from gdos_sdk.models import Node
from gdos_sdk.terminal_client import AsyncTerminal, TerminalNotice

__all__ = ["commands"]

EOT = b"\x04"  # Ctrl-D: the end of piped input, as the remote shell understands it
NORMAL_ENDS = ("exited", "closed")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _say(text: str) -> None:
    """A line of our own between the remote screen's lines (raw mode needs the \\r)."""
    os.write(sys.stderr.fileno(), f"\r\n[gdos: {text}]\r\n".encode())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Stopped(Exception):
    """gdos was told to stop (SIGTERM, SIGHUP): the shell is left for a reattach."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


async def _pump(term: AsyncTerminal, stdin: int, stdout: int) -> None:
    """Keys to the shell, window changes to resizes, the screen to stdout, until the end.

    Raises:
        Stopped: a SIGTERM or SIGHUP came (signal handlers only note it; this returns).
    """
    loop = asyncio.get_running_loop()
    keys: asyncio.Queue[bytes] = asyncio.Queue()
    resized = asyncio.Event()
    stop: asyncio.Future[None] = loop.create_future()
    stopped_by: list[int] = []

    def on_key() -> None:
        try:
            data = os.read(stdin, 65536)
        except OSError:
            data = b""
        if not data:  # end of piped input
            loop.remove_reader(stdin)
            data = EOT
        keys.put_nowait(data)

    def on_stop(signum: int) -> None:
        stopped_by.append(signum)
        if not stop.done():
            stop.set_result(None)

    async def typing() -> None:
        while True:
            await term.write(await keys.get())

    async def resizing() -> None:
        while True:
            await resized.wait()
            resized.clear()
            rows, cols = window_size(stdout if os.isatty(stdout) else stdin)
            if (rows, cols) != (term.rows, term.cols):
                await term.resize(rows, cols)

    async def screen() -> None:
        while data := await term.read():
            _write_all(stdout, data)

    loop.add_reader(stdin, on_key)
    loop.add_signal_handler(signal.SIGWINCH, resized.set)
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_stop, signum)
    tasks: list[asyncio.Future[None]] = [
        asyncio.ensure_future(c) for c in (screen(), typing(), resizing())
    ]
    try:
        done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
        if stop in done:
            raise Stopped(stopped_by[0])
        for task in done:
            task.result()  # the screen ended, or a failed write or resize ends it all
    finally:
        loop.remove_reader(stdin)
        for signum in (signal.SIGWINCH, *STOP_SIGNALS):
            loop.remove_signal_handler(signum)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def _session(env: Env, node: Node, session_id: str | None, reattach_timeout: float) -> int:
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    interactive = os.isatty(stdin)
    rows, cols = window_size(stdout if os.isatty(stdout) else stdin)

    def notice(event: TerminalNotice) -> None:
        _say(event.message)

    async with env.async_client() as client:
        term = await client.open_terminal(
            node.id,
            rows=rows,
            cols=cols,
            session_id=session_id,
            reattach_timeout=reattach_timeout,
            on_notice=notice,
        )
        try:
            with raw_mode(stdin):
                await _pump(term, stdin, stdout)
        except Stopped as stopped:
            await term.detach()
            sys.stderr.write(
                f"gdos: stopped by {stopped}; the shell waits for a reattach:"
                f" gdos ssh {node.hostname} --session {term.id}\n"
            )
            return 128 + stopped.signum
        finally:
            if not term.ended:  # interrupted otherwise: leave the shell for a reattach too
                await term.detach()
    if interactive:
        sys.stderr.write(f"Connection to {node.hostname} closed.\n")
    if term.exit_code is not None:
        return term.exit_code
    if term.reason not in NORMAL_ENDS:
        sys.stderr.write(f"gdos: the terminal session ended: {term.reason}\n")
        return ExitCode.FAILED
    return ExitCode.OK


@click.command(cls=GdosCommand)
@click.argument("node")
@option(
    "--session",
    "session_id",
    metavar="ID",
    help="Reattach to this session (one a dropped `gdos ssh` left behind).",
)
@option(
    "--reattach-timeout",
    type=click.FloatRange(0, 3600),
    default=60.0,
    help="Seconds to keep trying to reattach after the connection drops.",
)
@pass_env
def ssh(env: Env, node: str, session_id: str | None, reattach_timeout: float) -> int:
    """Open a shell on NODE (hostname, alias or id) in this terminal (admins).

    The shell runs on the node's PTY through the master, which records the session.
    The exit status is the shell's.
    """
    target = Names(env.client()).node(node)
    return asyncio.run(_session(env, target, session_id, reattach_timeout))


commands: list[click.Command] = [ssh]
