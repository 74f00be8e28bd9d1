"""The POSIX executor: sessions, process groups, an environment tag and pidfds.

Each instance starts in a new session (so its process group id is its pid),
writes its console straight to a log file opened ``O_APPEND`` (the worker is
not in the output path, so a dead worker never blocks a service), and carries
``GDOS_INSTANCE_ID=<tag>`` in its environment.

Stopping signals the process group, every descendant of the main process and
every process carrying the tag, and waits until *all* of them are gone, not
just the main process; after ``timeout`` it SIGKILLs the rest. Processes are
addressed as :class:`psutil.Process` objects, which refuse to signal a
recycled pid.

Exits are watched with a pidfd (Linux 5.3+) registered on the event loop, so a
waiting instance costs no polling; elsewhere a 0.2 s poll takes over.

Example::

    executor = PosixExecutor()
    handle = executor.spawn(spec)
    result = await executor.stop(handle, stop_signal=signal.SIGTERM, timeout=10)
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import anyio
import psutil

from gdos_sdk.errors import SpawnError
from gdos_sdk.executors.accounts import switch_arguments
from gdos_sdk.executors.base import (
    TAG_ENV,
    ExitInfo,
    OsOps,
    OsProcess,
    ProcessHandle,
    ProcessRef,
    SpawnSpec,
    StopResult,
    TreeScan,
    start_mark,
)

# POSIX only: default_executor() never imports this module on Windows, and the
# assert tells mypy --platform win32 to skip the rest of the module.
assert sys.platform != "win32", "gdos_sdk.executors.posix is for POSIX systems"

__all__ = ["PosixExecutor", "PosixOps", "PosixProcessHandle", "same_create_time"]

log = logging.getLogger(__name__)

_ProcessCallback = Callable[[OsProcess], None]

_HAVE_PIDFD = hasattr(os, "pidfd_open")
# Poll intervals while waiting for a tree to die: quick first looks catch the
# common fast exit, then back off so a slow shutdown costs few /proc scans.
_STOP_POLLS = (0.02, 0.05, 0.1, 0.2)


def same_create_time(actual: float, recorded: float) -> bool:
    """Whether two psutil create times name the same process start.

    psutil adds the boot time from ``/proc/stat`` (whole seconds, recomputed
    from the wall clock) to a tick count that never changes, so the same
    process can read one second apart across a clock adjustment. A recycled
    pid almost never starts exactly a whole second apart at tick resolution.

    Example::

        same_create_time(1700000000.25, 1700000001.25)  # True: a boot-time step
    """
    diff = abs(actual - recorded)
    return diff < 0.005 or abs(diff - 1.0) < 0.005


def _is_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _verified(ref: ProcessRef) -> psutil.Process | None:
    """The process ``ref`` names (zombie included), or ``None`` if the pid is gone or reused.

    The kernel's start mark decides where the ref has one and it can be read now (a
    wall-clock step cannot move it); else the create time, within a boot-time step.
    """
    try:
        proc = psutil.Process(ref.pid)
        if ref.start_mark is not None and (mark := start_mark(ref.pid)) is not None:
            return proc if mark == ref.start_mark else None
        if same_create_time(proc.create_time(), ref.create_time):
            return proc
    except psutil.Error:
        pass
    return None


class _Entry(NamedTuple):
    """One live process seen by a scan."""

    pid: int
    ppid: int
    pgid: int
    tagged: bool


def _read_file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _linux_entries(tag: str) -> Iterator[_Entry]:
    # Raw /proc reads: two small files per process instead of a psutil object
    # and five calls, so a scan of a busy host stays a few milliseconds.
    me, root = os.getpid(), os.getuid() == 0
    needle = f"\0{TAG_ENV}={tag}\0".encode()
    for pid in psutil.pids():
        if pid == me:
            continue
        try:
            stat = _read_file(f"/proc/{pid}/stat")
            # After the last ")" (the name may hold one): state, ppid, pgrp (proc(5) 3-5).
            state, ppid, pgid = stat[stat.rfind(b")") + 2 :].split(maxsplit=3)[:3]
            if state in (b"Z", b"X"):
                continue
            try:
                environ = _read_file(f"/proc/{pid}/environ")
            except PermissionError:
                if not root:
                    continue  # another user's process: not ours to signal
                environ = b""
        except (OSError, ValueError):
            continue  # exited meanwhile
        yield _Entry(pid, int(ppid), int(pgid), needle in b"\0" + environ + b"\0")


def _psutil_entries(tag: str) -> Iterator[_Entry]:
    me, uid = os.getpid(), os.getuid()
    for proc in psutil.process_iter():
        if proc.pid in (0, me):
            continue
        try:
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if uid != 0 and proc.uids().real != uid:
                    continue
                ppid = proc.ppid()
            pgid = os.getpgid(proc.pid)
            try:
                tagged = proc.environ().get(TAG_ENV) == tag
            except psutil.AccessDenied:
                tagged = False
        except (psutil.Error, OSError):
            continue
        yield _Entry(proc.pid, ppid, pgid, tagged)


_entries = _linux_entries if sys.platform.startswith("linux") else _psutil_entries


def _processes(pids: Iterable[int]) -> list[psutil.Process]:
    """psutil objects for ``pids``, skipping the ones that exited since the scan.

    Created right after the scan saw each pid alive, each object pins that
    process (pid + create time): signals through it never reach a later holder
    of the pid.
    """
    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(pid))
        except psutil.Error:
            continue
    return found


def _tagged(tag: str) -> list[psutil.Process]:
    """Live processes whose environment carries ``GDOS_INSTANCE_ID=tag``."""
    return _processes(entry.pid for entry in _entries(tag) if entry.tagged)


class PosixOps:
    """The real OS calls behind :class:`PosixExecutor` (see :class:`~gdos_sdk.executors.OsOps`).

    Example::

        PosixExecutor(ops=PosixOps())
    """

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``anyio.sleep()``."""
        await anyio.sleep(seconds)

    def killpg(self, pgid: int, sig: int) -> bool:
        """``os.killpg``; ``False`` when the group is empty or not ours."""
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def kill(self, proc: OsProcess, sig: int) -> bool:
        """Signal ``proc``; psutil refuses a recycled pid (``NoSuchProcess``)."""
        try:
            proc.send_signal(sig)
        except (psutil.NoSuchProcess, ProcessLookupError):
            return False
        except (psutil.AccessDenied, PermissionError):
            log.warning("not allowed to send signal %d to pid %d", sig, proc.pid)
            return False
        return True

    def is_alive(self, proc: OsProcess) -> bool:
        """``True`` while the process runs (pid + create time); zombies are gone."""
        if not isinstance(proc, psutil.Process):
            return False
        try:
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def scan(self, ref: ProcessRef) -> TreeScan:
        """Main process + descendants + tagged processes + group members, in one /proc pass."""
        main = _verified(ref)
        entries = list(_entries(ref.tag))
        children: dict[int, list[int]] = {}
        for entry in entries:
            children.setdefault(entry.ppid, []).append(entry.pid)
        found: dict[int, None] = {}  # an ordered set of pids
        if main is not None:
            # Walk the tree only from a verified main process: a recycled pid's
            # children belong to someone else. A zombie main has no children left.
            stack = [main.pid]
            while stack:
                for child in children.get(stack.pop(), []):
                    if child not in found:
                        found[child] = None
                        stack.append(child)
        found.update((entry.pid, None) for entry in entries if entry.tagged)
        # The group id cannot be recycled while one of our processes holds it:
        # the main process (even as an unreaped zombie) or a member we know is ours.
        grouped = {entry.pid for entry in entries if entry.pgid == ref.pgid}
        group_held = main is not None or not grouped.isdisjoint(found)
        if group_held:
            # Group members without tag or parent link (env cleared, orphaned) are ours too.
            found.update(dict.fromkeys(sorted(grouped)))
        else:
            grouped = set()
        procs = _processes(pid for pid in found if main is None or pid != main.pid)
        if main is not None and not _is_zombie(main):
            procs.insert(0, main)  # the verified object, not a fresh lookup by bare pid
        return TreeScan(
            processes=tuple(procs), group_held=group_held, grouped_pids=frozenset(grouped)
        )


