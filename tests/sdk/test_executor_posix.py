"""PosixExecutor with real processes, plus the stop sequence against a fake OS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import attrs
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdos_sdk.codec import converter, dumps, loads
from gdos_sdk.errors import SpawnError
from gdos_sdk.executors import (
    TAG_ENV,
    Executor,
    ExitInfo,
    ProcessHandle,
    ProcessRef,
    SpawnSpec,
    TreeScan,
    default_executor,
    posix,
)
from gdos_sdk.executors.base import start_mark
from gdos_sdk.executors.posix import PosixExecutor, same_create_time

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX executor")

REPO = Path(__file__).resolve().parents[2]

# A service whose tree has every shape stop must handle. It writes one pid per
# line to argv[1] for each process still expected alive, then "ready".
#   main -> A (child)
#        -> B (child) -> G1 (setsid: left the group and session)
#        -> C (exits)  -> G2 (setsid, orphaned: only the tag finds it)
#                      -> G3 (orphaned, still in the group)
TREE_SERVICE = textwrap.dedent(
    """
    import os, sys, time, signal

    out = sys.argv[1]
    main_exits = len(sys.argv) > 2 and sys.argv[2] == "main-exits"

    def record():
        with open(out, "a") as f:
            f.write(f"{os.getpid()}\\n")

    def forked(body):
        pid = os.fork()
        if pid == 0:
            try:
                body()
            finally:
                os._exit(0)
        return pid

    def sleeper(setsid=False):
        def body():
            if setsid:
                os.setsid()
            record()
            while True:
                time.sleep(1)
        return body

    def b():
        forked(sleeper(setsid=True))
        sleeper()()

    def c():
        forked(sleeper(setsid=True))
        forked(sleeper())

    forked(sleeper())
    forked(b)
    os.waitpid(forked(c), 0)
    if not main_exits:
        record()
    while len(open(out).read().split()) < (5 if main_exits else 6):
        time.sleep(0.01)
    with open(out, "a") as f:
        f.write("ready\\n")
    if not main_exits:
        while True:
            time.sleep(1)
    """
)

# Ignores SIGTERM, and so does its child.
STUBBORN_SERVICE = textwrap.dedent(
    """
    import os, sys, time, signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = os.fork()
    if child:
        with open(sys.argv[1], "w") as f:
            f.write(f"{os.getpid()} {child}\\nready\\n")
    while True:
        time.sleep(1)
    """
)

# Run in a separate process: spawn a service and exit, so the service is not our child.
DETACHED_HELPER = textwrap.dedent(
    """
    import json, os, sys
    from gdos_sdk.codec import dumps
    from gdos_sdk.executors import SpawnSpec
    from gdos_sdk.executors.posix import PosixExecutor

    argv, cwd, log_path, tag = sys.argv[1:5]
    handle = PosixExecutor().spawn(
        SpawnSpec(argv=json.loads(argv), cwd=cwd, env=dict(os.environ), log_path=log_path,
                  tag=tag)
    )
    print(dumps(handle.ref), flush=True)
    os._exit(0)
    """
)

SLEEP_FOREVER = "import time\nwhile True: time.sleep(1)"


def is_gone(pid: int, create_time: float) -> bool:
    """True unless the very process (pid + create time) is alive; a zombie counts as gone."""
    try:
        proc = psutil.Process(pid)
        if not same_create_time(proc.create_time(), create_time):
            return True
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def identities(pids: list[int]) -> list[tuple[int, float]]:
    return [(pid, psutil.Process(pid).create_time()) for pid in pids]


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    with anyio.fail_after(within):
        while not check():  # noqa: ASYNC110 - polling the OS, there is no event to await
            await anyio.sleep(0.02)


def read_ready(path: Path) -> list[int] | None:
    """The pids a service recorded, once it wrote "ready"."""
    if not path.exists():
        return None
    words = path.read_text().split()
    if "ready" not in words:
        return None
    return [int(word) for word in words if word != "ready"]


async def wait_ready(path: Path, within: float = 30.0) -> list[int]:
    """The pids a service recorded; a generous bound, since a loaded machine forks slowly."""
    try:
        await eventually(lambda: read_ready(path) is not None, within)
    except TimeoutError:
        written = path.read_text() if path.exists() else "(no file)"
        raise AssertionError(
            f"the service did not write ready within {within} s: {written!r}"
        ) from None
    pids = read_ready(path)
    assert pids is not None
    return pids


@pytest.fixture
def executor() -> PosixExecutor:
    return PosixExecutor()


@pytest.fixture
def tag() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def spawn(
    executor: PosixExecutor, tmp_path: Path, tag: str
) -> Iterator[Callable[..., posix.PosixProcessHandle]]:
    """Spawn Python code as a service; everything tagged is killed (and our child reaped) after."""
    handles: list[posix.PosixProcessHandle] = []

    def start(code: str, *args: str, log: str = "console.log") -> posix.PosixProcessHandle:
        script = tmp_path / f"service{len(handles)}.py"
        script.write_text(code)
        handle = executor.spawn(
            SpawnSpec(
                argv=[sys.executable, str(script), *args],
                cwd=str(tmp_path),
                env=dict(os.environ),
                log_path=str(tmp_path / log),
                tag=tag,
            )
        )
        handles.append(handle)
        return handle

    yield start
    executor.kill_tag(tag)
    for handle in handles:
        try:
            os.killpg(handle.ref.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + 5
        while handle.is_alive() and time.monotonic() < deadline:  # is_alive() reaps our child
            time.sleep(0.01)


# --- spawn and wait -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_output_is_appended_to_the_log_and_exit_code_reported(
    spawn: Callable[..., posix.PosixProcessHandle], tmp_path: Path, tag: str
) -> None:
    code = (
        "import os, sys\n"
        "print('out', os.environ['GDOS_INSTANCE_ID'], flush=True)\n"
        "print('err', file=sys.stderr, flush=True)\n"
        "sys.exit(3)\n"
    )
    log = tmp_path / "console.log"
    log.write_text("earlier line\n")
    first = spawn(code)
    assert first.is_child
    assert first.ref.pgid == first.pid
    assert first.ref.tag == tag
    with anyio.fail_after(10):
        info = await first.wait()
    assert info == ExitInfo(code=3, signal=None, reason="exited with code 3")
    assert not first.is_alive()
    second = spawn(code)
    with anyio.fail_after(10):
        await second.wait()
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier line"
    assert sorted(lines[1:]) == sorted(["out " + tag, "err"] * 2)


@pytest.mark.anyio
async def test_wait_reports_the_killing_signal(
    spawn: Callable[..., posix.PosixProcessHandle],
) -> None:
    handle = spawn(SLEEP_FOREVER)
    assert handle.is_alive()
    os.kill(handle.pid, signal.SIGTERM)
    with anyio.fail_after(10):
        info = await handle.wait()
    assert info == ExitInfo(code=None, signal=signal.SIGTERM, reason="killed by SIGTERM")
    assert await handle.wait() is info


@pytest.mark.anyio
async def test_concurrent_waiters_get_the_same_exit(
    spawn: Callable[..., posix.PosixProcessHandle],
) -> None:
    handle = spawn("import time; time.sleep(0.3)")
    results: list[ExitInfo] = []

    async def waiter() -> None:
        results.append(await handle.wait())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            tg.start_soon(waiter)
    assert results == [ExitInfo.from_returncode(0)] * 2


@pytest.mark.anyio
async def test_polling_fallback_without_pidfd(
    spawn: Callable[..., posix.PosixProcessHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(posix, "_HAVE_PIDFD", False)
    handle = spawn("import sys; sys.exit(7)")
    with anyio.fail_after(10):
        assert (await handle.wait()).code == 7


def test_spawn_errors_carry_the_os_message(executor: PosixExecutor, tmp_path: Path) -> None:
    def spec(**changes: str | list[str]) -> SpawnSpec:
        base: dict[str, object] = {
            "argv": [sys.executable, "-c", "pass"],
            "cwd": str(tmp_path),
            "env": dict(os.environ),
            "log_path": str(tmp_path / "console.log"),
            "tag": "t",
        }
        base.update(changes)
        return SpawnSpec(**base)  # type: ignore[arg-type]

    not_executable = tmp_path / "script.sh"
    not_executable.write_text("#!/bin/sh\n")
    cases = {
        "No such file or directory": spec(argv=[str(tmp_path / "missing-program")]),
        "Permission denied": spec(argv=[str(not_executable)]),
    }
    for message, bad in cases.items():
        with pytest.raises(SpawnError, match=message):
            executor.spawn(bad)
    with pytest.raises(SpawnError, match=r"No such file or directory.*no-such-dir"):
        executor.spawn(spec(cwd=str(tmp_path / "no-such-dir")))
    with pytest.raises(SpawnError, match="cannot open log file"):
        executor.spawn(spec(log_path=str(tmp_path / "no-dir" / "console.log")))
    with pytest.raises(ValueError, match="argv"):
        spec(argv=[])


# --- stop -----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("main_exits", [False, True], ids=["main-running", "main-exited"])
@pytest.mark.parametrize("scanner", ["procfs", "psutil"])
async def test_stop_leaves_no_process_of_the_tree(
    spawn: Callable[..., posix.PosixProcessHandle],
    executor: PosixExecutor,
    tmp_path: Path,
    main_exits: bool,
    scanner: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if scanner == "psutil":  # the scanner every non-Linux POSIX system uses
        monkeypatch.setattr(posix, "_entries", posix._psutil_entries)
    elif not sys.platform.startswith("linux"):
        pytest.skip("/proc scanner is Linux only")
    pids_file = tmp_path / "pids"
    handle = spawn(TREE_SERVICE, str(pids_file), *(["main-exits"] if main_exits else []))
    pids = await wait_ready(pids_file)
    alive = identities(pids)
    assert len(alive) == (5 if main_exits else 6)
    if main_exits:
        with anyio.fail_after(10):
            assert (await handle.wait()).code == 0
    else:
        assert handle.pid in pids
    assert sorted(executor.find_tag(handle.ref.tag)) == sorted(pids)

    with anyio.fail_after(20):
        result = await executor.stop(handle, stop_signal=signal.SIGTERM, timeout=10)

    assert [ident for ident in alive if not is_gone(*ident)] == []
    assert not result.forced
    assert result.killed_pids == []
    assert result.exit is not None
    if not main_exits:
        assert result.exit.signal == signal.SIGTERM
    assert result.duration < 10
    assert executor.find_tag(handle.ref.tag) == []
    # Our child is reaped: its pid no longer exists as a zombie of ours.
    assert [p for p in psutil.Process().children() if p.status() == psutil.STATUS_ZOMBIE] == []


@pytest.mark.anyio
async def test_stop_kills_what_ignores_the_stop_signal(
    spawn: Callable[..., posix.PosixProcessHandle], executor: PosixExecutor, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    handle = spawn(STUBBORN_SERVICE, str(ready))
    pids = await wait_ready(ready)
    alive = identities(pids)
    with anyio.fail_after(20):
        result = await executor.stop(handle, stop_signal=signal.SIGTERM, timeout=0.5)
    assert result.forced
    assert sorted(result.killed_pids) == sorted(pids)
    assert result.exit == ExitInfo(code=None, signal=signal.SIGKILL, reason="killed by SIGKILL")
    assert 0.5 <= result.duration < 10
    assert all(is_gone(*ident) for ident in alive)


@pytest.mark.anyio
async def test_stop_while_another_task_waits(
    spawn: Callable[..., posix.PosixProcessHandle], executor: PosixExecutor
) -> None:
    # The worker's monitor task is always waiting when a stop comes in.
    handle = spawn(SLEEP_FOREVER)
    seen: list[ExitInfo] = []

    async def monitor() -> None:
        seen.append(await handle.wait())

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor)
            await anyio.sleep(0.05)
            result = await executor.stop(handle, stop_signal=signal.SIGTERM, timeout=5)
    assert seen == [result.exit]
    assert result.exit is not None
    assert result.exit.signal == signal.SIGTERM


@pytest.mark.anyio
async def test_kill_tag_kills_tagged_orphans(
    spawn: Callable[..., posix.PosixProcessHandle], executor: PosixExecutor, tmp_path: Path
) -> None:
    pids_file = tmp_path / "pids"
    handle = spawn(TREE_SERVICE, str(pids_file), "main-exits")
    pids = await wait_ready(pids_file)
    alive = identities(pids)
    with anyio.fail_after(10):
        await handle.wait()
    assert sorted(executor.kill_tag(handle.ref.tag)) == sorted(pids)
    await eventually(lambda: all(is_gone(*ident) for ident in alive))
    assert executor.find_tag(handle.ref.tag) == []
    assert executor.kill_tag(handle.ref.tag) == []


# --- attach ---------------------------------------------------------------------------------


@pytest.fixture
def detached(
    tmp_path: Path, tag: str, executor: PosixExecutor
) -> Iterator[Callable[[], ProcessRef]]:
    """Start a service through a helper process that exits: the service is not our child."""

    def start() -> ProcessRef:
        helper = tmp_path / "helper.py"
        helper.write_text(DETACHED_HELPER)
        argv = json.dumps([sys.executable, "-c", SLEEP_FOREVER])
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop(TAG_ENV, None)
        out = subprocess.run(
            [sys.executable, str(helper), argv, str(tmp_path), str(tmp_path / "c.log"), tag],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return loads(out.stdout, ProcessRef)

    yield start
    executor.kill_tag(tag)


@pytest.mark.anyio
async def test_attach_finds_a_service_after_a_worker_restart(
    detached: Callable[[], ProcessRef], executor: PosixExecutor
) -> None:
    ref = detached()
    handle = executor.attach(ref)
    assert handle is not None
    assert not handle.is_child
    assert handle.ref == ref
    assert handle.is_alive()
    os.kill(ref.pid, signal.SIGTERM)
    with anyio.fail_after(10):
        info = await handle.wait()
    assert info == ExitInfo.unknown()
    assert not handle.is_alive()
    # Gone (or a zombie nobody reaps): nothing to attach to any more.
    assert executor.attach(ref) is None


@pytest.mark.anyio
async def test_stop_an_attached_service(
    detached: Callable[[], ProcessRef], executor: PosixExecutor
) -> None:
    ref = detached()
    handle = executor.attach(ref)
    assert handle is not None
    with anyio.fail_after(20):
        result = await executor.stop(handle, stop_signal=signal.SIGTERM, timeout=5)
    assert result.exit == ExitInfo.unknown()
    assert not result.forced
    assert is_gone(ref.pid, ref.create_time)


def test_attach_refuses_a_reused_pid_or_a_foreign_tag(
    detached: Callable[[], ProcessRef], executor: PosixExecutor
) -> None:
    ref = detached()
    assert executor.attach(converter.structure({**converter.unstructure(ref)}, ProcessRef))
    moved = ProcessRef(ref.pid, ref.create_time + 12.34, ref.pgid, ref.tag)  # no start mark
    assert executor.attach(moved) is None
    other_tag = ProcessRef(ref.pid, ref.create_time, ref.pgid, "someone-else")
    assert executor.attach(other_tag) is None
    no_such = ProcessRef(2**22 + 1, ref.create_time, 2**22 + 1, ref.tag)  # above pid_max
    assert executor.attach(no_such) is None


@pytest.mark.skipif(sys.platform != "linux", reason="the kernel start mark is read from /proc")
def test_attach_survives_a_wall_clock_step_and_refuses_another_start(
    detached: Callable[[], ProcessRef], executor: PosixExecutor
) -> None:
    ref = detached()
    assert ref.start_mark is not None and ref.start_mark == start_mark(ref.pid)
    # The clock was stepped 7 s between the record and now: psutil's create time moved,
    # the kernel's mark did not; the process is still ours.
    stepped = attrs.evolve(ref, create_time=ref.create_time + 7.0)
    handle = executor.attach(stepped)
    assert handle is not None and handle.pid == ref.pid
    # Another start (or another boot) behind the same pid: refused, whatever the time says.
    boot, ticks = ref.start_mark.split("/")
    assert executor.attach(attrs.evolve(ref, start_mark=f"{boot}/{int(ticks) + 1}")) is None
    assert executor.attach(attrs.evolve(ref, start_mark=f"another-boot/{ticks}")) is None
    # A ref stored before the mark existed still loads and attaches by its create time.
    old = converter.unstructure(ref)
    del old["start_mark"]
    assert executor.attach(converter.structure(old, ProcessRef)) is not None
    assert (
        executor.attach(
            converter.structure({**old, "create_time": ref.create_time + 7.0}, ProcessRef)
        )
        is None
    )


@pytest.mark.anyio
async def test_attach_to_our_own_child_reaps_it(
    spawn: Callable[..., posix.PosixProcessHandle], executor: PosixExecutor
) -> None:
    spawned = spawn("import sys, time; time.sleep(0.2); sys.exit(4)")
    handle = executor.attach(spawned.ref)
    assert handle is not None
    assert handle.is_child
    with anyio.fail_after(10):
        assert (await handle.wait()).code == 4
    assert not spawned.is_alive()  # reaped by the other handle; its Popen copes


def test_same_create_time_tolerates_a_boot_time_step() -> None:
    assert same_create_time(1000.25, 1000.25)
    assert same_create_time(1001.25, 1000.25)
    assert same_create_time(999.25, 1000.25)
    assert not same_create_time(1000.26, 1000.25)
    assert not same_create_time(1002.25, 1000.25)


# --- contract -------------------------------------------------------------------------------


def test_default_executor_is_posix() -> None:
    executor = default_executor()
    assert isinstance(executor, PosixExecutor)
    assert isinstance(executor, Executor)


@settings(max_examples=30, deadline=None)
@given(
    pid=st.integers(1, 2**22),
    create_time=st.floats(0, 2e9, allow_nan=False),
    tag=st.text(min_size=1),
)
def test_process_ref_round_trips_through_json(pid: int, create_time: float, tag: str) -> None:
    ref = ProcessRef(pid=pid, create_time=create_time, pgid=pid, tag=tag)
    assert loads(dumps(ref), ProcessRef) == ref
    assert json.loads(dumps(ref))["create_time"] == create_time


# --- stop sequence against a fake OS ---------------------------------------------------------


class FakeProc:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def send_signal(self, sig: int) -> None:  # pragma: no cover - FakeOps.kill records instead
        raise AssertionError("signals go through the ops object")


class FakeOps:
    """Processes that obey only the signals listed in ``dies_on`` (SIGKILL always)."""

    def __init__(self, procs: list[FakeProc], *, grouped: set[int], dies_on: set[int]) -> None:
        self.now = 100.0
        self.alive = list(procs)
        self.grouped = grouped
        self.dies_on = dies_on | {signal.SIGKILL}
        self.calls: list[tuple[object, ...]] = []
        self.spawn_at: dict[float, FakeProc] = {}
        self.exit_at: dict[int, float] = {}
        self.unseen: set[int] = set()  # alive, but no scan finds them (exiting, tag dropped)

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds

    def killpg(self, pgid: int, sig: int) -> bool:
        self.calls.append(("killpg", pgid, sig))
        if sig in self.dies_on:
            self.alive = [p for p in self.alive if p.pid not in self.grouped]
        return True

    def kill(self, proc: FakeProc, sig: int) -> bool:
        self.calls.append(("kill", proc.pid, sig))
        if sig in self.dies_on:
            self.alive = [p for p in self.alive if p is not proc]
        return True

    def scan(self, ref: ProcessRef) -> TreeScan:
        for at, proc in list(self.spawn_at.items()):
            if self.now >= at:
                self.alive.append(proc)
                del self.spawn_at[at]
        self.alive = [p for p in self.alive if self.now < self.exit_at.get(p.pid, float("inf"))]
        return TreeScan(
            processes=tuple(p for p in self.alive if p.pid not in self.unseen),
            group_held=True,
            grouped_pids=frozenset(p.pid for p in self.alive if p.pid in self.grouped),
        )

    def is_alive(self, proc: FakeProc) -> bool:
        return proc in self.alive


class FakeHandle:
    def __init__(self, ops: FakeOps) -> None:
        self.ref = ProcessRef(pid=1000, create_time=1.0, pgid=1000, tag="t")
        self.pid = 1000
        self.is_child = True
        self._ops = ops

    def is_alive(self) -> bool:
        return any(p.pid == self.pid for p in self._ops.alive)

    async def wait(self) -> ExitInfo:
        return ExitInfo.from_returncode(-signal.SIGKILL)


@pytest.mark.anyio
async def test_stop_sequence_term_to_group_then_kill_after_timeout() -> None:
    main, child, escaped = FakeProc(1000), FakeProc(1001), FakeProc(2000)
    ops = FakeOps([main, child, escaped], grouped={1000, 1001}, dies_on=set())
    handle: ProcessHandle = FakeHandle(ops)
    result = await PosixExecutor(ops=ops).stop(handle, stop_signal=signal.SIGTERM, timeout=10)

    term = [c for c in ops.calls if c[-1] == signal.SIGTERM]
    kill = [c for c in ops.calls if c[-1] == signal.SIGKILL]
    # The group gets the stop signal once; only the process outside it is signalled alone.
    assert term == [("killpg", 1000, signal.SIGTERM), ("kill", 2000, signal.SIGTERM)]
    assert ops.calls.index(term[-1]) < ops.calls.index(kill[0])
    assert kill[0] == ("killpg", 1000, signal.SIGKILL)
    assert set(kill[1:]) == {("kill", pid, signal.SIGKILL) for pid in (1000, 1001, 2000)}
    assert result.forced
    assert result.killed_pids == [1000, 1001, 2000]
    assert result.duration == pytest.approx(10)
    assert result.exit == ExitInfo.from_returncode(-signal.SIGKILL)


@pytest.mark.anyio
async def test_stop_sequence_no_kill_when_the_tree_obeys() -> None:
    main, late = FakeProc(1000), FakeProc(1002)
    ops = FakeOps([main], grouped={1000}, dies_on=set())
    ops.spawn_at[100.5] = late  # forked during shutdown: it must get the stop signal too
    ops.exit_at = {1000: 102.0, 1002: 103.0}  # both shut down cleanly, taking their time
    result = await PosixExecutor(ops=ops).stop(
        FakeHandle(ops), stop_signal=signal.SIGTERM, timeout=10
    )
    assert ("kill", 1002, signal.SIGTERM) in ops.calls
    assert ops.calls.count(("kill", 1002, signal.SIGTERM)) == 1
    assert not [c for c in ops.calls if c[-1] == signal.SIGKILL]
    assert not result.forced
    assert 3 <= result.duration < 4


@pytest.mark.anyio
async def test_stop_sequence_waits_for_a_signalled_process_a_scan_misses() -> None:
    """A process seen once stays in the count until it is really gone, scan or no scan."""
    main, stray = FakeProc(1000), FakeProc(2000)
    ops = FakeOps([main, stray], grouped={1000}, dies_on={signal.SIGTERM})
    ops.dies_on.discard(signal.SIGTERM)  # neither obeys SIGTERM ...
    ops.exit_at = {1000: 101.0}  # ... the main process exits on its own
    executor = PosixExecutor(ops=ops)
    original_kill = ops.kill

    def kill_then_hide(proc: FakeProc, sig: int) -> bool:
        ops.unseen.add(2000)  # after the first signal, scans no longer see the stray
        return original_kill(proc, sig)

    ops.kill = kill_then_hide  # type: ignore[method-assign]
    result = await executor.stop(FakeHandle(ops), stop_signal=signal.SIGTERM, timeout=5)
    assert ("kill", 2000, signal.SIGKILL) in ops.calls
    assert stray not in ops.alive
    assert result.forced and 2000 in result.killed_pids


def test_exports_resolve() -> None:
    import gdos_sdk.executors as package

    assert all(hasattr(package, name) for name in package.__all__)
    assert all(hasattr(posix, name) for name in posix.__all__)
