"""WindowsExecutor's logic against an in-memory fake of the Win32 calls.

The real Win32 calls (:mod:`gdos_sdk.executors._win32`, ctypes on kernel32)
cannot run on Linux. They are guarded by ``mypy --platform win32``
(``nox -s typecheck_windows``) and by this fake, which models processes, named
job objects, handles and a clock: every test here runs (none is skipped) and
checks what the executor decides and in which order it calls Windows, not
Windows itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import anyio.lowlevel
import attrs
import pytest

from gdos_sdk.errors import SpawnError
from gdos_sdk.executors import TAG_ENV, Executor, ProcessHandle, ProcessRef, SpawnSpec
from gdos_sdk.executors.winapi import (
    CREATE_BREAKAWAY_FROM_JOB,
    CREATE_NEW_PROCESS_GROUP,
    CREATE_SUSPENDED,
    TERMINATED_EXIT_CODE,
    command_line,
    exit_info_from_code,
    job_names,
    resolve_program,
)
from gdos_sdk.executors.windows import WindowsExecutor, WindowsProcessHandle

CTRL_EXIT = 0xC000013A
PYTHON = "C:\\Py\\python.exe"


def denied(what: str) -> OSError:
    exc = OSError(13, f"{what}: Access is denied")
    exc.winerror = 5  # type: ignore[attr-defined]  # set by Windows' OSError only
    return exc


@attrs.define
class FakeProc:
    pid: int
    create_time: float
    env: dict[str, str]
    group: int
    code: int | None = None
    suspended: bool = False
    on_break: float | None = None  # seconds until it exits after Ctrl+Break; None = ignores
    jobs: set[int] = attrs.Factory(set)


@attrs.define
class FakeChild:
    """What start_suspended returns (a Popen on Windows)."""

    api: FakeWinApi
    pid: int
    polled: int = 0

    def poll(self) -> int | None:
        self.polled += 1
        return self.api.procs[self.pid].code

    def kill(self) -> None:
        self.api.calls.append(("child.kill", self.pid))
        self.api.exit(self.pid, 1)


class FakeWinApi:
    """Processes, named jobs and handles in memory, with a clock that sleeps advance."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.calls: list[tuple[object, ...]] = []
        self.procs: dict[int, FakeProc] = {}
        self.job_names: dict[str, int] = {}  # name -> job id
        self.handles: dict[int, tuple[str, int]] = {}  # handle -> ("process"|"job", id)
        self.files = {PYTHON}
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.console = True
        self.deny_global = False
        self.deny_breakaway = False
        self.fail_assign = False
        self.bad_logs: set[str] = set()
        self._next = 100

    # helpers for tests ----------------------------------------------------------------------

    def _id(self) -> int:
        self._next += 4
        return self._next

    def _handle(self, kind: str, target: int) -> int:
        handle = self._id() + 10000
        self.handles[handle] = (kind, target)
        return handle

    def exit(self, pid: int, code: int) -> None:
        if self.procs[pid].code is None:
            self.procs[pid].code = code

    def child_of(self, parent: int, *, on_break: float | None = None) -> int:
        """A descendant: inherits the environment, the group and the jobs."""
        p = self.procs[parent]
        pid = self._id()
        self.procs[pid] = FakeProc(
            pid, self.now, dict(p.env), p.group, jobs=set(p.jobs), on_break=on_break
        )
        return pid

    def stray(self, tag: str) -> int:
        """A tagged process outside any job (e.g. left over from before a reboot of GDOS)."""
        pid = self._id()
        self.procs[pid] = FakeProc(pid, self.now, {TAG_ENV: tag}, pid)
        return pid

    def names(self, *calls: str) -> list[tuple[object, ...]]:
        return [c for c in self.calls if c[0] in calls]

    def open_handles(self) -> list[tuple[str, int]]:
        return list(self.handles.values())

    # WinApi ---------------------------------------------------------------------------------

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.calls.append(("sleep", seconds))
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, fire in due:
            fire()
        await anyio.lowlevel.checkpoint()

    def is_file(self, path: str) -> bool:
        return path.lower() in {f.lower() for f in self.files}  # NTFS ignores case

    def open_log(self, path: str) -> int:
        self.calls.append(("open_log", path))
        if path in self.bad_logs:
            raise denied(path)
        return 7

    def close_fd(self, fd: int) -> None:
        self.calls.append(("close_fd", fd))

    def start_suspended(
        self,
        command_line: str,
        *,
        cwd: str,
        env: Mapping[str, str],
        stdout_fd: int,
        creationflags: int,
    ) -> FakeChild:
        self.calls.append(("start_suspended", command_line, creationflags))
        if self.deny_breakaway and creationflags & CREATE_BREAKAWAY_FROM_JOB:
            raise denied("CreateProcess")
        pid = self._id()
        self.procs[pid] = FakeProc(
            pid, self.now + 0.1234567, dict(env), pid, suspended=True, on_break=1.0
        )
        return FakeChild(self, pid)

    def resume(self, pid: int) -> None:
        self.calls.append(("resume", pid))
        self.procs[pid].suspended = False

    def create_job(self, name: str) -> int:
        self.calls.append(("create_job", name))
        if self.deny_global and name.startswith("Global\\"):
            raise denied("CreateJobObjectW")
        job = self.job_names.setdefault(name, self._id())
        return self._handle("job", job)

    def open_job(self, name: str) -> int | None:
        self.calls.append(("open_job", name))
        job = self.job_names.get(name)
        return None if job is None else self._handle("job", job)

    def _job(self, handle: int) -> int:
        kind, job = self.handles[handle]
        assert kind == "job", "a process handle used as a job"
        return job

    def _pid(self, handle: int) -> int:
        kind, pid = self.handles[handle]
        assert kind == "process", "a job handle used as a process"
        return pid

    def assign(self, job: int, process: int) -> None:
        self.calls.append(("assign", self._job(job), self._pid(process)))
        if self.fail_assign:
            raise denied("AssignProcessToJobObject")
        self.procs[self._pid(process)].jobs.add(self._job(job))

    def share_job(self, job: int, process: int) -> None:
        self.calls.append(("share_job", self._job(job), self._pid(process)))

    def job_pids(self, job: int) -> list[int]:
        jid = self._job(job)
        return [p.pid for p in self.procs.values() if jid in p.jobs and p.code is None]

    def terminate_job(self, job: int, exit_code: int) -> None:
        self.calls.append(("terminate_job", self._job(job), exit_code))
        for pid in self.job_pids(job):
            self.exit(pid, exit_code)

    def open_process(self, pid: int) -> int | None:
        self.calls.append(("open_process", pid))
        return self._handle("process", pid) if pid in self.procs else None

    def create_time(self, process: int) -> float:
        return self.procs[self._pid(process)].create_time

    def exit_code(self, process: int) -> int | None:
        return self.procs[self._pid(process)].code

    def terminate_process(self, process: int, exit_code: int) -> None:
        self.calls.append(("terminate_process", self._pid(process), exit_code))
        self.exit(self._pid(process), exit_code)

    def ctrl_break(self, pgid: int) -> bool:
        self.calls.append(("ctrl_break", pgid))
        if not self.console:
            return False
        for proc in self.procs.values():
            if proc.group == pgid and proc.code is None and proc.on_break is not None:
                pid = proc.pid
                self.timers.append(
                    (self.now + proc.on_break, lambda pid=pid: self.exit(pid, CTRL_EXIT))
                )
        return True

    def close(self, handle: int) -> None:
        self.calls.append(("close", self.handles[handle][0]))
        del self.handles[handle]

    def tagged_pids(self, tag: str) -> list[int]:
        return [p.pid for p in self.procs.values() if p.code is None and p.env.get(TAG_ENV) == tag]

    def kill_tagged(self, tag: str, exit_code: int) -> list[int]:
        pids = self.tagged_pids(tag)
        for pid in pids:
            self.exit(pid, exit_code)
        return pids


