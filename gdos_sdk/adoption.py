"""Adoption of processes GDOS did not deploy: how to find them and how to tell them apart.

An adopted module carries an :class:`AdoptionSpec` instead of a package. The
worker finds the service's main process by one of three strategies:

* ``pid_file``: the pid written in a file. The file is trusted only when the
  process it names started no later than the file was written (a daemon
  writes its pid file after it starts), so a stale file whose pid the OS gave
  to another program is recognised as not the service. ``name``/``cmdline``
  narrow it further when given.
* ``match``: the oldest process whose name equals ``name`` and/or whose
  command line matches the regular expression ``cmdline``, optionally also
  by working directory (``cwd``) and user; of a matching tree only its top is
  a candidate (nginx's master, not its workers).
* ``spawn``: GDOS runs ``command`` and tracks the process it started.

Identity is always pid + create time (:class:`ProcessIdentity`): a pid the OS
reused is never taken for the service. Everything here except
:func:`list_processes` and :func:`read_pid_file` is pure, so the matching is
tested with a fake process table.

Example::

    spec = AdoptionSpec(strategy="match", name="redis-server")
    spec.check()
    found = find_candidates(spec, list_processes())
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable
from typing import TypeVar

import attrs
import psutil

from gdos_sdk.constraints import Check
from gdos_sdk.display import displayed
from gdos_sdk.errors import ValidationError

__all__ = [
    "AdoptionSpec",
    "AdoptionStrategy",
    "PidFile",
    "ProcessCandidate",
    "ProcessIdentity",
    "clean_cmdline",
    "discover",
    "find_candidates",
    "list_processes",
    "pid_file_candidate",
    "read_pid_file",
    "resolve",
    "same_create_time",
]

T = TypeVar("T")

# A pid file written this long before its process "started" is still accepted:
# create times and mtimes come from different clocks with whole-second steps.
_PID_FILE_SLACK = 1.0
_SECONDS = Check(exclusive_minimum=0, maximum=3600)


class AdoptionStrategy(enum.StrEnum):
    """How the worker finds an adopted service's main process."""

    PID_FILE = "pid_file"
    MATCH = "match"
    SPAWN = "spawn"


@displayed
@attrs.frozen
class AdoptionSpec:
    """What makes a module an adopted service instead of a package.

    Parameters:
        strategy: ``pid_file``, ``match`` or ``spawn``.
        pid_file: absolute path of the pid file (``pid_file``).
        name: exact process name (``match``; narrows ``pid_file``).
        cmdline: regular expression searched in the command line joined by spaces.
        cwd: the process's working directory must be this (``match``); also the
            directory the commands run in.
        user: the process must run as this user (``match``).
        command: the start command of ``spawn``; its process is tracked.
        start_command, stop_command, restart_command: optional shell commands;
            without them GDOS signals the tracked pid (stop) and cannot start a
            ``pid_file``/``match`` service that is not running.
        stop_signal, stop_timeout: signal and grace period when stopping by signal,
            and how long a stop command may take.
        start_timeout: how long to wait for the process after a start command.
        follow_timeout: after the tracked process exits, how long to look for its
            successor (an outside restart) before reporting the service stopped.
        log_paths: log files of the service the log viewer may read.

    Example::

        AdoptionSpec(strategy="pid_file", pid_file="/run/nginx.pid",
                     start_command="nginx", stop_command="nginx -s quit")
    """

    strategy: AdoptionStrategy
    pid_file: str = ""
    name: str = ""
    cmdline: str = ""
    cwd: str = ""
    user: str = ""
    command: str = ""
    start_command: str = ""
    stop_command: str = ""
    restart_command: str = ""
    stop_signal: str = "SIGTERM"
    stop_timeout: float = attrs.field(default=10.0, validator=_SECONDS)
    start_timeout: float = attrs.field(default=15.0, validator=_SECONDS)
    follow_timeout: float = attrs.field(default=10.0, validator=_SECONDS)
    log_paths: list[str] = attrs.field(factory=list)

    def check(self, path: str = "$.adoption") -> None:
        """Raise :class:`ValidationError` naming the field at fault."""

        def fail(field: str, message: str) -> None:
            raise ValidationError(
                f"{field}: {message}", details=[{"path": f"{path}.{field}", "message": message}]
            )

        if self.strategy == AdoptionStrategy.PID_FILE and not os.path.isabs(self.pid_file):
            fail("pid_file", "the pid_file strategy needs an absolute pid_file path")
        if self.strategy == AdoptionStrategy.MATCH and not (self.name or self.cmdline):
            fail("name", "the match strategy needs a process name or a cmdline pattern")
        if self.strategy == AdoptionStrategy.SPAWN and not self.command.strip():
            fail("command", "the spawn strategy needs a command")
        if self.cmdline:
            try:
                re.compile(self.cmdline)
            except re.error as exc:
                fail("cmdline", f"invalid regular expression: {exc}")
        for i, log_path in enumerate(self.log_paths):
            if not os.path.isabs(log_path):
                fail(f"log_paths[{i}]", "log paths of an adopted service must be absolute")


