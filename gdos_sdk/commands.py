"""Fleet commands: one shell command on many nodes, with a timeout and per-node output.

The models are what the master's API speaks (:class:`CommandRequest` in,
:class:`CommandRun` out); :func:`run_command` is what a worker does with one.

The command runs under the platform shell (``/bin/sh -c`` on POSIX,
``cmd.exe /d /s /c`` on Windows) in a session and process group of its own,
marked with ``GDOS_INSTANCE_ID=<tag>`` like an instance's processes. When the
timeout passes, the whole group is killed, and so is every process carrying the
tag (which finds children that called ``setsid()``), through the executor's
``kill_tag``. The run counts as finished when the shell has exited *and* its
output pipes are closed, as with ``ssh host cmd``: a background child that
keeps the pipes open keeps the command running until the timeout kills it.

Example::

    exit = await run_command("uname -a", timeout=10, tag="cmd-1",
                             on_output=lambda stream, text: print(stream, text, end=""))
    print(exit.exit_code, exit.timed_out)
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import enum
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import attrs

from gdos_sdk.constraints import Check
from gdos_sdk.display import displayed
from gdos_sdk.executors import TAG_ENV, Executor, default_executor

__all__ = [
    "MAX_OUTPUT",
    "MAX_TIMEOUT",
    "CommandExit",
    "CommandRequest",
    "CommandRun",
    "NodeCommandResult",
    "NodeRunState",
    "run_command",
    "shell_argv",
]

MAX_TIMEOUT = 3600.0
MAX_OUTPUT = 1024 * 1024
"""Bytes of stdout (and, separately, of stderr) kept per node; the rest is counted, not kept."""

OnOutput = Callable[[str, str], None]


_COMMAND = Check(
    max_length=16384,
    pattern=r"^\s*[^\s\u0000][^\u0000]*$",
    hint="shell text that is not blank and has no NUL character",
)


@displayed
@attrs.frozen
class CommandRequest:
    """Run ``command`` on every node of ``node_ids``; kill it after ``timeout`` seconds.

    Example::

        CommandRequest(node_ids=[node.id], command="df -h /", timeout=30)
    """

    node_ids: list[str] = attrs.field(validator=Check(min_items=1, max_items=1000))
    command: str = attrs.field(validator=_COMMAND)
    timeout: float = attrs.field(
        default=60.0, validator=Check(exclusive_minimum=0, maximum=MAX_TIMEOUT)
    )


class NodeRunState(enum.StrEnum):
    """``running`` until the worker answers; ``done`` (it ran) or ``failed`` (it could not)."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@displayed
@attrs.frozen
class NodeCommandResult:
    """One node's part of a run: its output so far, then how the command ended.

    ``exit_code`` is ``None`` while running, when the command was killed by a
    signal (``timed_out`` says whether the timeout did it), or when it never ran
    (``state`` ``failed``, ``error`` says why: node offline, shell missing...).
    """

    node_id: str
    state: NodeRunState = NodeRunState.RUNNING
    exit_code: int | None = None
    timed_out: bool = False
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    error: str = ""
    duration: float = 0.0


@displayed
@attrs.frozen
class CommandRun:
    """A fleet command and the results of its nodes (``finished_at`` is set once all are in)."""

    id: str
    command: str
    timeout: float
    user: str
    started_at: float
    finished_at: float | None = None
    nodes: list[NodeCommandResult] = attrs.field(factory=list)

    @property
    def done(self) -> bool:
        return self.finished_at is not None


@attrs.frozen
class CommandExit:
    """How a command ended on one node (the worker's answer)."""

    exit_code: int | None
    timed_out: bool
    duration: float
    signal: int | None = None
    truncated: bool = False
    killed_pids: list[int] = attrs.field(factory=list)