class PosixProcessHandle:
    """The main process of an instance, spawned by us or re-attached.

    Three cases: a :class:`subprocess.Popen` child (exit code known, reaped by
    ``popen``), an attached process that happens to be our child (reaped with
    ``waitpid``), and an attached non-child (its exit code went to init).

    Example::

        handle = executor.spawn(spec)
        info = await handle.wait()
    """

    def __init__(
        self,
        ref: ProcessRef,
        proc: psutil.Process,
        *,
        popen: subprocess.Popen[bytes] | None = None,
        reap: bool = False,
        poll_interval: float = 0.2,
    ) -> None:
        self._ref = ref
        self._proc = proc
        self._popen = popen
        self._reap = reap
        self._poll_interval = poll_interval
        self._exit: ExitInfo | None = None

    def __repr__(self) -> str:
        return f"<PosixProcessHandle pid={self.pid} tag={self._ref.tag!r} child={self.is_child}>"

    @property
    def ref(self) -> ProcessRef:
        """The persistable identity of the main process."""
        return self._ref

    @property
    def pid(self) -> int:
        """The main process id."""
        return self._ref.pid

    @property
    def is_child(self) -> bool:
        """Whether we are its parent (we reap it and see its exit code)."""
        return self._popen is not None or self._reap

    @property
    def exit_info(self) -> ExitInfo | None:
        """How it ended, once that has been observed."""
        return self._exit

    def is_alive(self) -> bool:
        """Whether it still runs; reaps it if it is our exited child."""
        return not self._check_exited()

    async def wait(self) -> ExitInfo:
        """Wait for the main process to exit; reap it when it is our child.

        Several tasks may wait at once; each watches its own pidfd.
        """
        if self._exit is None and not await self._wait_pidfd():
            # No fd to watch: polling is the fallback, there is no event to await.
            while not self._check_exited():  # noqa: ASYNC110
                await anyio.sleep(self._poll_interval)
        assert self._exit is not None
        return self._exit

    async def _wait_pidfd(self) -> bool:
        """Wait on a pidfd; ``False`` when pidfds or fd watching are unavailable."""
        if not _HAVE_PIDFD:
            return False
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            self._check_exited()
            return self._exit is not None
        except OSError:
            return False  # ENOSYS on old kernels, EPERM under some seccomp profiles
        try:
            # Checked after opening: the fd pins the process, so a pid recycled
            # before pidfd_open is caught here rather than watched by mistake.
            if not self._check_exited():
                try:
                    await anyio.wait_readable(fd)
                except NotImplementedError:
                    return False  # an event loop that cannot watch fds
        finally:
            os.close(fd)
        # Readable means exited; a child can lag a moment before waitpid sees it.
        while not self._check_exited():  # noqa: ASYNC110
            await anyio.sleep(0.01)
        return True

    def _check_exited(self) -> bool:
        """Non-blocking exit check that records (and for a child reaps) the exit."""
        if self._exit is not None:
            return True
        if self._popen is not None:
            returncode = self._popen.poll()
            if returncode is not None:
                self._exit = ExitInfo.from_returncode(returncode)
        elif self._reap:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # someone else reaped it
                self._exit = ExitInfo.unknown()
            else:
                if pid:
                    self._exit = ExitInfo.from_wait_status(status)
        elif not self._proc.is_running() or _is_zombie(self._proc):
            self._exit = ExitInfo.unknown()
        return self._exit is not None