@displayed
@attrs.frozen
class ProcessCandidate:
    """One process as the candidate list shows it."""

    pid: int
    create_time: float
    name: str
    cmdline: list[str] = attrs.field(factory=list)
    cwd: str = ""
    user: str = ""
    ppid: int = 0

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.pid, self.create_time)


@displayed
@attrs.frozen
class ProcessIdentity:
    """pid + create time: what names one process run, unlike a bare pid.

    Example::

        ProcessIdentity(42, 1700000000.25).matches(ProcessIdentity(42, 1700000300.0))  # False
    """

    pid: int
    create_time: float

    def matches(self, other: ProcessIdentity) -> bool:
        return self.pid == other.pid and same_create_time(other.create_time, self.create_time)


def same_create_time(actual: float, recorded: float) -> bool:
    """Whether two psutil create times name the same process start.

    The same process can read one whole second apart across a boot-time step
    (see :func:`gdos_sdk.executors.posix.same_create_time`); a recycled pid
    almost never starts exactly a whole second apart at tick resolution.
    """
    diff = abs(actual - recorded)
    return diff < 0.005 or abs(diff - 1.0) < 0.005


@displayed
@attrs.frozen
class PidFile:
    """What a pid file said and when it was written (``pid`` ``None``: missing or unreadable)."""

    pid: int | None
    mtime: float = 0.0
    problem: str = ""