@pytest.fixture
def api() -> FakeWinApi:
    return FakeWinApi()


def make_spec(tag: str = "i-1", argv0: str = "python") -> SpawnSpec:
    return SpawnSpec(
        argv=[argv0, "app.py", "--name", "my service"],
        cwd="C:\\gdos\\instances\\i-1\\app",
        env={"PATH": "C:\\Windows;C:\\Py", "PATHEXT": ".COM;.EXE", "gdos_instance_id": "x"},
        log_path="C:\\gdos\\instances\\i-1\\logs\\console.log",
        tag=tag,
    )


# --- pure parts -----------------------------------------------------------------------------


def test_job_names() -> None:
    assert job_names("i-42") == ("Global\\gdos-i-42", "Local\\gdos-i-42")
    assert job_names("a\\b") == ("Global\\gdos-a_b", "Local\\gdos-a_b")  # no "\" in a name


def test_command_line_quotes_as_the_c_runtime_splits() -> None:
    assert (
        command_line(["C:\\Program Files\\app.exe", "a b", 'say "hi"', "", "C:\\dir\\"])
        == '"C:\\Program Files\\app.exe" "a b" "say \\"hi\\"" "" C:\\dir\\'
    )


def test_resolve_program() -> None:
    files = {"C:\\Py\\python.EXE", "C:\\app\\bin\\tool.cmd", "C:\\app\\run.bat"}
    env = {"Path": 'C:\\Windows;"C:\\Py"', "PATHEXT": ".EXE;.CMD"}

    def find(path: str) -> bool:
        return path.lower() in {f.lower() for f in files}  # NTFS ignores case

    # Bare names: the instance's PATH (case-insensitive name, quoted entries), PATHEXT tried.
    assert resolve_program("python", cwd="C:\\app", env=env, is_file=find) == "C:\\Py\\python.EXE"
    # A directory part: relative to the instance's directory, not the worker's.
    assert resolve_program("bin\\tool", cwd="C:\\app", env=env, is_file=find) == (
        "C:\\app\\bin\\tool.CMD"  # as PATHEXT spells it; Windows does not mind
    )
    assert resolve_program(".\\run.bat", cwd="C:\\app", env=env, is_file=find) == (
        "C:\\app\\run.bat"
    )
    assert resolve_program("C:\\Py\\python.EXE", cwd="C:\\app", env=env, is_file=find) == (
        "C:\\Py\\python.EXE"
    )
    with pytest.raises(SpawnError, match="not found on the instance's PATH"):
        resolve_program("java", cwd="C:\\app", env=env, is_file=find)
    with pytest.raises(SpawnError, match=r"not found in C:\\app\\bin"):
        resolve_program("bin\\nope.exe", cwd="C:\\app", env=env, is_file=find)


