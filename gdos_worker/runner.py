"""One instance's supervisor: spawn, watch, restart with backoff, stop, destroy, re-attach.

All state changes go through :meth:`InstanceRunner._set_state`, which checks
the transition, persists the record and reports the change. Operator actions
hold the runner's lock, so a stop and a crash-restart can never interleave;
the exit watcher takes the same lock and ignores a process that an action has
already replaced or stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from gdos_sdk.errors import NotFoundError, SpawnError
from gdos_sdk.executors import Executor, ExitInfo, ProcessHandle, SpawnSpec
from gdos_sdk.executors.accounts import (
    Account,
    can_switch_accounts,
    current_account,
    lookup_account,
    switch_arguments,
)
from gdos_sdk.filemodes import private_dir
from gdos_sdk.health import HealthTracker
from gdos_sdk.manifest import HealthCheck, Manifest
from gdos_sdk.protocol import InstanceSpec, InstanceStatus
from gdos_sdk.restart import RestartTracker
from gdos_sdk.states import DesiredState, Health, InstanceState, check_transition
from gdos_worker.health import probe
from gdos_worker.logs import rotate_if_needed
from gdos_worker.state import InstancePaths, InstanceRecord, WorkDir

__all__ = ["InstanceRunner", "build_env", "resolve_argv"]

log = logging.getLogger("gdos.worker.runner")

S = InstanceState

# Variables of the worker's own configuration (join token!) never reach a service.
_PRIVATE_ENV_PREFIXES = ("OPS_WORKER_", "OPS_MASTER_")


def build_env(
    base: dict[str, str],
    manifest: Manifest,
    overrides: dict[str, str],
    gdos: dict[str, str],
) -> dict[str, str]:
    """worker env < manifest env < module overrides < GDOS_* variables."""
    env = {k: v for k, v in base.items() if not k.startswith(_PRIVATE_ENV_PREFIXES)}
    env.update(manifest.env)
    env.update(overrides)
    env.update(gdos)
    return env


def resolve_argv(app_dir: Path, entrypoint: str, args: list[str], env: dict[str, str]) -> list[str]:
    """The command line: entrypoint from the package root if it is there, else from PATH.

    ``${VAR}`` in arguments is replaced from the instance's environment, so a
    module can pass ``--port ${PORT}`` with ``PORT`` set per module.
    """
    candidate = (app_dir / entrypoint).resolve()
    if app_dir.resolve() in candidate.parents and candidate.is_file():
        program = str(candidate)
    else:
        found = shutil.which(entrypoint, path=env.get("PATH", os.defpath))
        if found is None:
            raise SpawnError(
                f"entrypoint {entrypoint!r} is neither a file in the package nor on PATH"
            )
        program = found
    expanded = [string.Template(a).safe_substitute(env) for a in args]
    return [program, *expanded]


def _signal_number(name: str) -> int:
    name = name.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    return int(getattr(signal, name, signal.SIGTERM))


class InstanceRunner:
    """Keeps one instance's process in its desired state."""

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
        default_user: str = "",
    ) -> None:
        self.record = record
        self.default_user = default_user
        self.workdir = workdir
        self.paths: InstancePaths = workdir.paths(record.spec.instance_id)
        self.executor = executor
        self.node_id = node_id
        self.on_change = on_change
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.clock = clock
        self._configure(record.spec)
        self._health_task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        self.handle: ProcessHandle | None = None
        self._started_mono = 0.0
        self._watcher: asyncio.Task[None] | None = None
        self._backoff_task: asyncio.Task[None] | None = None
        self.destroyed = False

    def _configure(self, spec: InstanceSpec) -> None:
        """What the spec's manifest and module settings decide: checks, restart policy."""
        self.manifest = Manifest.from_dict(spec.manifest)
        override = spec.health_check
        # A module's override replaces the package's check.
        self.health_check: HealthCheck | None = (
            HealthCheck.from_dict(override, path="$.health_check")
            if override is not None
            else self.manifest.health_check
        )
        policy = self.manifest.restart
        self.tracker = RestartTracker(
            policy=policy.policy,
            max_restarts=policy.max_restarts,
            window_seconds=policy.window_seconds,
            backoff_initial=policy.backoff_initial,
            backoff_max=policy.backoff_max,
            start_seconds=policy.start_seconds,
        )

    @property
    def instance_id(self) -> str:
        return self.record.spec.instance_id

    # --- state ------------------------------------------------------------------------------

    def status(self) -> InstanceStatus:
        r = self.record
        return InstanceStatus(
            instance_id=self.instance_id,
            desired_state=r.desired_state,
            state=r.state,
            # Health describes a running process; a record settled while the worker was
            # down may still carry the old run's.
            health=r.health if r.state == S.RUNNING else Health.NONE,
            pid=r.process.pid if r.process is not None else None,
            started_at=r.started_at,
            restarts=r.restarts,
            exit_code=r.exit_code,
            reason=r.reason,
            package=r.spec.package,
            version=r.spec.version,
        )

    def _save(self) -> None:
        if not self.destroyed:
            self.workdir.save_record(self.record)

    def _set_state(self, new: InstanceState, reason: str | None = None) -> None:
        """The only place the state changes: check, persist, report."""
        check_transition(self.record.state, new)
        self.record.state = new
        if new != S.RUNNING:
            self.record.health = Health.NONE  # health describes a running process only
        if reason is not None:
            self.record.reason = reason
        self._save()
        log.info("instance %s -> %s %s", self.instance_id, new.value, self.record.reason)
        self.on_change(self.status())

    def _set_desired(self, desired: DesiredState) -> None:
        if self.record.desired_state != desired:
            self.record.desired_state = desired
            self._save()

    # --- process control --------------------------------------------------------------------

    def account(self) -> Account | None:
        """The account this instance's processes run as; ``None``: the worker's own.

        The module's ``user``/``group``, else the manifest's, else (a worker running as
        root) ``runtime.default_user``. A worker that is not root runs everything as
        itself and refuses another explicit account when it spawns.

        Raises:
            SpawnError: the account or group does not exist on this node.
        """
        spec = self.record.spec
        user = spec.user or self.manifest.user or ""
        group = spec.group or self.manifest.group or ""
        if not user:
            if self.default_user and can_switch_accounts():
                user = self.default_user
            elif group:
                user = current_account().name
            else:
                return None
        return lookup_account(user, group)

    def _instance_env(self, account: Account | None = None, **extra: str) -> dict[str, str]:
        """The environment of a process run for this instance, with the GDOS_* variables."""
        spec = self.record.spec
        gdos = {
            "GDOS_INSTANCE_ID": spec.instance_id,
            "GDOS_NODE_ID": self.node_id,
            "GDOS_MODULE": spec.module_name,
            "GDOS_SYSTEM_ID": spec.system_id,
            "GDOS_INSTANCE_DIR": str(self.paths.root),
            "GDOS_LOG_DIR": str(self.paths.logs),
            "GDOS_WORK_DIR": str(self.workdir.root),
            **extra,
        }
        base = self.base_env if account is None else {**self.base_env, **account.env()}
        return build_env(base, self.manifest, spec.env, gdos)

    def _spawn_spec(self) -> SpawnSpec:
        spec = self.record.spec
        account = self.account()
        env = self._instance_env(
            account,
            GDOS_PACKAGE=spec.package,
            GDOS_VERSION=spec.version,
            GDOS_APP_DIR=str(self.paths.app),
        )
        entrypoint = self.manifest.entrypoint
        if not entrypoint:
            raise SpawnError("the manifest has no entrypoint")
        args = spec.args if spec.args is not None else list(self.manifest.args)
        argv = resolve_argv(self.paths.app, entrypoint, args, env)
        private_dir(self.paths.logs)
        self.workdir.hand_over(self.paths, account)
        return SpawnSpec(
            argv=argv,
            cwd=str(self.paths.app),
            env=env,
            log_path=str(self.paths.console_log),
            tag=spec.instance_id,
            account=account,
        )

    def _spawn(self, restarted_after: str = "") -> None:
        """STOPPED/BACKOFF/FAILED -> STARTING -> RUNNING (or FAILED). Caller holds the lock.

        ``restarted_after``: why the previous run ended, for a restart by the policy; the
        running state's reason keeps it (a quick restart leaves no other trace of a crash).
        """
        self._set_state(S.STARTING, "starting")
        try:
            handle = self.executor.spawn(self._spawn_spec())
        except SpawnError as exc:
            self.record.process = None
            self._set_state(S.FAILED, f"cannot start: {exc.message}")  # STARTING -> FAILED
            raise
        self._adopt(handle, fresh=True)
        reason = f"running (restarted after: {restarted_after})" if restarted_after else "running"
        self._set_state(S.RUNNING, reason)  # STARTING -> RUNNING

    def _adopt(self, handle: ProcessHandle, *, fresh: bool) -> None:
        self.handle = handle
        self.record.process = handle.ref
        if fresh:
            self.record.started_at = time.time()
            self.record.exit_code = None
            self._started_mono = self.clock()
        else:  # re-attached: the run began before this worker did
            started = self.record.started_at or time.time()
            self._started_mono = self.clock() - max(0.0, time.time() - started)
        self._watcher = asyncio.get_running_loop().create_task(self._watch(handle))
        self._start_health(handle)

    async def _watch(self, handle: ProcessHandle) -> None:
        info = await handle.wait()
        async with self.lock:
            if self.handle is not handle or self.destroyed:
                return  # an operator action already took care of this process
            if not handle.is_child and info.code is None and info.signal is None:
                info = attrs.evolve(info, reason=self._vanished)
            self._on_unexpected_exit(info)
            # Still under the lock: a restart (which waits for it) finds the old run gone.
            await self._clear_run(handle)

    # Why a process that is not this worker's child ended is all its exit tells.
    _vanished = "the process vanished (its exit status cannot be read after a worker restart)"

    async def _clear_run(self, handle: ProcessHandle) -> None:
        """Stop what is left of a run whose main process exited on its own.

        Its children, the process group, and every process tagged with the instance (a
        ``setsid()`` grandchild too) get ``stop_signal``, then SIGKILL after
        ``stop_timeout``, exactly as a stop would: otherwise a crash restart would start a
        second tree beside the old one (a forking server's old children keeping its port).
        """
        result = await self.executor.stop(
            handle,
            stop_signal=_signal_number(self.manifest.stop_signal),
            timeout=self.manifest.stop_timeout,
        )
        left = self.executor.kill_tag(self.instance_id)
        if result.killed_pids or left:
            log.warning(
                "instance %s: killed %d leftover process(es) of the exited run",
                self.instance_id,
                len(result.killed_pids) + len(left),
            )

    def _on_unexpected_exit(self, info: ExitInfo) -> None:
        self.handle = None
        self.record.process = None
        self.record.exit_code = info.code
        now = self.clock()
        decision = self.tracker.on_exit(
            now=now, ran_for=now - self._started_mono, exit_code=info.code
        )
        if decision.restart:
            # RUNNING -> BACKOFF
            self._set_state(S.BACKOFF, f"{info.reason}; restarting in {decision.delay:.1f} s")
            self._backoff_task = asyncio.get_running_loop().create_task(
                self._restart_later(decision.delay)
            )
        elif decision.give_up:
            self._set_state(S.FAILED, f"{info.reason}; {decision.reason}")  # RUNNING -> FAILED
        else:
            self._set_state(S.STOPPED, f"{info.reason}; {decision.reason}")  # RUNNING -> STOPPED

    async def _restart_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self.lock:
            if self.record.state != S.BACKOFF or self.record.desired_state != DesiredState.RUNNING:
                return
            self._backoff_task = None
            self.record.restarts += 1
            previous = self.record.reason.rpartition("; restarting in ")[0]
            with contextlib.suppress(SpawnError):  # already recorded as FAILED
                self._spawn(restarted_after=previous)

    def _cancel_backoff(self) -> None:
        if self._backoff_task is not None:
            self._backoff_task.cancel()
            self._backoff_task = None

    async def _run_stop_command(self) -> None:
        entry = self.manifest.stop_entrypoint
        if not entry:
            return
        try:
            spec = self._spawn_spec()
            argv = resolve_argv(self.paths.app, entry, list(self.manifest.stop_args), spec.env)
        except SpawnError as exc:
            log.warning("instance %s: stop command unusable: %s", self.instance_id, exc.message)
            return
        try:
            switch = switch_arguments(spec.account, argv[0])
        except SpawnError as exc:
            log.warning("instance %s: stop command unusable: %s", self.instance_id, exc.message)
            return
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=spec.cwd,
            env=spec.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            **switch,
        )
        try:
            await asyncio.wait_for(proc.wait(), self.manifest.stop_timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                if sys.platform == "win32":
                    proc.kill()  # no process groups to kill there
                else:
                    os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def _stop_process(self, reason: str) -> None:
        """RUNNING -> STOPPING -> STOPPED. Caller holds the lock."""
        handle = self.handle
        if handle is None:
            return
        self._set_state(S.STOPPING, "stopping")
        await self._run_stop_command()
        result = await self.executor.stop(
            handle,
            stop_signal=_signal_number(self.manifest.stop_signal),
            timeout=self.manifest.stop_timeout,
        )
        self.handle = None
        self.record.process = None
        if result.exit is not None:
            self.record.exit_code = result.exit.code
        suffix = (
            f" (killed {len(result.killed_pids)} process(es) after timeout)"
            if result.forced
            else ""
        )
        self._set_state(S.STOPPED, reason + suffix)

    # --- health checks ----------------------------------------------------------------------

    def _start_health(self, handle: ProcessHandle) -> None:
        """Check the health of the run ``handle`` stands for, in its own task."""
        self._cancel_health()
        if self.health_check is None:
            return
        self.record.health = Health.STARTING  # reported by the state change that follows
        self._health_task = asyncio.get_running_loop().create_task(
            self._check_health(handle, self.health_check)
        )

    def _cancel_health(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            self._health_task = None

    def _set_health(self, health: Health, detail: str) -> None:
        if self.record.health == health:
            return
        self.record.health = health
        if health == Health.UNHEALTHY:
            self.record.reason = f"unhealthy: {detail}"
        elif self.record.reason.startswith("unhealthy: "):
            self.record.reason = f"running ({detail})"
        self._save()
        log.info("instance %s health -> %s (%s)", self.instance_id, health.value, detail)
        self.on_change(self.status())

    def _check_env(self, account: Account | None) -> dict[str, str]:
        try:
            return self._spawn_spec().env
        except SpawnError:  # no entrypoint (an adopted process): the environment still helps
            base = self.base_env if account is None else {**self.base_env, **account.env()}
            return build_env(base, self.manifest, self.record.spec.env, {})

    async def _check_health(self, handle: ProcessHandle, check: HealthCheck) -> None:
        """Probe until this run ends; a check never blocks the loop or an operator action.

        A ``cmd`` check runs as the instance's account, like the service itself.
        """
        tracker = HealthTracker.for_check(check)
        tracker.begin(self.clock())
        cwd = self.paths.app if self.paths.app.is_dir() else self.paths.root
        while True:
            await asyncio.sleep(tracker.delay(self.clock()))
            if self.handle is not handle or self.destroyed:
                return
            try:
                account = self.account()
            except SpawnError as exc:
                ok, detail = False, exc.message
            else:
                ok, detail = await probe(
                    check, cwd=cwd, env=self._check_env(account), account=account
                )
            if self.handle is not handle or self.destroyed:
                return
            verdict = tracker.record(ok, self.clock())
            self._set_health(verdict.health, detail)
            if verdict.restart and await self._restart_unhealthy(handle, detail):
                return

    async def _restart_unhealthy(self, handle: ProcessHandle, detail: str) -> bool:
        """``check_restart``: stop a run that keeps failing its check, restart it by policy.

        False when the policy keeps it (``never``): it stays running, still checked.
        """
        async with self.lock:
            if (
                self.handle is not handle
                or self.destroyed
                or self.record.desired_state != DesiredState.RUNNING
            ):
                return True
            now = self.clock()
            decision = self.tracker.on_exit(
                now=now, ran_for=now - self._started_mono, exit_code=None
            )
            if not decision.restart and not decision.give_up:
                log.warning(
                    "instance %s unhealthy, not restarted: %s", self.instance_id, decision.reason
                )
                return False
            self.handle = None  # the exit watcher leaves this exit to us
            self._health_task = None  # this very task; it ends after this call
            result = await self.executor.stop(
                handle,
                stop_signal=_signal_number(self.manifest.stop_signal),
                timeout=self.manifest.stop_timeout,
            )
            self.record.process = None
            if result.exit is not None:
                self.record.exit_code = result.exit.code
            why = f"unhealthy ({detail})"
            if decision.give_up:
                self._set_state(S.FAILED, f"{why}; {decision.reason}")  # RUNNING -> FAILED
                return True
            # RUNNING -> BACKOFF
            self._set_state(S.BACKOFF, f"{why}; restarting in {decision.delay:.1f} s")
            self._backoff_task = asyncio.get_running_loop().create_task(
                self._restart_later(decision.delay)
            )
            return True

    # --- operator actions -------------------------------------------------------------------

    async def start(self) -> InstanceStatus:
        """Desired state running; spawn unless already running."""
        async with self.lock:
            self._set_desired(DesiredState.RUNNING)
            if self.record.state in (S.RUNNING, S.STARTING) and self.handle is not None:
                return self.status()
            self._cancel_backoff()
            self.tracker.reset()
            self._spawn()
            return self.status()

    async def stop(self) -> InstanceStatus:
        """Desired state stopped; stop the whole process tree. Never restarted after."""
        async with self.lock:
            self._set_desired(DesiredState.STOPPED)
            self._cancel_backoff()
            if self.handle is not None:
                await self._stop_process("stopped by operator")
            elif self.record.state in (S.BACKOFF, S.FAILED, S.RUNNING, S.STARTING):
                self._set_state(S.STOPPED, "stopped by operator")
            return self.status()

    async def restart(self) -> InstanceStatus:
        async with self.lock:
            self._set_desired(DesiredState.RUNNING)
            self._cancel_backoff()
            if self.handle is not None:
                await self._stop_process("restarting")
            elif self.record.state in (S.BACKOFF, S.FAILED):
                self._set_state(S.STOPPED, "restarting")
            self.tracker.reset()
            self._spawn()
            return self.status()

    async def upgrade(self, spec: InstanceSpec) -> InstanceStatus:
        """Run ``spec``'s version, extracted in ``releases/<sha256>``: stop, switch, start.

        The instance keeps its id, logs and restart count; its restart budget starts
        afresh. It starts again only if its desired state is running; a new version that
        cannot start leaves it ``failed`` with the reason (the answer is still its status:
        the switch happened).

        Raises:
            NotFoundError: the instance was destroyed meanwhile.
        """
        async with self.lock:
            if self.destroyed:
                raise NotFoundError(f"instance {self.instance_id} was destroyed")
            old = self.record.spec
            self._cancel_backoff()
            # From here until the switch is recorded, a worker restart finishes or undoes it.
            self.record.upgrade = spec
            self._save()
            why = f"upgrading {old.version} -> {spec.version}"
            if self.handle is not None:
                await self._stop_process(why)  # RUNNING -> STOPPING -> STOPPED
            elif self.record.state in (S.BACKOFF, S.FAILED, S.RUNNING, S.STARTING):
                self._set_state(S.STOPPED, why)
            self._cancel_health()
            await asyncio.to_thread(
                self.workdir.switch_release, self.paths, old.sha256, spec.sha256
            )
            self._configure(spec)
            self.record.spec, self.record.upgrade = spec, None
            self.record.reason = f"upgraded {old.version} -> {spec.version}"
            self._save()
            log.info("instance %s now has %s", self.instance_id, spec.version)
            self.on_change(self.status())  # the version changed (the state may not)
            if self.record.desired_state == DesiredState.RUNNING:
                self.tracker.reset()
                with contextlib.suppress(SpawnError):  # recorded as FAILED, with the reason
                    self._spawn()
            return self.status()

    async def destroy(self) -> None:
        """Stop everything the instance started and delete its folder."""
        async with self.lock:
            self._cancel_backoff()
            self._set_desired(DesiredState.STOPPED)
            if self.handle is not None:
                await self._stop_process("destroying")
            self.destroyed = True
            self._cancel_health()
            # Stragglers that escaped the tree (double-forked daemons) carry the tag.
            self.executor.kill_tag(self.instance_id)
            if self._watcher is not None:
                self._watcher.cancel()
            await asyncio.to_thread(shutil.rmtree, self.paths.root, True)

    # --- worker start -----------------------------------------------------------------------

    def resume(self) -> None:
        """After a worker (re)start: re-attach to a live process or converge to desired state."""
        ref = self.record.process
        if ref is not None:
            handle = self.executor.attach(ref)
            if handle is not None:
                self._adopt(handle, fresh=False)
                if self.record.state != S.RUNNING:
                    self.record.state = S.RUNNING
                    self.record.reason = "running (re-attached)"
                    self._save()
                log.info("instance %s re-attached to pid %d", self.instance_id, ref.pid)
                return
            self.record.process = None
            self.record.exit_code = None
            self.record.reason = "exited while the worker was down"
        # Transient states from a crash mid-action settle to a resting state first.
        if self.record.state not in (S.STOPPED, S.FAILED):
            self.record.state = S.STOPPED
        self._save()
        if self.record.desired_state == DesiredState.RUNNING and self.record.state != S.FAILED:
            # Leftovers of the old run (orphaned children) must not double the service.
            self.executor.kill_tag(self.instance_id)
            self.record.restarts += 1 if ref is not None else 0
            with contextlib.suppress(SpawnError):
                self._spawn()

    def rotate_logs(self) -> None:
        rotate_if_needed(
            self.paths.console_log,
            max_bytes=self.manifest.log.max_bytes,
            backups=self.manifest.log.backups,
        )

    async def close(self) -> None:
        """Forget the process without stopping it (worker shutdown: services keep running)."""
        self._cancel_backoff()
        self._cancel_health()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(BaseException):
                await self._watcher
