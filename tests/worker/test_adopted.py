"""The adopted-instance runner against a fake process table: adopt, follow, stop, re-attach."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import anyio
import attrs
import pytest

from gdos_sdk.adoption import AdoptionSpec, AdoptionStrategy, ProcessCandidate, same_create_time
from gdos_sdk.errors import ConflictError
from gdos_sdk.executors import ExitInfo, ProcessHandle, ProcessRef, SpawnSpec, StopResult
from gdos_sdk.protocol import InstanceStatus
from gdos_sdk.states import DesiredState, InstanceState
from gdos_worker.adopted import AdoptedRunner
from gdos_worker.state import WorkDir

from .specs import instance_spec, stopped_record

pytestmark = pytest.mark.anyio

S = InstanceState


@attrs.define(eq=False)
class FakeHandle:
    ref: ProcessRef
    gone: asyncio.Event = attrs.field(factory=asyncio.Event)

    @property
    def pid(self) -> int:
        return self.ref.pid

    @property
    def is_child(self) -> bool:
        return False

    async def wait(self) -> ExitInfo:
        await self.gone.wait()
        return ExitInfo.unknown()

    def is_alive(self) -> bool:
        return not self.gone.is_set()


class FakeHost:
    """A process table, an executor over it, and the resolver the runner uses."""

    def __init__(self) -> None:
        self.procs: dict[int, ProcessCandidate] = {}
        self.handles: dict[int, FakeHandle] = {}
        self.spawned: list[SpawnSpec] = []
        self.stopped: list[tuple[int, int]] = []
        self.next_pid = 1000

    def run(self, pid: int, created: float, name: str = "legacy") -> None:
        self.procs[pid] = ProcessCandidate(pid=pid, create_time=created, name=name)

    def exit(self, pid: int) -> None:
        self.procs.pop(pid, None)
        handle = self.handles.pop(pid, None)
        if handle is not None:
            handle.gone.set()

    # resolver
    def resolve(self, spec: AdoptionSpec) -> tuple[ProcessCandidate | None, str]:
        found = sorted(self.procs.values(), key=lambda p: p.create_time)
        return (found[0], "") if found else (None, "no matching process is running")

    # executor
    def attach(self, ref: ProcessRef) -> ProcessHandle | None:
        proc = self.procs.get(ref.pid)
        if proc is None or not same_create_time(proc.create_time, ref.create_time):
            return None  # gone, or the pid now belongs to another process
        return self.handles.setdefault(ref.pid, FakeHandle(ref))

    def spawn(self, spec: SpawnSpec) -> ProcessHandle:
        self.spawned.append(spec)
        self.next_pid += 1
        self.run(self.next_pid, 5000.0 + self.next_pid)
        ref = ProcessRef(pid=self.next_pid, create_time=5000.0 + self.next_pid, pgid=0, tag="t")
        return self.handles.setdefault(self.next_pid, FakeHandle(ref))

    async def stop(self, handle: ProcessHandle, *, stop_signal: int, timeout: float) -> StopResult:
        self.stopped.append((handle.pid, stop_signal))
        self.exit(handle.pid)
        return StopResult(exit=ExitInfo.unknown(), forced=False)

    def kill_tag(self, tag: str) -> list[int]:
        return []

    def find_tag(self, tag: str) -> list[int]:
        return []


def make_runner(
    tmp_path: Path, host: FakeHost, **adoption: object
) -> tuple[AdoptedRunner, list[InstanceStatus]]:
    spec = AdoptionSpec(
        strategy=AdoptionStrategy.MATCH,
        name="legacy",
        follow_timeout=0.6,
        **adoption,  # type: ignore[arg-type]
    )
    record = stopped_record(instance_spec(module_name="legacy", adoption=spec))
    workdir = WorkDir(tmp_path / "work")
    workdir.prepare()
    workdir.paths("i-1").logs.mkdir(parents=True)
    reports: list[InstanceStatus] = []
    runner = AdoptedRunner(
        record,
        workdir=workdir,
        executor=host,  # type: ignore[arg-type]
        node_id="n",
        on_change=reports.append,
        base_env={"PATH": "/usr/bin:/bin", "OPS_WORKER_JOIN_TOKEN": "secret"},
        resolver=host.resolve,
    )
    return runner, reports


async def settle(
    runner: AdoptedRunner, state: InstanceState, timeout: float = 5.0, not_pid: int = 0
) -> None:
    with anyio.fail_after(timeout):
        while runner.record.state != state or runner.status().pid == not_pid:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_a_running_process_is_adopted_as_it_is(tmp_path: Path) -> None:
    host = FakeHost()
    host.run(42, 100.25)
    runner, _ = make_runner(tmp_path, host, start_command="legacy --daemon")
    status = await runner.start()
    assert (status.state, status.pid) == (S.RUNNING, 42)
    assert host.spawned == []  # not restarted, not even touched
    assert runner.record.started_at == 100.25
    await runner.close()


async def test_nothing_to_adopt_and_no_start_command_says_why(tmp_path: Path) -> None:
    host = FakeHost()
    runner, _ = make_runner(tmp_path, host)
    with pytest.raises(ConflictError, match="no matching process"):
        await runner.start()
    assert runner.record.state == S.STOPPED and host.spawned == []


async def test_follows_a_successor_after_an_outside_restart(tmp_path: Path) -> None:
    host = FakeHost()
    host.run(42, 100.0)
    runner, reports = make_runner(tmp_path, host)
    await runner.start()
    host.exit(42)
    await settle(runner, S.BACKOFF)
    host.run(77, 200.0)  # the operator restarted it outside GDOS
    await settle(runner, S.RUNNING)
    assert runner.status().pid == 77 and runner.record.restarts == 1
    assert "following" in reports[-1].reason
    await runner.close()


async def test_no_successor_means_stopped_outside_gdos_while_desired_running(
    tmp_path: Path,
) -> None:
    host = FakeHost()
    host.run(42, 100.0)
    runner, _ = make_runner(tmp_path, host)
    await runner.start()
    host.exit(42)
    await settle(runner, S.STOPPED)
    assert "outside GDOS" in runner.record.reason
    assert runner.record.desired_state == DesiredState.RUNNING  # so "instance down" alerts


async def test_with_a_start_command_a_vanished_service_is_started_again(tmp_path: Path) -> None:
    host = FakeHost()
    host.run(42, 100.0)
    runner, _ = make_runner(tmp_path, host, start_command="legacy --daemon", start_timeout=1)
    await runner.start()
    host.exit(42)
    await settle(runner, S.RUNNING, timeout=10, not_pid=42)
    assert len(host.spawned) == 1 and runner.status().pid == 1001
    assert host.spawned[0].argv[-1] == "legacy --daemon"
    # The command runs with the instance's GDOS_* variables (no package ones: there is
    # none) and without the worker's own OPS_WORKER_* settings.
    env = host.spawned[0].env
    paths = runner.workdir.paths("i-1")
    assert {k: v for k, v in env.items() if k.startswith("GDOS_")} == {
        "GDOS_INSTANCE_ID": "i-1",
        "GDOS_NODE_ID": "n",
        "GDOS_MODULE": "legacy",
        "GDOS_SYSTEM_ID": "s",
        "GDOS_INSTANCE_DIR": str(paths.root),
        "GDOS_LOG_DIR": str(paths.logs),
        "GDOS_WORK_DIR": str(runner.workdir.root),
    }
    assert env["PATH"] == "/usr/bin:/bin" and "OPS_WORKER_JOIN_TOKEN" not in env
    await runner.close()


async def test_stop_signals_the_tracked_pid_without_a_stop_command(tmp_path: Path) -> None:
    host = FakeHost()
    host.run(42, 100.0)
    runner, _ = make_runner(tmp_path, host, stop_signal="SIGINT")
    await runner.start()
    status = await runner.stop()
    assert status.state == S.STOPPED and status.desired_state == DesiredState.STOPPED
    assert host.stopped == [(42, signal.SIGINT)]


async def test_resume_never_takes_a_reused_pid_for_the_service(tmp_path: Path) -> None:
    host = FakeHost()
    runner, _ = make_runner(tmp_path, host)
    runner.record.process = ProcessRef(pid=42, create_time=100.0, pgid=42, tag="i-1")
    runner.record.desired_state = DesiredState.STOPPED
    runner.record.state = S.RUNNING
    host.run(42, 900.0)  # same pid, another process
    runner.resume()
    assert runner.handle is None and runner.record.state == S.STOPPED
    assert runner.record.process is None


async def test_resume_reattaches_the_same_process(tmp_path: Path) -> None:
    host = FakeHost()
    runner, _ = make_runner(tmp_path, host)
    runner.record.process = ProcessRef(pid=42, create_time=100.0, pgid=42, tag="i-1")
    runner.record.desired_state = DesiredState.RUNNING
    runner.record.state = S.RUNNING
    host.run(42, 100.0)
    runner.resume()
    assert runner.handle is not None and runner.handle.pid == 42
    assert runner.record.state == S.RUNNING
    await runner.close()


async def test_destroy_releases_the_process(tmp_path: Path) -> None:
    host = FakeHost()
    host.run(42, 100.0)
    runner, _ = make_runner(tmp_path, host)
    await runner.start()
    await runner.destroy()
    assert host.stopped == [] and 42 in host.procs
    assert not runner.paths.root.exists()


async def test_destroy_stops_what_the_start_command_brought_up(tmp_path: Path) -> None:
    host = FakeHost()
    runner, _ = make_runner(tmp_path, host, start_command="legacy --daemon")
    status = await runner.start()  # nothing ran: the start command brought it up
    assert status.pid is not None and runner.record.started_here
    await runner.destroy()
    assert [pid for pid, _ in host.stopped] == [status.pid]
    assert status.pid not in host.procs