def test_exit_info_from_code() -> None:
    assert exit_info_from_code(0).reason == "exited with code 0"
    assert exit_info_from_code(3).code == 3
    killed = exit_info_from_code(TERMINATED_EXIT_CODE)
    assert (killed.code, killed.signal) == (None, None)
    assert "terminated" in killed.reason
    assert exit_info_from_code(CTRL_EXIT).reason == "stopped by Ctrl+Break (0xC000013A)"
    crash = exit_info_from_code(0xC0000005)
    assert (crash.code, crash.reason) == (0xC0000005, "crashed: access violation (0xC0000005)")
    assert exit_info_from_code(0xE0000001).reason == "exited with code 0xE0000001"


def test_exported_names_exist() -> None:
    from gdos_sdk.executors import winapi, windows

    for module in (winapi, windows):
        assert len(set(module.__all__)) == len(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), name


def test_needs_an_api_off_windows() -> None:
    with pytest.raises(RuntimeError, match="needs Windows"):
        WindowsExecutor()


def test_satisfies_the_executor_protocol(api: FakeWinApi) -> None:
    executor = WindowsExecutor(api=api)
    assert isinstance(executor, Executor)
    assert isinstance(executor.spawn(make_spec()), ProcessHandle)


# --- spawn ----------------------------------------------------------------------------------


def test_spawn_runs_nothing_before_the_job_holds_it(api: FakeWinApi) -> None:
    handle = WindowsExecutor(api=api).spawn(make_spec())
    steps = [
        c[0]
        for c in api.calls
        if c[0] in {"create_job", "start_suspended", "assign", "share_job", "resume"}
    ]
    assert steps == ["create_job", "start_suspended", "assign", "share_job", "resume"]
    (_, cmdline, flags) = api.names("start_suspended")[0]
    assert cmdline == 'C:\\Py\\python.EXE app.py --name "my service"'
    assert flags == CREATE_SUSPENDED | CREATE_NEW_PROCESS_GROUP | CREATE_BREAKAWAY_FROM_JOB
    assert api.names("create_job") == [("create_job", "Global\\gdos-i-1")]
    assert api.names("close_fd") == [("close_fd", 7)]  # the worker keeps no log handle

    proc = api.procs[handle.pid]
    assert not proc.suspended and proc.jobs
    # The tag replaces any differently-cased copy: Windows names are case-insensitive.
    assert proc.env[TAG_ENV] == "i-1" and "gdos_instance_id" not in proc.env
    assert handle.ref == ProcessRef(
        pid=handle.pid, create_time=proc.create_time, pgid=handle.pid, tag="i-1"
    )
    assert handle.is_child and handle.is_alive()


def test_spawn_refuses_another_account_before_touching_windows(api: FakeWinApi) -> None:
    """Switching accounts needs the account's password on Windows: refused, nothing started."""
    from gdos_sdk.executors.accounts import Account

    spec = attrs.evolve(make_spec(), account=Account(name="svc", uid=1001, gid=1001))
    with pytest.raises(SpawnError, match="not supported on Windows"):
        WindowsExecutor(api=api).spawn(spec)
    assert api.calls == []


