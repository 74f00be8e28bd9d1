"""The executor contract: how the worker starts, watches and stops a service's processes.

An :class:`Executor` turns a :class:`SpawnSpec` into a running process and
hands back a :class:`ProcessHandle`. The handle's :class:`ProcessRef` (pid,
create time, process group, tag) is what the worker persists: after a worker
crash, :meth:`Executor.attach` finds the same process again, and refuses a
recycled pid because the create time no longer matches.

Every process of an instance carries ``GDOS_INSTANCE_ID=<tag>`` in its
environment (:data:`TAG_ENV`). Descendants inherit it, so a scan finds the
processes that left the process group (``setsid()``) or lost their parent,
and stop/destroy can leave nothing behind.

The few OS calls of the stop sequence go through an :class:`OsOps` object, so
its ordering and timeouts are unit-tested with a fake clock (Supervisor's
``options`` seam).

Example::

    from gdos_sdk.executors import SpawnSpec, default_executor

    executor = default_executor()
    handle = executor.spawn(SpawnSpec(argv=["python3", "app.py"], cwd=root, env=env,
                                      log_path=f"{root}/logs/console.log", tag=instance_id))
    save(converter.unstructure(handle.ref))
    result = await executor.stop(handle, stop_signal=signal.SIGTERM, timeout=10)
"""

from __future__ import annotations

import os
import signal
from typing import Protocol, runtime_checkable

import attrs

from gdos_sdk.executors.accounts import Account

__all__ = [
    "TAG_ENV",
    "Executor",
    "ExitInfo",
    "OsOps",
    "OsProcess",
    "ProcessHandle",
    "ProcessRef",
    "SpawnSpec",
    "StopResult",
    "TreeScan",
    "start_mark",
]

TAG_ENV = "GDOS_INSTANCE_ID"
"""Environment variable that marks every process of an instance with the instance id."""


def _non_empty_argv(_: object, attribute: attrs.Attribute[list[str]], value: list[str]) -> None:
    if not value or not all(isinstance(arg, str) for arg in value):
        raise ValueError(f"{attribute.name} must be a non-empty list of strings")
    if not value[0]:
        raise ValueError(f"{attribute.name}[0] (the program) must not be empty")