class PosixExecutor:
    """Run instances as POSIX sessions; see the module docstring for the stop sequence.

    Parameters:
        ops: the OS seam (:class:`PosixOps` unless a test passes a fake).
        kill_timeout: how long to wait for SIGKILLed processes to disappear.
        poll_interval: exit polling period where pidfds are unavailable.

    Example::

        executor = PosixExecutor()
        handle = executor.spawn(spec)
        handle = executor.attach(saved_ref)
    """

    def __init__(
        self, *, ops: OsOps | None = None, kill_timeout: float = 5.0, poll_interval: float = 0.2
    ) -> None:
        self._ops: OsOps = ops if ops is not None else PosixOps()
        self._kill_timeout = kill_timeout
        self._poll_interval = poll_interval

    def spawn(self, spec: SpawnSpec) -> PosixProcessHandle:
        """Start ``spec`` in a new session with its console appended to ``spec.log_path``.

        Raises:
            SpawnError: the log file, the working directory or the program is
                missing or not usable; the message carries the OS's words.
        """
        env = {**spec.env, TAG_ENV: spec.tag}
        switch = switch_arguments(spec.account, spec.argv[0])
        try:
            # O_NOFOLLOW: a service that may write to the log's folder must not be able
            # to point the worker's (root's) append at another file through a symlink.
            log_fd = os.open(
                spec.log_path,
                os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                0o600,
            )
        except OSError as exc:
            raise SpawnError(
                f"cannot open log file {spec.log_path!r}: {exc.strerror}",
                details={"log_path": spec.log_path, "errno": exc.errno},
            ) from exc
        try:
            popen = subprocess.Popen(
                spec.argv,
                cwd=spec.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                **switch,
            )
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise SpawnError(
                f"cannot start {spec.argv[0]!r} in {spec.cwd!r}: {exc.strerror}{where}",
                details={"argv0": spec.argv[0], "cwd": spec.cwd, "errno": exc.errno},
            ) from exc
        finally:
            os.close(log_fd)  # the child has its own copy; ours would only leak
        try:
            # Unreaped, the child keeps its /proc entry even if it already exited.
            proc = psutil.Process(popen.pid)
            create_time = proc.create_time()
        except psutil.Error as exc:  # only if something else reaped our child
            popen.poll()
            raise SpawnError(
                f"{spec.argv[0]!r} started but vanished before it could be identified",
                details={"argv0": spec.argv[0], "pid": popen.pid},
            ) from exc
        ref = ProcessRef(
            pid=popen.pid,
            create_time=create_time,
            pgid=popen.pid,
            tag=spec.tag,
            start_mark=start_mark(popen.pid),
        )
        return PosixProcessHandle(ref, proc, popen=popen, poll_interval=self._poll_interval)

    def attach(self, ref: ProcessRef) -> PosixProcessHandle | None:
        """Find the live process ``ref`` names again (e.g. after a worker restart).

        Returns ``None`` when the pid is gone, a zombie, or reused by another
        process (create time differs, or it carries another instance's tag).
        """
        proc = _verified(ref)
        if proc is None or _is_zombie(proc):
            return None
        try:
            tag = proc.environ().get(TAG_ENV)
            if tag is not None and tag != ref.tag:
                return None
        except psutil.AccessDenied:
            pass  # not readable: the create time alone decides
        except psutil.Error:
            return None
        try:
            ours = proc.ppid() == os.getpid()
        except psutil.Error:
            return None
        return PosixProcessHandle(ref, proc, reap=ours, poll_interval=self._poll_interval)

    async def stop(
        self,
        handle: ProcessHandle,
        *,
        stop_signal: int,
        timeout: float,  # the grace period before SIGKILL, not a cancel scope
    ) -> StopResult:
        """Stop the instance's whole process tree, main process last to be reaped.

        1. ``stop_signal`` to the process group and to every descendant and
           tagged process outside it (each process gets it once);
        2. wait up to ``timeout`` until all of them are gone (processes appearing
           meanwhile get ``stop_signal`` too);
        3. SIGKILL the group and everything left, wait up to ``kill_timeout``;
        4. reap the main process if it is our child.

        Safe when the main process has already exited and descendants remain.
        """
        ops = self._ops
        ref = handle.ref
        started = ops.monotonic()

        scan = ops.scan(ref)
        group_done = scan.group_held and ops.killpg(ref.pgid, stop_signal)
        signalled: set[OsProcess] = set()
        for proc in scan.processes:
            if not (group_done and proc.pid in scan.grouped_pids):
                ops.kill(proc, stop_signal)
            signalled.add(proc)

        remaining = await self._wait_gone(
            ref,
            started + timeout,
            lambda proc: _signal_new(ops, proc, stop_signal, signalled),
            seen=signalled,
        )
        killed: dict[int, None] = {}
        if remaining:
            scan = ops.scan(ref)
            if scan.group_held:
                ops.killpg(ref.pgid, signal.SIGKILL)
            for proc in scan.processes:
                ops.kill(proc, signal.SIGKILL)
                killed[proc.pid] = None

            def kill_new(proc: OsProcess) -> None:
                ops.kill(proc, signal.SIGKILL)
                killed[proc.pid] = None

            survivors = await self._wait_gone(
                ref, ops.monotonic() + self._kill_timeout, kill_new, seen=signalled
            )
            if survivors:
                log.warning(
                    "instance %s: pids %s survived SIGKILL for %.1fs (uninterruptible?)",
                    ref.tag,
                    [proc.pid for proc in survivors],
                    self._kill_timeout,
                )
        exit_info = None if handle.is_alive() else await handle.wait()
        return StopResult(
            exit=exit_info,
            forced=bool(remaining),
            killed_pids=list(killed),
            duration=ops.monotonic() - started,
        )

    async def _wait_gone(
        self,
        ref: ProcessRef,
        deadline: float,
        on_process: _ProcessCallback,
        *,
        seen: set[OsProcess],
    ) -> tuple[OsProcess, ...]:
        """Rescan until the instance has no live process or ``deadline``; return what is left.

        ``on_process`` sees every live process on each scan (to signal newcomers). A process
        in ``seen`` (signalled earlier) counts until it is really gone even when a scan
        misses it: a process in the middle of exiting has already dropped its environment
        (and so its tag) but is not yet a zombie.
        """
        ops = self._ops
        polls = 0
        while True:
            scanned = ops.scan(ref).processes
            lingering = tuple(p for p in seen if p not in scanned and ops.is_alive(p))
            remaining = scanned + lingering
            now = ops.monotonic()
            if not remaining or now >= deadline:
                return remaining
            for proc in remaining:
                on_process(proc)
            delay = _STOP_POLLS[min(polls, len(_STOP_POLLS) - 1)]
            polls += 1
            await ops.sleep(min(delay, deadline - now))

    def kill_tag(self, tag: str) -> list[int]:
        """SIGKILL every live process carrying ``tag`` (destroy, cleanup of strays).

        Does not wait; call :meth:`find_tag` later to confirm they are gone.
        """
        killed = []
        for proc in _tagged(tag):
            if self._ops.kill(proc, signal.SIGKILL):
                killed.append(proc.pid)
        return killed

    def find_tag(self, tag: str) -> list[int]:
        """The pids of live (non-zombie) processes carrying ``tag``."""
        return [proc.pid for proc in _tagged(tag)]


def _signal_new(ops: OsOps, proc: OsProcess, sig: int, signalled: set[OsProcess]) -> None:
    if proc not in signalled:
        ops.kill(proc, sig)
        signalled.add(proc)