def test_spawn_falls_back_to_the_local_namespace(api: FakeWinApi) -> None:
    api.deny_global = True
    WindowsExecutor(api=api).spawn(make_spec())
    assert api.names("create_job") == [
        ("create_job", "Global\\gdos-i-1"),
        ("create_job", "Local\\gdos-i-1"),
    ]


def test_spawn_without_breakaway_when_the_workers_job_forbids_it(
    api: FakeWinApi, caplog: pytest.LogCaptureFixture
) -> None:
    api.deny_breakaway = True
    executor = WindowsExecutor(api=api)
    with caplog.at_level(logging.WARNING):
        executor.spawn(make_spec())
        executor.spawn(make_spec(tag="i-2"))
    flags = [c[2] for c in api.names("start_suspended")]
    base = CREATE_SUSPENDED | CREATE_NEW_PROCESS_GROUP
    assert flags == [base | CREATE_BREAKAWAY_FROM_JOB, base, base]  # learnt once
    assert sum("break away" in r.message for r in caplog.records) == 1


def test_spawn_that_cannot_join_its_job_never_runs(api: FakeWinApi) -> None:
    api.fail_assign = True
    with pytest.raises(SpawnError, match="job object"):
        WindowsExecutor(api=api).spawn(make_spec())
    (proc,) = api.procs.values()
    assert proc.suspended and proc.code == TERMINATED_EXIT_CODE
    assert not api.names("resume")
    assert [kind for kind, _ in api.open_handles()] == ["job"]  # process handle closed


def test_spawn_errors_name_the_cause(api: FakeWinApi) -> None:
    executor = WindowsExecutor(api=api)
    with pytest.raises(SpawnError, match="not found"):
        executor.spawn(make_spec(argv0="java"))
    spec = make_spec()
    api.bad_logs.add(spec.log_path)
    with pytest.raises(SpawnError, match="cannot open log file"):
        executor.spawn(spec)
    assert not api.procs


# --- wait / attach --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_wait_reports_the_exit_and_releases_the_handle(api: FakeWinApi) -> None:
    handle = WindowsExecutor(api=api, poll_interval=0.5).spawn(make_spec())
    api.timers.append((api.now + 2.0, lambda: api.exit(handle.pid, 3)))
    info = await handle.wait()
    assert (info.code, info.reason) == (3, "exited with code 3")
    assert not handle.is_alive()
    assert isinstance(handle, WindowsProcessHandle) and handle.exit_info == info
    assert ("process", handle.pid) not in api.open_handles()


def test_attach_checks_creation_time_and_reopens_the_job(api: FakeWinApi) -> None:
    ref = WindowsExecutor(api=api).spawn(make_spec()).ref
    fresh = WindowsExecutor(api=api)  # a restarted worker: nothing cached
    api.calls.clear()
    handle = fresh.attach(ref)
    assert handle is not None and handle.pid == ref.pid and not handle.is_child
    assert api.names("open_job") == [("open_job", "Global\\gdos-i-1")]

    held = api.open_handles()  # the spawn's and the attach's process handles, the jobs
    assert fresh.attach(attrs.evolve(ref, create_time=ref.create_time + 5)) is None  # reused pid
    assert fresh.attach(attrs.evolve(ref, pid=4242)) is None  # gone
    api.exit(ref.pid, 0)
    assert fresh.attach(ref) is None  # exited, only the handle kept it
    assert api.open_handles() == held  # refused attaches close what they opened


# --- stop -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_graceful_stop(api: FakeWinApi) -> None:
    executor = WindowsExecutor(api=api)
    handle = executor.spawn(make_spec())
    child = api.child_of(handle.pid, on_break=0.5)
    api.calls.clear()
    result = await executor.stop(handle, stop_signal=15, timeout=10)
    assert api.names("ctrl_break") == [("ctrl_break", handle.pid)]
    assert not api.names("terminate_job", "terminate_process")
    assert not result.forced and result.killed_pids == []
    assert result.exit is not None and result.exit.reason.startswith("stopped by Ctrl+Break")
    assert 1.0 <= result.duration < 1.5  # the main process took 1 s
    assert api.procs[child].code == CTRL_EXIT
    assert api.open_handles() == []  # empty job forgotten, process handle released