def read_pid_file(path: str) -> PidFile:
    """Read the first integer of ``path`` and the file's modification time."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(64)
            mtime = os.fstat(handle.fileno()).st_mtime
    except OSError as exc:
        return PidFile(None, problem=f"cannot read pid file {path}: {exc.strerror}")
    text = data.decode("ascii", "replace").strip().split()
    if not text or not text[0].isdigit() or int(text[0]) <= 0:
        return PidFile(None, mtime, f"pid file {path} holds no pid")
    return PidFile(int(text[0]), mtime)


def _matches(spec: AdoptionSpec, proc: ProcessCandidate) -> bool:
    if spec.name and proc.name != spec.name:
        return False
    if spec.cmdline and not re.search(spec.cmdline, " ".join(proc.cmdline)):
        return False
    if spec.cwd and os.path.normpath(proc.cwd) != os.path.normpath(spec.cwd):
        return False
    return not (spec.user and proc.user != spec.user)


def pid_file_candidate(
    spec: AdoptionSpec, pid_file: PidFile, processes: list[ProcessCandidate]
) -> tuple[ProcessCandidate | None, str]:
    """The process a pid file names, or ``None`` and why not.

    A process that started after the file was last written is not the one
    that wrote it: the pid was reused and the file is stale.
    """
    if pid_file.pid is None:
        return None, pid_file.problem
    proc = next((p for p in processes if p.pid == pid_file.pid), None)
    if proc is None:
        return None, f"pid {pid_file.pid} from {spec.pid_file} is not running"
    if proc.create_time > pid_file.mtime + _PID_FILE_SLACK:
        return None, (
            f"pid file {spec.pid_file} is stale: pid {proc.pid} ({proc.name}) started after"
            " the file was written"
        )
    if (spec.name or spec.cmdline) and not _matches(attrs.evolve(spec, cwd="", user=""), proc):
        return None, f"pid {proc.pid} ({proc.name}) does not match the expected process"
    return proc, ""


def find_candidates(
    spec: AdoptionSpec,
    processes: list[ProcessCandidate],
    *,
    pid_file: PidFile | None = None,
    exclude_pids: frozenset[int] = frozenset(),
) -> list[ProcessCandidate]:
    """The processes ``spec`` would adopt, best first (pure given its inputs).

    ``pid_file`` is what :func:`read_pid_file` returned for ``spec.pid_file``;
    ``exclude_pids`` are processes that must never match (the worker itself).
    """
    processes = [p for p in processes if p.pid not in exclude_pids]
    if spec.strategy == AdoptionStrategy.PID_FILE:
        found, _ = pid_file_candidate(spec, pid_file or PidFile(None), processes)
        return [found] if found is not None else []
    if spec.strategy == AdoptionStrategy.SPAWN:
        return []  # nothing to adopt: GDOS starts it
    matching = [p for p in processes if _matches(spec, p)]
    pids = {p.pid for p in matching}
    # The top of each matching tree: nginx's workers match too, but their master is the service.
    tops = [p for p in matching if p.ppid not in pids]
    return sorted(tops, key=lambda p: (p.create_time, p.pid))


def clean_cmdline(argv: list[str]) -> list[str]:
    """A command line as a person reads it, also when the program rewrote its title.

    Daemons such as redis-server or nginx overwrite their argument area with a title
    ("redis-server 127.0.0.1:6379") padded with NUL bytes, which reads back as the title
    followed by dozens of empty arguments. The trailing empty strings go; a lone title
    with spaces is split into words (as psutil does when the padding is a single NUL).
    Empty arguments between others are real and kept.

    Example::

        clean_cmdline(["/usr/bin/redis-server 127.0.0.1:6379", "", ""])
        # ["/usr/bin/redis-server", "127.0.0.1:6379"]
    """
    end = len(argv)
    while end and not argv[end - 1]:
        end -= 1
    kept = argv[:end]
    if len(kept) == 1 and " " in kept[0].strip():
        return kept[0].split()
    return kept


def _candidate(proc: psutil.Process, *, details: bool = True) -> ProcessCandidate | None:
    """One process; ``details`` also reads its working directory and user (slower)."""
    try:
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return ProcessCandidate(
                pid=proc.pid,
                create_time=proc.create_time(),
                name=proc.name(),
                cmdline=clean_cmdline(_safe(proc.cmdline, [])),
                cwd=_safe(proc.cwd, "") if details else "",
                user=_safe(proc.username, "") if details else "",
                ppid=proc.ppid(),
            )
    except psutil.Error:
        return None


def _safe(call: Callable[[], T], default: T) -> T:
    try:
        value = call()
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return default
    return value


def list_processes(*, details: bool = True) -> list[ProcessCandidate]:
    """Every live process of this host, as far as this user may see it.

    Without ``details`` the working directory and user are left empty: reading
    them for every process of a busy host is what makes a scan slow.
    """
    found = []
    for proc in psutil.process_iter():
        candidate = _candidate(proc, details=details)
        if candidate is not None:
            found.append(candidate)
    return found


def discover(spec: AdoptionSpec) -> tuple[list[ProcessCandidate], str]:
    """The live processes ``spec`` names on this host now, best first, or why there is none.

    A pid file costs one process lookup; a match scans names and command
    lines first and reads working directory and user only of the processes
    that pass that filter.
    """
    me = os.getpid()
    if spec.strategy == AdoptionStrategy.PID_FILE:
        pid_file = read_pid_file(spec.pid_file)
        procs: list[ProcessCandidate] = []
        if pid_file.pid is not None and pid_file.pid != me:
            try:
                named = _candidate(psutil.Process(pid_file.pid))
            except psutil.Error:
                named = None
            procs = [named] if named is not None else []
        candidate, why = pid_file_candidate(spec, pid_file, procs)
        return ([candidate] if candidate is not None else []), why
    if spec.strategy == AdoptionStrategy.SPAWN:
        return [], "the spawn strategy starts its command"
    light = attrs.evolve(spec, cwd="", user="")
    rough = [p for p in list_processes(details=False) if p.pid != me and _matches(light, p)]
    detailed = []
    for proc in rough:
        try:
            full = _candidate(psutil.Process(proc.pid))
        except psutil.Error:
            continue
        if full is not None and full.identity.matches(proc.identity):
            detailed.append(full)
    found = find_candidates(spec, detailed)
    if found:
        return found, ""
    return [], "no matching process is running"


def resolve(spec: AdoptionSpec) -> tuple[ProcessCandidate | None, str]:
    """The live process ``spec`` names on this host now, or ``None`` and why not."""
    found, why = discover(spec)
    return (found[0], "") if found else (None, why)
