"""The seam under :class:`~gdos_sdk.executors.windows.WindowsExecutor`, and its pure helpers.

:class:`WinApi` is every Win32 call the executor makes, behind one object: the
real one (:class:`gdos_sdk.executors._win32.Win32Api`, ctypes) on Windows, a
fake in tests on any platform. The helpers here are pure: the job names of an
instance, program lookup on the instance's ``PATH``, the ``CreateProcess``
command line, and what an exit code means.

Example::

    job_names("i-42")                      # ('Global\\gdos-i-42', 'Local\\gdos-i-42')
    exit_info_from_code(0xC0000005).reason  # 'crashed: access violation (0xC0000005)'
"""

from __future__ import annotations

import ntpath
import subprocess
from collections.abc import Callable, Mapping
from typing import Protocol

from gdos_sdk.errors import SpawnError
from gdos_sdk.executors.base import ExitInfo

__all__ = [
    "CREATE_BREAKAWAY_FROM_JOB",
    "CREATE_NEW_PROCESS_GROUP",
    "CREATE_SUSPENDED",
    "ERROR_ACCESS_DENIED",
    "TERMINATED_EXIT_CODE",
    "ChildProcess",
    "WinApi",
    "command_line",
    "exit_info_from_code",
    "job_names",
    "resolve_program",
    "winerror",
]

# Process creation flags (winbase.h); numbers, so this module imports anywhere.
CREATE_SUSPENDED = 0x00000004
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_BREAKAWAY_FROM_JOB = 0x01000000

ERROR_ACCESS_DENIED = 5

TERMINATED_EXIT_CODE = 0xE0474400
"""Exit code given to processes GDOS terminates.

Error severity with the "customer" bit set (as NTSTATUS codes are laid out),
so it cannot be mistaken for a code a service chose or a system crash code.
"""

_STATUS_NAMES = {
    0xC0000005: "access violation",
    0xC000001D: "illegal instruction",
    0xC0000017: "out of memory",
    0xC0000094: "integer division by zero",
    0xC00000FD: "stack overflow",
    0xC0000135: "a DLL was not found",
    0xC0000142: "a DLL failed to initialise",
    0xC0000374: "heap corruption",
    0xC0000409: "stack buffer overrun (fail fast)",
}
_STATUS_CONTROL_C_EXIT = 0xC000013A


def job_names(tag: str) -> tuple[str, str]:
    """The job names an instance's processes live in: global first, then per session.

    ``Global\\`` is visible from every session (a worker restarted as a service
    finds a job created from a console); creating there needs
    ``SeCreateGlobalPrivilege`` (administrators, services), else ``Local\\`` is used.
    Backslashes cannot appear in a kernel object name and become ``_``.

    Example::

        job_names("i-42")  # ('Global\\\\gdos-i-42', 'Local\\\\gdos-i-42')
    """
    stem = "gdos-" + tag.replace("\\", "_")
    return f"Global\\{stem}", f"Local\\{stem}"


def command_line(argv: list[str]) -> str:
    """The ``CreateProcess`` command line that the C runtime splits back into ``argv``.

    Example::

        command_line([r"C:\\Program Files\\app.exe", "a b", 'say "hi"'])
        # '"C:\\\\Program Files\\\\app.exe" "a b" "say \\\\"hi\\\\""'
    """
    return subprocess.list2cmdline(argv)


def _env_get(env: Mapping[str, str], name: str) -> str | None:
    # Windows environment names are case-insensitive ("Path" is common).
    for key, value in env.items():
        if key.upper() == name.upper():
            return value
    return None


def resolve_program(
    program: str, *, cwd: str, env: Mapping[str, str], is_file: Callable[[str], bool]
) -> str:
    """The absolute path ``CreateProcess`` should run for ``program``.

    A name with a directory part is taken relative to ``cwd`` (``CreateProcess``
    would use the *worker's* directory); a bare name is searched on the
    instance's ``PATH``, not the worker's, as on POSIX. Each ``PATHEXT``
    extension is tried when the name has none.

    Raises:
        SpawnError: not found.

    Example::

        resolve_program("python", cwd=r"C:\\app", env={"PATH": r"C:\\Py"}, is_file=isfile)
        # 'C:\\\\Py\\\\python.EXE'
    """
    exts = [""]
    if not ntpath.splitext(program)[1]:
        pathext = _env_get(env, "PATHEXT") or ".COM;.EXE;.BAT;.CMD"
        exts = [ext for ext in pathext.split(";") if ext]
    name = program
    if ntpath.dirname(program):
        folders = [ntpath.join(cwd, ntpath.dirname(program))]
        name = ntpath.basename(program)
        where = f"in {ntpath.normpath(folders[0])}"
    else:
        folders = [p.strip('"') for p in (_env_get(env, "PATH") or "").split(";") if p]
        where = "on the instance's PATH"
    for folder in folders:
        for ext in exts:
            candidate = ntpath.normpath(ntpath.join(folder, name + ext))
            if is_file(candidate):
                return candidate
    raise SpawnError(
        f"cannot start {program!r}: not found {where}", details={"argv0": program, "cwd": cwd}
    )