@pytest.mark.anyio
async def test_stop_terminates_the_job_after_the_timeout(api: FakeWinApi) -> None:
    executor = WindowsExecutor(api=api)
    handle = executor.spawn(make_spec())
    api.procs[handle.pid].on_break = None  # ignores Ctrl+Break
    child = api.child_of(handle.pid)
    grandchild = api.child_of(child)
    start = api.now
    api.calls.clear()
    result = await executor.stop(handle, stop_signal=15, timeout=3)

    order = [c[0] for c in api.calls if c[0] in {"ctrl_break", "terminate_job"}]
    assert order == ["ctrl_break", "terminate_job"]
    assert not api.names("terminate_process")  # the job ends the main process too
    assert sum(c[1] for c in api.names("sleep")) == pytest.approx(3.0)  # waited the timeout
    assert result.forced
    assert sorted(result.killed_pids) == sorted([handle.pid, child, grandchild])
    assert result.exit is not None and result.exit.code is None
    assert "terminated" in result.exit.reason
    assert result.duration == pytest.approx(api.now - start)
    assert all(api.procs[pid].code == TERMINATED_EXIT_CODE for pid in (child, grandchild))


@pytest.mark.anyio
async def test_sigkill_skips_the_graceful_step(api: FakeWinApi) -> None:
    executor = WindowsExecutor(api=api)
    handle = executor.spawn(make_spec())
    result = await executor.stop(handle, stop_signal=9, timeout=10)
    assert not api.names("ctrl_break", "sleep")
    assert result.forced and result.duration == 0


@pytest.mark.anyio
async def test_no_console_means_no_wait(api: FakeWinApi) -> None:
    api.console = False
    executor = WindowsExecutor(api=api)
    handle = executor.spawn(make_spec())
    result = await executor.stop(handle, stop_signal=15, timeout=10)
    assert api.names("ctrl_break") and not api.names("sleep")
    assert result.forced


@pytest.mark.anyio
async def test_stop_after_a_worker_restart_uses_the_job_by_name(api: FakeWinApi) -> None:
    ref = WindowsExecutor(api=api).spawn(make_spec()).ref
    api.procs[ref.pid].on_break = None
    child = api.child_of(ref.pid)
    fresh = WindowsExecutor(api=api)
    handle = fresh.attach(ref)
    assert handle is not None
    result = await fresh.stop(handle, stop_signal=15, timeout=1)
    assert api.names("terminate_job")
    assert sorted(result.killed_pids) == sorted([ref.pid, child])


@pytest.mark.anyio
async def test_stop_when_the_main_process_already_exited(api: FakeWinApi) -> None:
    executor = WindowsExecutor(api=api)
    handle = executor.spawn(make_spec())
    child = api.child_of(handle.pid)  # ignores Ctrl+Break
    api.exit(handle.pid, 0)
    result = await executor.stop(handle, stop_signal=15, timeout=2)
    assert result.killed_pids == [child]
    assert result.exit is not None and result.exit.code == 0


@pytest.mark.anyio
async def test_stop_without_a_job_terminates_the_main_process(api: FakeWinApi) -> None:
    ref = WindowsExecutor(api=api).spawn(make_spec()).ref
    api.procs[ref.pid].on_break = None
    api.job_names.clear()  # the name went away
    fresh = WindowsExecutor(api=api)
    handle = fresh.attach(ref)
    assert handle is not None
    result = await fresh.stop(handle, stop_signal=15, timeout=1)
    assert api.names("terminate_process") == [("terminate_process", ref.pid, TERMINATED_EXIT_CODE)]
    assert result.killed_pids == [ref.pid]


@pytest.mark.anyio
async def test_a_failing_termination_does_not_break_stop(
    api: FakeWinApi, caplog: pytest.LogCaptureFixture
) -> None:
    executor = WindowsExecutor(api=api, kill_timeout=1)
    handle = executor.spawn(make_spec())
    api.procs[handle.pid].on_break = None

    def refuse(job: int, exit_code: int) -> None:
        raise denied("TerminateJobObject")

    api.terminate_job = refuse  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING):
        result = await executor.stop(handle, stop_signal=15, timeout=1)
    assert result.forced and result.exit is None  # still running, and said so
    assert any("termination failed" in r.message for r in caplog.records)
    assert any("survived termination" in r.message for r in caplog.records)


# --- tags -----------------------------------------------------------------------------------


def test_find_and_kill_tag(api: FakeWinApi) -> None:
    executor = WindowsExecutor(api=api)
    handle = executor.spawn(make_spec())
    child = api.child_of(handle.pid)
    stray = api.stray("i-1")
    api.stray("i-2")
    assert sorted(executor.find_tag("i-1")) == sorted([handle.pid, child, stray])
    assert sorted(WindowsExecutor(api=api).kill_tag("i-1")) == sorted([handle.pid, child, stray])
    assert api.names("terminate_job")
    assert executor.find_tag("i-1") == []
    assert executor.kill_tag("i-3") == []