def shell_argv(command: str) -> list[str]:
    """The argv that runs ``command`` under the platform's shell."""
    if sys.platform == "win32":
        return [os.environ.get("COMSPEC", "cmd.exe"), "/d", "/s", "/c", command]
    else:
        return ["/bin/sh", "-c", command]


class _Stream:
    """Decode one pipe incrementally and keep at most ``limit`` bytes of it."""

    def __init__(self, name: str, on_output: OnOutput, limit: int) -> None:
        self.name = name
        self.on_output = on_output
        self.left = limit
        self.truncated = False
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    async def pump(self, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(64 * 1024):
            if self.left <= 0:
                self.truncated = True
                continue  # keep draining so the command never blocks on a full pipe
            if len(chunk) > self.left:
                chunk, self.truncated = chunk[: self.left], True
            self.left -= len(chunk)
            text = self.decoder.decode(chunk)
            if text:
                self.on_output(self.name, text)
        tail = self.decoder.decode(b"", final=True)
        if tail:
            self.on_output(self.name, tail)


async def run_command(
    command: str,
    *,
    timeout: float,
    tag: str,
    on_output: OnOutput,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    max_output: int = MAX_OUTPUT,
    executor: Executor | None = None,
) -> CommandExit:
    """Run ``command`` under the shell; stream its output; kill its whole group on timeout.

    Parameters:
        command: shell text.
        timeout: seconds until the group (and every process tagged ``tag``) is killed.
        tag: marks every process of the run (``GDOS_INSTANCE_ID``) so escapees are found.
        on_output: called with ``("stdout" | "stderr", text)`` as output arrives.
        cwd, env: working directory and full environment (default: the caller's).
        max_output: bytes kept per stream; more is drained and dropped (``truncated``).
        executor: whose ``kill_tag`` finds tagged processes (the platform default).

    Raises:
        OSError: the shell could not be started.
    """
    full_env = {**(os.environ if env is None else env), TAG_ENV: tag}
    kwargs: dict[str, object] = {}
    if sys.platform == "win32":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        kwargs["start_new_session"] = True
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *shell_argv(command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=full_env,
        **kwargs,  # type: ignore[arg-type]
    )
    assert proc.stdout is not None and proc.stderr is not None
    streams = (_Stream("stdout", on_output, max_output), _Stream("stderr", on_output, max_output))
    pumps = [
        asyncio.ensure_future(streams[0].pump(proc.stdout)),
        asyncio.ensure_future(streams[1].pump(proc.stderr)),
    ]
    everything = asyncio.gather(proc.wait(), *pumps)
    timed_out = False
    killed: list[int] = []
    try:
        await asyncio.wait_for(asyncio.shield(everything), timeout)
    except TimeoutError:
        timed_out = True
        killed = _kill_all(proc.pid, tag, executor or default_executor())
    finally:
        if not everything.done():
            # Killed processes close their pipes at once; a pipe still open after this
            # belongs to something unkillable, and its output is not worth a hang.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(everything), 5.0)
            for pump in pumps:
                pump.cancel()
            with contextlib.suppress(BaseException):
                await everything
    returncode = proc.returncode if proc.returncode is not None else await proc.wait()
    code = returncode if returncode >= 0 else None
    sig = -returncode if returncode < 0 else None
    if timed_out and sys.platform == "win32":
        code = None  # TerminateProcess leaves an exit code we chose, not the command's
    return CommandExit(
        exit_code=code,
        timed_out=timed_out,
        duration=time.monotonic() - began,
        signal=sig,
        truncated=any(s.truncated for s in streams),
        killed_pids=killed,
    )


def _kill_all(pid: int, tag: str, executor: Executor) -> list[int]:
    """SIGKILL the run's process group, then every process carrying its tag."""
    killed: list[int] = []
    if sys.platform != "win32":
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # the shell leads its own session: pgid == pid
            killed.append(pid)
    else:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)  # TerminateProcess on Windows
            killed.append(pid)
    killed += [p for p in executor.kill_tag(tag) if p not in killed]
    return killed