def exit_info_from_code(code: int) -> ExitInfo:
    """How a Windows process ended, from its exit code.

    Example::

        exit_info_from_code(0xC0000005).reason  # 'crashed: access violation (0xC0000005)'
    """
    if code == TERMINATED_EXIT_CODE:
        # Like SIGKILL on POSIX: no exit code of the service's own.
        return ExitInfo(code=None, signal=None, reason="killed (GDOS terminated its job)")
    if code == _STATUS_CONTROL_C_EXIT:
        return ExitInfo(code=code, signal=None, reason="stopped by Ctrl+Break (0xC000013A)")
    if code in _STATUS_NAMES:
        return ExitInfo(
            code=code, signal=None, reason=f"crashed: {_STATUS_NAMES[code]} (0x{code:08X})"
        )
    if code >= 0x80000000:
        return ExitInfo(code=code, signal=None, reason=f"exited with code 0x{code:08X}")
    return ExitInfo(code=code, signal=None, reason=f"exited with code {code}")


def winerror(exc: OSError) -> int | None:
    """The Windows error code of ``exc`` (``None`` elsewhere or when not set)."""
    value = getattr(exc, "winerror", None)
    return value if isinstance(value, int) else None


class ChildProcess(Protocol):
    """What :meth:`WinApi.start_suspended` returns (a :class:`subprocess.Popen`)."""

    @property
    def pid(self) -> int:
        """The process id."""
        ...

    def poll(self) -> int | None:
        """The exit code once it has exited."""
        ...

    def kill(self) -> None:
        """``TerminateProcess`` through the creation handle."""
        ...


class WinApi(Protocol):
    """The Win32 calls :class:`WindowsExecutor` makes, behind one object so tests use a fake.

    Handles are plain ints. Calls raise :class:`OSError` (with ``winerror`` set on
    Windows) when the system refuses. See :class:`gdos_sdk.executors._win32.Win32Api`.

    Example::

        WindowsExecutor(api=FakeWinApi())
    """

    def monotonic(self) -> float:
        """A clock for timeouts."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Pause between polls."""
        ...

    def is_file(self, path: str) -> bool:
        """Whether ``path`` is an existing file (program lookup)."""
        ...

    def open_log(self, path: str) -> int:
        """A file descriptor on ``path`` whose OS handle only appends (``FILE_APPEND_DATA``)."""
        ...

    def close_fd(self, fd: int) -> None:
        """Close a descriptor from :meth:`open_log`."""
        ...

    def start_suspended(
        self,
        command_line: str,
        *,
        cwd: str,
        env: Mapping[str, str],
        stdout_fd: int,
        creationflags: int,
    ) -> ChildProcess:
        """``CreateProcess`` with stdin from NUL and stdout+stderr to ``stdout_fd``."""
        ...

    def resume(self, pid: int) -> None:
        """Resume the threads of a process created suspended."""
        ...

    def create_job(self, name: str) -> int:
        """Create (or open, if it exists) the named job; set its limits (no breakaway,
        no kill-on-close, die on unhandled exception)."""
        ...

    def open_job(self, name: str) -> int | None:
        """Open an existing named job, or ``None`` when there is none (or it is not ours)."""
        ...

    def assign(self, job: int, process: int) -> None:
        """``AssignProcessToJobObject``."""
        ...

    def share_job(self, job: int, process: int) -> None:
        """Put a copy of the job handle into ``process``, keeping the name alive with it."""
        ...

    def job_pids(self, job: int) -> list[int]:
        """The processes in the job now."""
        ...

    def terminate_job(self, job: int, exit_code: int) -> None:
        """``TerminateJobObject``: end every process in the job."""
        ...

    def open_process(self, pid: int) -> int | None:
        """A handle on ``pid`` (pins it against reuse), or ``None`` if gone or not ours."""
        ...

    def create_time(self, process: int) -> float:
        """The process's creation time, seconds since the epoch (``GetProcessTimes``)."""
        ...

    def exit_code(self, process: int) -> int | None:
        """The exit code, or ``None`` while it runs."""
        ...

    def terminate_process(self, process: int, exit_code: int) -> None:
        """``TerminateProcess``."""
        ...

    def ctrl_break(self, pgid: int) -> bool:
        """Send ``CTRL_BREAK_EVENT`` to a process group; ``False`` if it cannot be delivered."""
        ...

    def close(self, handle: int) -> None:
        """``CloseHandle``."""
        ...

    def tagged_pids(self, tag: str) -> list[int]:
        """Live processes whose environment carries ``GDOS_INSTANCE_ID=tag``."""
        ...

    def kill_tagged(self, tag: str, exit_code: int) -> list[int]:
        """Terminate the live processes carrying ``tag`` (re-checked under an open handle)."""
        ...
