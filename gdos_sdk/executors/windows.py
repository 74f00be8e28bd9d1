"""The Windows executor: one named Job Object per instance.

Spawn
    The program is resolved against the instance's own ``PATH``/``PATHEXT``
    and the command line quoted as the Microsoft C runtime splits it. The
    process is created suspended in a new process group, assigned to the job
    ``Global\\gdos-<instance id>`` (``Local\\`` when the global namespace is
    not allowed), and only then resumed: nothing it starts can run outside the
    job. The job forbids breakaway, so every descendant stays in it.

Survive the worker
    The job is *not* ``KILL_ON_JOB_CLOSE``: a dying worker closes its handles
    and must not take the services with it. A kernel object's name lives only
    as long as some handle to it is open, so a copy of the job handle is placed
    in the service's main process; a restarted worker re-opens the job by name
    while that process lives.

Re-attach
    By pid + creation time (``GetProcessTimes``). The opened process handle
    pins the pid, so a recycled pid can never be watched by mistake.

Stop
    ``CTRL_BREAK_EVENT`` to the process group (the graceful request; console
    programs, Python included, exit on it unless they handle it), wait up to
    ``timeout`` for the whole job to empty, then ``TerminateJobObject`` kills
    every process in it at once.
    ``stop_signal`` 9 (SIGKILL) skips the graceful step. Ctrl+Break reaches only
    processes that share the worker's console; when it cannot be delivered
    there is nothing to wait for and the job is terminated straight away.

Every Win32 call goes through one injectable
:class:`~gdos_sdk.executors.winapi.WinApi` object (the real one is
:class:`gdos_sdk.executors._win32.Win32Api`), so the state logic runs with a
fake on any platform; the pure helpers live in :mod:`gdos_sdk.executors.winapi`.

Example::

    executor = WindowsExecutor()
    handle = executor.spawn(spec)
    result = await executor.stop(handle, stop_signal=signal.SIGTERM, timeout=10)
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Mapping

from gdos_sdk.errors import SpawnError
from gdos_sdk.executors.base import (
    TAG_ENV,
    ExitInfo,
    ProcessHandle,
    ProcessRef,
    SpawnSpec,
    StopResult,
)
from gdos_sdk.executors.winapi import (
    CREATE_BREAKAWAY_FROM_JOB,
    CREATE_NEW_PROCESS_GROUP,
    CREATE_SUSPENDED,
    ERROR_ACCESS_DENIED,
    TERMINATED_EXIT_CODE,
    ChildProcess,
    WinApi,
    command_line,
    exit_info_from_code,
    job_names,
    resolve_program,
    winerror,
)

__all__ = ["WindowsExecutor", "WindowsProcessHandle"]

log = logging.getLogger(__name__)

_SIGKILL = 9  # not defined in Windows' signal module; the runner may still pass it

# Exit polling period floor: waits poll rather than park a thread per instance,
# which would exhaust anyio's default 40-thread limiter on a busy node.
_STOP_POLLS = (0.02, 0.05, 0.1, 0.2)


def _same_create_time(actual: float, recorded: float) -> bool:
    # Both come from the same FILETIME (100 ns ticks) through the same
    # conversion; the tolerance only absorbs float rounding.
    return abs(actual - recorded) < 1e-3


class WindowsProcessHandle:
    """The main process of an instance, spawned by this worker or re-attached.

    Holds an open process handle, so the pid cannot be reused while it exists.

    Example::

        info = await handle.wait()
    """

    def __init__(
        self,
        ref: ProcessRef,
        process: int,
        *,
        api: WinApi,
        child: ChildProcess | None = None,
        poll_interval: float = 0.2,
    ) -> None:
        self._ref = ref
        self._process: int | None = process
        self._api = api
        self._child = child
        self._poll_interval = poll_interval
        self._exit: ExitInfo | None = None

    def __repr__(self) -> str:
        return f"<WindowsProcessHandle pid={self.pid} tag={self._ref.tag!r} child={self.is_child}>"

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
        """Whether this worker created it (Windows keeps exit codes either way)."""
        return self._child is not None

    @property
    def exit_info(self) -> ExitInfo | None:
        """How it ended, once that has been observed."""
        return self._exit

    def is_alive(self) -> bool:
        """Whether the main process still runs."""
        return not self._check_exited()

    async def wait(self) -> ExitInfo:
        """Poll until the main process exits (a cheap non-blocking check per period)."""
        # Polling, not a thread per instance: see _STOP_POLLS.
        while not self._check_exited():
            await self._api.sleep(self._poll_interval)
        assert self._exit is not None
        return self._exit

    def _check_exited(self) -> bool:
        if self._exit is not None:
            return True
        assert self._process is not None
        code = self._api.exit_code(self._process)
        if code is None:
            return False
        self._exit = exit_info_from_code(code)
        if self._child is not None:
            self._child.poll()  # lets Popen record it too (no "still running" warning)
        # Unlike a POSIX zombie, Windows keeps the exit code for any handle holder;
        # once it is recorded the handle is only a pinned pid, so let it go.
        self._api.close(self._process)
        self._process = None
        return True

    def _terminate(self, exit_code: int) -> None:
        if self._process is not None:
            self._api.terminate_process(self._process, exit_code)


class WindowsExecutor:
    """Run instances in named Job Objects; see the module docstring for the sequence.

    Parameters:
        api: the Win32 seam; the real :class:`~gdos_sdk.executors._win32.Win32Api`
            on Windows when omitted (elsewhere it must be given).
        kill_timeout: how long to wait for a terminated job to empty.
        poll_interval: exit polling period of :meth:`WindowsProcessHandle.wait`.

    Example::

        executor = WindowsExecutor()
        handle = executor.attach(saved_ref) or executor.spawn(spec)
    """

    def __init__(
        self, *, api: WinApi | None = None, kill_timeout: float = 5.0, poll_interval: float = 0.2
    ) -> None:
        if api is None:
            if sys.platform == "win32":
                from gdos_sdk.executors._win32 import Win32Api

                api = Win32Api()
            else:
                raise RuntimeError("WindowsExecutor needs Windows (or a fake api= for tests)")
        self._api: WinApi = api
        self._kill_timeout = kill_timeout
        self._poll_interval = poll_interval
        self._jobs: dict[str, int] = {}  # tag -> open job handle
        self._breakaway = True  # cleared once the worker's own job forbids it

    # --- jobs ---------------------------------------------------------------------------------

    def _job(self, tag: str, *, create: bool = False) -> int | None:
        """The instance's job handle: cached, re-opened by name, or (``create``) created."""
        job = self._jobs.get(tag)
        if job is not None:
            return job
        for name in job_names(tag):
            job = self._api.open_job(name)
            if job is not None:
                break
        if job is None and create:
            global_name, local_name = job_names(tag)
            try:
                job = self._api.create_job(global_name)
            except OSError as exc:
                if winerror(exc) != ERROR_ACCESS_DENIED:
                    raise
                # No SeCreateGlobalPrivilege: this session's namespace will do.
                job = self._api.create_job(local_name)
        if job is not None:
            self._jobs[tag] = job
        return job

    def _forget_job(self, tag: str) -> None:
        job = self._jobs.pop(tag, None)
        if job is not None:
            self._api.close(job)

    # --- spawn / attach -----------------------------------------------------------------------

    def spawn(self, spec: SpawnSpec) -> WindowsProcessHandle:
        """Start ``spec`` suspended, put it in its job, then let it run.

        Raises:
            SpawnError: program or log file unusable, or the job could not be set
                up; a process that could not be put in its job is terminated
                before it ever ran.
        """
        api = self._api
        if spec.account is not None:
            raise SpawnError(
                f"cannot start {spec.argv[0]!r} as {spec.account.name!r}: running a service"
                " as another account is not supported on Windows",
                details={"user": spec.account.name},
            )
        env = {k: v for k, v in spec.env.items() if k.upper() != TAG_ENV}
        env[TAG_ENV] = spec.tag
        program = resolve_program(spec.argv[0], cwd=spec.cwd, env=env, is_file=api.is_file)
        cmdline = command_line([program, *spec.argv[1:]])
        try:
            job = self._job(spec.tag, create=True)
        except OSError as exc:
            raise SpawnError(
                f"cannot create the job object for {spec.tag!r}: {exc.strerror}",
                details={"tag": spec.tag, "winerror": winerror(exc)},
            ) from exc
        assert job is not None
        try:
            log_fd = api.open_log(spec.log_path)
        except OSError as exc:
            raise SpawnError(
                f"cannot open log file {spec.log_path!r}: {exc.strerror}",
                details={"log_path": spec.log_path, "winerror": winerror(exc)},
            ) from exc
        try:
            child = self._start(cmdline, spec, env, log_fd)
        finally:
            api.close_fd(log_fd)  # the child has its own handle; ours would only leak
        process = api.open_process(child.pid)
        try:
            if process is None:
                raise OSError(f"process {child.pid} could not be opened")
            api.assign(job, process)
            api.share_job(job, process)
            create_time = api.create_time(process)
            api.resume(child.pid)
        except OSError as exc:
            # Never let a service run outside its job: it could not be stopped reliably.
            with contextlib.suppress(OSError):
                if process is not None:
                    api.terminate_process(process, TERMINATED_EXIT_CODE)
                    api.close(process)
                else:
                    child.kill()
                child.poll()
            raise SpawnError(
                f"cannot put {spec.argv[0]!r} into its job object: {exc.strerror or exc}",
                details={"argv0": spec.argv[0], "winerror": winerror(exc)},
            ) from exc
        ref = ProcessRef(pid=child.pid, create_time=create_time, pgid=child.pid, tag=spec.tag)
        return WindowsProcessHandle(
            ref, process, api=api, child=child, poll_interval=self._poll_interval
        )

    def _start(
        self, cmdline: str, spec: SpawnSpec, env: Mapping[str, str], log_fd: int
    ) -> ChildProcess:
        flags = CREATE_SUSPENDED | CREATE_NEW_PROCESS_GROUP
        while True:
            extra = CREATE_BREAKAWAY_FROM_JOB if self._breakaway else 0
            try:
                return self._api.start_suspended(
                    cmdline, cwd=spec.cwd, env=env, stdout_fd=log_fd, creationflags=flags | extra
                )
            except OSError as exc:
                if extra and winerror(exc) == ERROR_ACCESS_DENIED:
                    # The worker runs in a job that forbids breakaway (some service
                    # hosts do): services then nest inside it, and ending that job
                    # (e.g. ending the scheduled task) would end them too.
                    log.warning(
                        "cannot break away from the worker's job; services share its lifetime"
                    )
                    self._breakaway = False
                    continue
                where = f": {exc.filename}" if exc.filename else ""
                raise SpawnError(
                    f"cannot start {spec.argv[0]!r} in {spec.cwd!r}: {exc.strerror}{where}",
                    details={"argv0": spec.argv[0], "cwd": spec.cwd, "winerror": winerror(exc)},
                ) from exc

    def attach(self, ref: ProcessRef) -> WindowsProcessHandle | None:
        """Find the live process ``ref`` names again and re-open its job by name.

        Returns ``None`` when the pid is gone, has exited, or now belongs to a
        process with another creation time (a recycled pid).
        """
        api = self._api
        process = api.open_process(ref.pid)
        if process is None:
            return None
        try:
            same = _same_create_time(api.create_time(process), ref.create_time)
            alive = same and api.exit_code(process) is None
        except OSError:
            alive = False
        if not alive:
            api.close(process)
            return None
        try:
            self._job(ref.tag)
        except OSError as exc:  # still attachable: stop falls back to the process itself
            log.warning("instance %s: cannot re-open its job: %s", ref.tag, exc)
        return WindowsProcessHandle(ref, process, api=api, poll_interval=self._poll_interval)

    # --- stop ---------------------------------------------------------------------------------

    def _alive(self, handle: WindowsProcessHandle, job: int | None) -> list[int]:
        pids = self._api.job_pids(job) if job is not None else []
        if handle.is_alive() and handle.pid not in pids:
            pids.insert(0, handle.pid)
        return pids

    async def _wait_gone(
        self, handle: WindowsProcessHandle, job: int | None, deadline: float
    ) -> list[int]:
        """Poll until main process and job are empty or ``deadline``; return what is left."""
        api = self._api
        polls = 0
        while True:
            remaining = self._alive(handle, job)
            now = api.monotonic()
            if not remaining or now >= deadline:
                return remaining
            delay = _STOP_POLLS[min(polls, len(_STOP_POLLS) - 1)]
            polls += 1
            await api.sleep(min(delay, deadline - now))

    def _terminate(self, handle: WindowsProcessHandle, job: int | None) -> None:
        """End the job, and the main process itself only if it is not in the job."""
        api = self._api
        try:
            in_job = api.job_pids(job) if job is not None else []
            if job is not None:
                api.terminate_job(job, TERMINATED_EXIT_CODE)
            # Terminating a process the job is already ending would race its exit.
            if handle.pid not in in_job and handle.is_alive():
                handle._terminate(TERMINATED_EXIT_CODE)
        except OSError as exc:  # what is left is reported after the wait
            log.warning("instance %s: termination failed: %s", handle.ref.tag, exc)

    async def stop(
        self,
        handle: ProcessHandle,
        *,
        stop_signal: int,
        timeout: float,  # the grace period before termination, not a cancel scope
    ) -> StopResult:
        """Stop the instance's whole job.

        1. ``CTRL_BREAK_EVENT`` to the process group (unless ``stop_signal`` is 9);
        2. wait up to ``timeout`` until the main process and every process in the
           job are gone;
        3. ``TerminateJobObject`` (or ``TerminateProcess`` on the main process if
           its job is gone) and wait up to ``kill_timeout``.
        """
        if not isinstance(handle, WindowsProcessHandle):
            raise TypeError(f"not a handle of this executor: {handle!r}")
        api = self._api
        tag = handle.ref.tag
        started = api.monotonic()
        job = self._job(tag)
        remaining = self._alive(handle, job)
        if remaining and stop_signal != _SIGKILL and api.ctrl_break(handle.ref.pgid):
            remaining = await self._wait_gone(handle, job, started + timeout)
        killed = list(remaining)
        if remaining:
            self._terminate(handle, job)
            survivors = await self._wait_gone(handle, job, api.monotonic() + self._kill_timeout)
            if survivors:
                log.warning(
                    "instance %s: pids %s survived termination for %.1fs",
                    tag,
                    survivors,
                    self._kill_timeout,
                )
        if job is not None and not api.job_pids(job):
            self._forget_job(tag)
        return StopResult(
            exit=None if handle.is_alive() else await handle.wait(),
            forced=bool(killed),
            killed_pids=killed,
            duration=api.monotonic() - started,
        )

    # --- tags ---------------------------------------------------------------------------------

    def kill_tag(self, tag: str) -> list[int]:
        """Terminate the instance's job and every other process carrying ``tag``.

        Does not wait; call :meth:`find_tag` later to confirm they are gone.
        """
        killed: list[int] = []
        job = self._job(tag)
        if job is not None:
            killed = self._api.job_pids(job)
            if killed:
                try:
                    self._api.terminate_job(job, TERMINATED_EXIT_CODE)
                except OSError as exc:
                    log.warning("instance %s: cannot terminate its job: %s", tag, exc)
                    killed = []
        for pid in self._api.kill_tagged(tag, TERMINATED_EXIT_CODE):
            if pid not in killed:
                killed.append(pid)
        return killed

    def find_tag(self, tag: str) -> list[int]:
        """The pids in the instance's job plus any live process carrying ``tag``."""
        job = self._job(tag)
        found = self._api.job_pids(job) if job is not None else []
        found += [pid for pid in self._api.tagged_pids(tag) if pid not in found]
        return found