def _valid_tag(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    # The tag ends up in an environment entry and is matched exactly, so it
    # must be a plain non-empty token.
    if not value or "\0" in value or "=" in value:
        raise ValueError(f"{attribute.name} must be non-empty without '=' or NUL")


@attrs.frozen
class SpawnSpec:
    """What to start: the full command, directory, environment and console log.

    Parameters:
        argv: program and arguments; ``argv[0]`` is looked up on ``PATH`` of ``env``
            when it has no slash.
        cwd: working directory (must exist).
        env: the complete environment; the executor adds ``GDOS_INSTANCE_ID=tag``.
        log_path: stdout and stderr are appended here; the file is created if
            missing, its directory must exist.
        tag: the instance id that marks every process of the instance.
        account: run as this account (POSIX, the worker must be root to switch);
            ``None`` runs as the worker's own account.

    Example::

        SpawnSpec(argv=["python3", "-m", "http.server"], cwd="/srv/app",
                  env={"PATH": "/usr/bin"}, log_path="/srv/app/logs/console.log", tag="i-1")
    """

    argv: list[str] = attrs.field(validator=_non_empty_argv)
    cwd: str
    env: dict[str, str]
    log_path: str
    tag: str = attrs.field(validator=_valid_tag)
    account: Account | None = None


@attrs.frozen
class ProcessRef:
    """Everything needed to find a running instance process again after a worker restart.

    ``create_time`` (seconds since the epoch, as :mod:`psutil` reports it) is what
    tells a live process from a recycled pid. That time moves when the wall clock is
    stepped (NTP, a resumed virtual machine), so on Linux ``start_mark`` also records
    the kernel's own start of the process (:func:`start_mark`), which no clock step
    moves; where both sides have it, it decides. The ref is JSON-persistable through
    :data:`gdos_sdk.codec.converter` (a ref stored without ``start_mark`` still loads).

    Parameters:
        pid: the main process id.
        create_time: the main process's start time.
        pgid: its process group (equal to ``pid``: the executor starts a new session).
        tag: the instance id carried in ``GDOS_INSTANCE_ID``.
        start_mark: the boot and clock-tick start of the process (Linux), or ``None``.

    Example::

        ref = converter.structure(json.loads(text), ProcessRef)
        handle = executor.attach(ref)  # None when the process is gone
    """

    pid: int
    create_time: float
    pgid: int
    tag: str
    start_mark: str | None = None


def start_mark(pid: int) -> str | None:
    """When process ``pid`` started, as ``"<boot id>/<clock ticks since boot>"`` (Linux).

    Both come from the kernel (``/proc/sys/kernel/random/boot_id`` and field 22 of
    ``/proc/<pid>/stat``), so no wall-clock step moves the mark, and the boot id keeps a
    pid and tick count repeated after a reboot from passing for the old process. ``None``
    on other systems or when the process or the files cannot be read.

    Example::

        start_mark(os.getpid())  # '5f0c…-…/123456'
    """
    ticks = start_ticks(pid)
    boot = _boot_id()
    return None if ticks is None or boot is None else f"{boot}/{ticks}"


def start_ticks(pid: int) -> int | None:
    """Clock ticks from boot to the start of process ``pid`` (Linux), or ``None``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    # Field 2, the command name, may hold spaces and parentheses: count from its end.
    # Field 22 (starttime) is then the 20th after the ")".
    try:
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


_BOOT_ID: list[str | None] = []  # read once: it cannot change while we run


def _boot_id() -> str | None:
    if not _BOOT_ID:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
                _BOOT_ID.append(file.read().strip() or None)
        except OSError:
            _BOOT_ID.append(None)
    return _BOOT_ID[0]


@attrs.frozen
class ExitInfo:
    """How a main process ended.

    Parameters:
        code: the exit code, or ``None`` when killed by a signal or unknown
            (a re-attached process is not our child: its status goes to init).
        signal: the number of the signal that killed it, if any.
        reason: a sentence for the UI (``"exited with code 1"``, ``"killed by SIGKILL"``).

    Example::

        ExitInfo.from_returncode(-9).reason  # "killed by SIGKILL"
    """

    code: int | None
    signal: int | None
    reason: str

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitInfo:
        """From a :class:`subprocess.Popen` return code (negative means killed by a signal)."""
        if returncode < 0:
            sig = -returncode
            return cls(code=None, signal=sig, reason=f"killed by {_signal_name(sig)}")
        return cls(code=returncode, signal=None, reason=f"exited with code {returncode}")

    @classmethod
    def from_wait_status(cls, status: int) -> ExitInfo:
        """From a raw ``os.waitpid`` status."""
        return cls.from_returncode(os.waitstatus_to_exitcode(status))

    @classmethod
    def unknown(cls) -> ExitInfo:
        """The process is gone but was not our child, so its exit status went elsewhere."""
        return cls(
            code=None, signal=None, reason="exited (code unknown: not a child of this worker)"
        )


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


@attrs.frozen
class StopResult:
    """What a stop took.

    Parameters:
        exit: how the main process ended, or ``None`` if it could not be seen to end.
        forced: ``True`` when something outlived ``timeout`` and got SIGKILL.
        killed_pids: the processes that needed SIGKILL.
        duration: seconds from the first signal to the last process gone.

    Example::

        if result.forced:
            log.warning("%s ignored its stop signal: %s", instance_id, result.killed_pids)
    """

    exit: ExitInfo | None
    forced: bool
    killed_pids: list[int] = attrs.field(factory=list)
    duration: float = 0.0


@runtime_checkable
class ProcessHandle(Protocol):
    """A running (or finished) main process of an instance.

    ``is_child`` is ``True`` when this worker spawned it (then :meth:`wait` reaps
    it and knows the exit code) and ``False`` for a process re-attached after a
    worker restart.

    Example::

        info = await handle.wait()
        print(handle.pid, info.reason)
    """

    @property
    def ref(self) -> ProcessRef:
        """The persistable identity of the main process."""
        ...

    @property
    def pid(self) -> int:
        """The main process id."""
        ...

    @property
    def is_child(self) -> bool:
        """Whether this worker is the parent (and so reaps it and sees its exit code)."""
        ...

    async def wait(self) -> ExitInfo:
        """Return once the main process has exited (reaping it when it is our child)."""
        ...

    def is_alive(self) -> bool:
        """Whether the main process still runs (a zombie counts as exited)."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Starts, finds and stops instance processes on one platform.

    Example::

        executor = default_executor()
        handle = executor.attach(ref) or executor.spawn(spec)
    """

    def spawn(self, spec: SpawnSpec) -> ProcessHandle:
        """Start ``spec``; raise :class:`~gdos_sdk.errors.SpawnError` with the OS message."""
        ...

    def attach(self, ref: ProcessRef) -> ProcessHandle | None:
        """Find the live process ``ref`` names, or ``None`` if it is gone or the pid was reused."""
        ...

    # ``timeout`` is not a cancel scope: it is the grace period before SIGKILL.
    async def stop(
        self,
        handle: ProcessHandle,
        *,
        stop_signal: int,
        timeout: float,
    ) -> StopResult:
        """Signal the whole instance, wait up to ``timeout``, then SIGKILL whatever is left."""
        ...

    def kill_tag(self, tag: str) -> list[int]:
        """SIGKILL every process carrying ``tag``; return their pids."""
        ...

    def find_tag(self, tag: str) -> list[int]:
        """The pids of live processes carrying ``tag``."""
        ...


class OsProcess(Protocol):
    """A process the stop sequence can signal (a :class:`psutil.Process` in production).

    Implementations must be hashable and compare equal for the same process, as
    :class:`psutil.Process` does (by pid and create time).
    """

    @property
    def pid(self) -> int:
        """The process id."""
        ...

    def send_signal(self, sig: int) -> None:
        """Deliver ``sig``; raise if the process is gone."""
        ...


@attrs.frozen
class TreeScan:
    """The live processes of one instance at one moment.

    Parameters:
        processes: main process, its descendants, tagged processes and group members;
            zombies are not listed (they are already dead).
        group_held: ``True`` when the process group id still belongs to this instance
            (its main process or one of its processes holds it), so signalling the
            group cannot hit a stranger that recycled the number.
        grouped_pids: the listed pids that are in the instance's process group.
    """

    processes: tuple[OsProcess, ...]
    group_held: bool
    grouped_pids: frozenset[int] = frozenset()


class OsOps(Protocol):
    """The OS calls the stop sequence makes, behind one object so tests can pass a fake.

    Example::

        class FakeOps:
            def monotonic(self) -> float: return self.now
            async def sleep(self, seconds: float) -> None: self.now += seconds
            ...

        PosixExecutor(ops=FakeOps())
    """

    def monotonic(self) -> float:
        """A clock for timeouts."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Pause between polls."""
        ...

    def killpg(self, pgid: int, sig: int) -> bool:
        """Signal a process group; ``False`` if the group is empty or not ours to signal."""
        ...

    def kill(self, proc: OsProcess, sig: int) -> bool:
        """Signal one process; ``False`` if it is already gone or not ours to signal."""
        ...

    def scan(self, ref: ProcessRef) -> TreeScan:
        """Find every live process of the instance ``ref`` names."""
        ...

    def is_alive(self, proc: OsProcess) -> bool:
        """``True`` while ``proc`` (that very process) runs; a zombie counts as gone."""
        ...
