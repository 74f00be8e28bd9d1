"""The runner of an adopted instance: a process GDOS found rather than started.

It shares :class:`~gdos_worker.runner.InstanceRunner`'s state machine,
record, exit watcher and metrics, and differs in how the process comes and
goes (see ``docs/adoption.md``):

* **start** adopts the process the strategy finds, without touching it; only
  when none runs does it run ``start_command`` (or, for ``spawn``, the
  command itself) and wait for the process to appear;
* **stop** runs ``stop_command`` when there is one, else (or if the process
  outlives it) sends ``stop_signal`` to the tracked process and its tree;
* **restart** runs ``restart_command``, else stop + start;
* when the tracked process exits on its own, the runner looks for a successor
  (a new pid in the pid file, a new matching process) for ``follow_timeout``
  seconds and follows it; only then does it report the service stopped, or
  start it again when it has a way to;
* **destroy** stops what GDOS started (its spawn, start or restart command brought the
  process up, or the process carries the instance's tag) and releases what it found:
  GDOS stops watching it and leaves it running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable

import attrs

from gdos_sdk.adoption import AdoptionSpec, AdoptionStrategy, ProcessCandidate, resolve
from gdos_sdk.errors import ConflictError, SpawnError
from gdos_sdk.executors import Executor, ExitInfo, ProcessHandle, ProcessRef, SpawnSpec
from gdos_sdk.filemodes import private_dir
from gdos_sdk.manifest import Manifest
from gdos_sdk.protocol import InstanceSpec, InstanceStatus
from gdos_sdk.states import DesiredState, InstanceState
from gdos_worker.runner import InstanceRunner, _signal_number
from gdos_worker.state import InstanceRecord, WorkDir

__all__ = ["AdoptedRunner", "adopted_manifest", "shell_argv"]

log = logging.getLogger("gdos.worker.adopted")

S = InstanceState

_SIGKILL = 9  # the number on every POSIX system; the Windows executor terminates the job
_POLL = 0.25  # seconds between looks for a process that should appear


def shell_argv(command: str, *, exec_: bool = False) -> list[str]:
    """The platform shell running ``command`` (``exec_``: the command replaces the shell)."""
    if sys.platform == "win32":
        return [os.environ.get("COMSPEC", "cmd.exe"), "/c", command]
    else:
        return ["/bin/sh", "-c", f"exec {command}" if exec_ else command]


def adopted_manifest(name: str, adoption: AdoptionSpec) -> Manifest:
    """The manifest the shared runner machinery reads (stop settings, restart policy)."""
    can_start = adoption.strategy == AdoptionStrategy.SPAWN or bool(adoption.start_command)
    return Manifest.from_dict(
        {
            "name": name,
            "version": "0",
            "is_external": True,
            "stop_signal": adoption.stop_signal,
            "stop_timeout": adoption.stop_timeout,
            "restart": {"policy": "always" if can_start else "never"},
        }
    )


class AdoptedRunner(InstanceRunner):
    """Keeps an adopted instance in its desired state; see the module docstring."""

    def __init__(
        self,
        record: InstanceRecord,
        *,
        workdir: WorkDir,
        executor: Executor,
        node_id: str,
        on_change: Callable[[InstanceStatus], None],
        base_env: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        resolver: Callable[[AdoptionSpec], tuple[ProcessCandidate | None, str]] = resolve,
        default_user: str = "",
    ) -> None:
        adoption = record.spec.adoption
        assert adoption is not None
        self.adoption: AdoptionSpec = adoption
        # The base class reads the package manifest; an adopted module has none.
        record.spec = _with_manifest(record, adopted_manifest("adopted", adoption))
        super().__init__(
            record,
            workdir=workdir,
            executor=executor,
            node_id=node_id,
            on_change=on_change,
            base_env=base_env,
            clock=clock,
            default_user=default_user,
        )
        self.resolver = resolver
        self._follow_task: asyncio.Task[None] | None = None
        self._helpers: set[asyncio.Task[object]] = set()

    @property
    def can_start(self) -> bool:
        return self.adoption.strategy == AdoptionStrategy.SPAWN or bool(self.adoption.start_command)

    # --- processes --------------------------------------------------------------------------

    def _command_spec(self, command: str, *, exec_: bool = False) -> SpawnSpec:
        account = self.account()
        env = self._instance_env(account)
        private_dir(self.paths.logs)
        self.workdir.hand_over(self.paths, account)
        cwd = self.adoption.cwd if os.path.isdir(self.adoption.cwd) else str(self.paths.root)
        return SpawnSpec(
            argv=shell_argv(command, exec_=exec_),
            cwd=cwd,
            env=env,
            log_path=str(self.paths.console_log),
            tag=self.instance_id,
            account=account,
        )

    def _reap_later(self, handle: ProcessHandle) -> None:
        """Reap a helper process (a start command that daemonised) whenever it ends."""
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(handle.wait())
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    async def _run_command(self, command: str, timeout: float) -> ExitInfo | None:
        """Run one shell command to its end; kill it after ``timeout``. None: it was killed."""
        handle = self.executor.spawn(self._command_spec(command))
        try:
            return await asyncio.wait_for(handle.wait(), timeout)
        except TimeoutError:
            log.warning(
                "instance %s: %r still running after %gs", self.instance_id, command, timeout
            )
            await self.executor.stop(handle, stop_signal=_SIGKILL, timeout=0.1)
            return None

    def _attach(self, found: ProcessCandidate) -> ProcessHandle | None:
        ref = ProcessRef(
            pid=found.pid, create_time=found.create_time, pgid=found.pid, tag=self.instance_id
        )
        return self.executor.attach(ref)

    async def _find(self) -> tuple[ProcessCandidate | None, str]:
        return await asyncio.to_thread(self.resolver, self.adoption)

    async def _wait_for_process(
        self, timeout: float, spawned: ProcessHandle | None = None
    ) -> tuple[ProcessHandle | None, str]:
        deadline = time.monotonic() + timeout
        why = ""
        while True:
            found, why = await self._find()
            if found is not None:
                if spawned is not None and found.pid == spawned.pid:
                    return spawned, ""
                handle = self._attach(found)
                if handle is not None:
                    if spawned is not None:
                        self._reap_later(spawned)
                    return handle, ""
            if time.monotonic() >= deadline:
                return None, why
            await asyncio.sleep(_POLL)

    async def _start_process(self, *, restarted: bool = False) -> None:
        """Adopt what runs, else start it. STOPPED/BACKOFF/FAILED -> STARTING -> RUNNING.

        Caller holds the lock. Raises :class:`ConflictError` when there is nothing
        to adopt and no way to start it.
        """
        self._set_state(S.STARTING, "looking for the process")
        found, why = await self._find()
        handle = self._attach(found) if found is not None else None
        if handle is not None:
            # Already running: adopt it as it is, never restart it.
            self.record.started_here = False
            self._adopt(handle, fresh=False)
            self.record.started_at = found.create_time if found is not None else time.time()
            self._set_state(S.RUNNING, f"adopted running process {handle.pid}")
            return
        if not self.can_start:
            self._set_state(S.STOPPED, f"not running: {why}")  # STARTING -> STOPPED
            raise ConflictError(f"{why}; the module has no start command")
        if self.adoption.strategy == AdoptionStrategy.SPAWN:
            command, exec_ = self.adoption.command, True
        else:
            command, exec_ = self.adoption.start_command, False
        try:
            spawned = self.executor.spawn(self._command_spec(command, exec_=exec_))
        except SpawnError as exc:
            self._set_state(S.FAILED, f"cannot start: {exc.message}")  # STARTING -> FAILED
            raise
        if self.adoption.strategy == AdoptionStrategy.SPAWN:
            handle = spawned
        else:
            handle, why = await self._wait_for_process(self.adoption.start_timeout, spawned)
            if handle is None:
                await self.executor.stop(spawned, stop_signal=_SIGKILL, timeout=0.1)
                self._set_state(S.FAILED, f"start command ran but {why}")  # STARTING -> FAILED
                raise ConflictError(f"start command ran but {why}")
        self.record.started_here = True  # by the spawn or the start command
        self._adopt(handle, fresh=True)
        if restarted:
            self.record.restarts += 1
        self._set_state(S.RUNNING, f"running (pid {handle.pid})")

    async def _stop_adopted(self, reason: str) -> None:
        """RUNNING -> STOPPING -> STOPPED. Caller holds the lock."""
        handle = self.handle
        self._set_state(S.STOPPING, "stopping")
        if self.adoption.stop_command:
            await self._run_command(self.adoption.stop_command, self.adoption.stop_timeout)
            if handle is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(handle.wait(), self.adoption.stop_timeout)
        forced = False
        if handle is not None and handle.is_alive():
            result = await self.executor.stop(
                handle,
                stop_signal=_signal_number(self.adoption.stop_signal),
                timeout=self.adoption.stop_timeout,
            )
            forced = result.forced
        self.handle = None
        self.record.process = None
        self._set_state(S.STOPPED, reason + (" (killed after timeout)" if forced else ""))

    # --- exits the service made on its own ----------------------------------------------------

    _vanished = "exit status unknown: GDOS is not its parent"

    async def _clear_run(self, handle: ProcessHandle) -> None:
        """Nothing to clear: what an adopted process leaves may be its own successor."""

    def _on_unexpected_exit(self, info: ExitInfo) -> None:
        self.handle = None
        self.record.process = None
        # RUNNING -> BACKOFF while looking for a successor (an outside restart).
        self._set_state(S.BACKOFF, f"process exited ({info.reason}); looking for its successor")
        self._follow_task = asyncio.get_running_loop().create_task(self._follow(info))

    async def _follow(self, info: ExitInfo) -> None:
        handle, _ = await self._wait_for_process(self.adoption.follow_timeout)
        async with self.lock:
            if self.record.state != S.BACKOFF or self.destroyed:
                return  # an operator action took over meanwhile
            self._follow_task = None
            if handle is not None:
                self._set_state(S.STARTING, "following restarted process")  # BACKOFF -> STARTING
                self.record.started_here = False  # restarted outside GDOS
                self._adopt(handle, fresh=False)
                self.record.started_at = _create_time(handle)
                self.record.restarts += 1
                self._set_state(S.RUNNING, f"following restarted process {handle.pid}")
                return
            if self.record.desired_state == DesiredState.RUNNING and self.can_start:
                now = self.clock()
                decision = self.tracker.on_exit(
                    now=now, ran_for=now - self._started_mono, exit_code=info.code
                )
                if decision.restart:
                    self.record.reason = f"{info.reason}; restarting in {decision.delay:.1f} s"
                    self._backoff_task = asyncio.get_running_loop().create_task(
                        self._restart_later(decision.delay)
                    )
                    self._save()
                    self.on_change(self.status())
                    return
                if decision.give_up:
                    self._set_state(S.FAILED, f"{info.reason}; {decision.reason}")
                    return
            self._set_state(S.STOPPED, f"exited outside GDOS ({info.reason})")  # BACKOFF -> STOPPED

    async def _restart_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self.lock:
            if self.record.state != S.BACKOFF or self.record.desired_state != DesiredState.RUNNING:
                return
            self._backoff_task = None
            with contextlib.suppress(ConflictError, SpawnError):  # recorded as FAILED
                await self._start_process(restarted=True)

    def _cancel_backoff(self) -> None:
        super()._cancel_backoff()
        if self._follow_task is not None:
            self._follow_task.cancel()
            self._follow_task = None

    # --- operator actions -------------------------------------------------------------------

    def _settle(self, reason: str) -> None:
        if self.record.state in (S.BACKOFF, S.FAILED, S.RUNNING, S.STARTING):
            self._set_state(S.STOPPED, reason)

    async def start(self) -> InstanceStatus:
        async with self.lock:
            self._set_desired(DesiredState.RUNNING)
            if self.record.state in (S.RUNNING, S.STARTING) and self.handle is not None:
                return self.status()
            self._cancel_backoff()
            self.tracker.reset()
            self._settle("starting")
            await self._start_process()
            return self.status()

    async def stop(self) -> InstanceStatus:
        async with self.lock:
            self._set_desired(DesiredState.STOPPED)
            self._cancel_backoff()
            if self.handle is not None:
                await self._stop_adopted("stopped by operator")
            else:
                self._settle("stopped by operator")
            return self.status()

    async def restart(self) -> InstanceStatus:
        async with self.lock:
            self._set_desired(DesiredState.RUNNING)
            self._cancel_backoff()
            self.tracker.reset()
            command = self.adoption.restart_command
            if command and self.handle is not None:
                old = self.handle
                self._set_state(S.STOPPING, "restarting")
                await self._run_command(
                    command, self.adoption.stop_timeout + self.adoption.start_timeout
                )
                self.handle = None
                self.record.process = None
                self._set_state(S.STOPPED, "restarting")
                if old.is_alive():  # reloaded in place (same main process)
                    self._set_state(S.STARTING, "restarted by command")
                    self._adopt(old, fresh=False)
                    self._set_state(S.RUNNING, f"restarted by command (pid {old.pid})")
                    return self.status()
                handle, why = await self._wait_for_process(self.adoption.start_timeout)
                self._set_state(S.STARTING, "restarted by command")
                if handle is None:
                    self._set_state(S.FAILED, f"restart command ran but {why}")
                    raise ConflictError(f"restart command ran but {why}")
                self.record.started_here = True  # the restart command started it
                self._adopt(handle, fresh=False)
                self.record.started_at = _create_time(handle)
                self._set_state(S.RUNNING, f"restarted by command (pid {handle.pid})")
                return self.status()
            if not self.can_start:
                raise ConflictError("cannot restart: the module has no start or restart command")
            if self.handle is not None:
                await self._stop_adopted("restarting")
            else:
                self._settle("restarting")
            await self._start_process()
            return self.status()

    async def destroy(self) -> None:
        """Stop what GDOS started, release what it found, delete the instance's folder.

        A tracked process GDOS started (the ``spawn`` command's, or what its start or
        restart command brought up) is stopped like a packaged instance's: stop
        command, stop signal, then SIGKILL to its tree. Every other process GDOS ran
        for the instance carries its tag and is killed too. A process GDOS found
        running (by pid file or match, or a successor after an outside restart) keeps
        running, released.
        """
        async with self.lock:
            self._cancel_backoff()
            self._set_desired(DesiredState.STOPPED)
            handle = self.handle
            ours = self.record.started_here
            if handle is not None and (
                ours or handle.pid in self.executor.find_tag(self.instance_id)
            ):
                with contextlib.suppress(SpawnError):  # no stop command: SIGKILL below
                    await self._stop_adopted("destroying")
            self.destroyed = True
            self.handle = None
            self._cancel_health()
            self.executor.kill_tag(self.instance_id)
            if self._watcher is not None:
                self._watcher.cancel()
            await asyncio.to_thread(shutil.rmtree, self.paths.root, True)

    # --- worker start -----------------------------------------------------------------------

    def resume(self) -> None:
        """Re-attach to the tracked process, or to its successor, or converge."""
        ref = self.record.process
        handle = self.executor.attach(ref) if ref is not None else None
        if handle is None and self.record.desired_state == DesiredState.RUNNING:
            found, _ = self.resolver(self.adoption)
            if found is not None:
                handle = self._attach(found)
                if handle is not None:
                    self.record.started_at = found.create_time
                    self.record.started_here = False  # a successor GDOS did not start
        if handle is not None:
            self._adopt(handle, fresh=False)
            self.record.state = S.RUNNING
            self.record.reason = f"running (re-attached to pid {handle.pid})"
            self._save()
            return
        self.record.process = None
        if self.record.state not in (S.STOPPED, S.FAILED):
            self.record.state = S.STOPPED
            self.record.reason = "exited while the worker was down"
        self._save()
        if self.record.desired_state == DesiredState.RUNNING and self.can_start:
            task = asyncio.get_running_loop().create_task(self._resume_start())
            self._helpers.add(task)
            task.add_done_callback(self._helpers.discard)

    async def _resume_start(self) -> None:
        async with self.lock:
            if self.record.state == S.STOPPED and self.handle is None:
                with contextlib.suppress(ConflictError, SpawnError):
                    await self._start_process(restarted=True)

    async def close(self) -> None:
        for task in list(self._helpers):
            task.cancel()
        if self._follow_task is not None:
            self._follow_task.cancel()
        await super().close()


def _with_manifest(record: InstanceRecord, manifest: Manifest) -> InstanceSpec:
    return attrs.evolve(record.spec, manifest=manifest.to_dict())


def _create_time(handle: ProcessHandle) -> float:
    return handle.ref.create_time
