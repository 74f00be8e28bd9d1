"""All instances of this worker: deploy, act, re-attach, sample, rotate logs.

Deploy fetches the package into the digest cache (verifying SHA-256),
extracts it safely into the instance folder and records the instance; if any
step fails (starting included), everything it created is removed before the
error is reported, so an error answer means nothing of the instance is left.

One deploy per instance runs at a time: a second ``deploy`` of an instance
whose deploy is still going (the master timed out and the reconcile after a
reconnect sends it again) waits for the first one's outcome instead of racing
it, and a ``destroy`` meanwhile cancels it.

An ``upgrade`` moves an instance to another version of its package in place
(:meth:`Supervisor.upgrade`): the new version is fetched and extracted into
``releases/<sha256>/`` while the old one still runs, then the runner stops it,
swaps the folders and starts it again. Each instance keeps ``keep_versions``
versions on disk (the current one included), so going back to a recent one needs
no download; older ones, and cached package zips no instance keeps, are removed.
One upgrade per instance runs at a time (a revert waits for the upgrade it undoes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from gdos_sdk.adoption import AdoptionSpec, ProcessCandidate, discover
from gdos_sdk.archive import safe_extract
from gdos_sdk.codec import unstructure
from gdos_sdk.errors import ConflictError, GdosError, NotFoundError, TransportError
from gdos_sdk.executors import Executor
from gdos_sdk.filemodes import PRIVATE_DIR, private_dir
from gdos_sdk.logformat import log_context
from gdos_sdk.manifest import Manifest
from gdos_sdk.metrics import ProcessTreeSampler
from gdos_sdk.models import InstanceSample
from gdos_sdk.protocol import (
    Command,
    DeployCommand,
    DestroyCommand,
    InstanceSpec,
    InstanceStatus,
    RestartCommand,
    StartCommand,
    StopCommand,
    UpgradeCommand,
)
from gdos_sdk.states import DesiredState, Health, InstanceState
from gdos_worker.adopted import AdoptedRunner
from gdos_worker.runner import InstanceRunner
from gdos_worker.state import InstanceRecord, WorkDir

__all__ = ["Downloader", "Supervisor"]

log = logging.getLogger("gdos.worker.supervisor")

# (download_path, destination file) -> None; raises TransportError on failure
Downloader = Callable[[str, Path], Awaitable[None]]


def _stray(instance_id: str, pids: list[int], problem: str) -> InstanceStatus:
    return InstanceStatus(
        instance_id=instance_id,
        desired_state=DesiredState.STOPPED,
        state=InstanceState.UNKNOWN,
        health=Health.NONE,
        pid=pids[0],
        started_at=None,
        restarts=0,
        exit_code=None,
        reason=f"processes {pids} run without a usable record on the worker ({problem})",
        package="",
        version="",
    )


async def _finish_thread(func: Callable[..., object], *args: object) -> None:
    """Run ``func`` in a thread; if cancelled meanwhile, let the thread end before raising.

    A thread cannot be stopped, so a cancelled deploy must not remove a folder that an
    extraction is still writing into.
    """
    work = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await work
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Supervisor:
    """The set of instance runners on this node."""

    def __init__(
        self,
        workdir: WorkDir,
        executor: Executor,
        *,
        node_id: str,
        download: Downloader,
        on_change: Callable[[InstanceStatus], None],
        base_env: dict[str, str] | None = None,
        fetch_attempts: int = 5,
        fetch_backoff: float = 0.5,
        default_user: str = "",
        keep_versions: int = 3,
    ) -> None:
        if keep_versions < 1:
            raise ValueError("keep_versions must be at least 1 (the version in use)")
        self.keep_versions = keep_versions
        self.workdir = workdir
        self.default_user = default_user
        self.executor = executor
        self.node_id = node_id
        self.download = download
        self.fetch_attempts = fetch_attempts
        self.fetch_backoff = fetch_backoff
        self.on_change = on_change
        self.base_env = base_env
        self.runners: dict[str, InstanceRunner] = {}
        self._fetch_locks: dict[str, asyncio.Lock] = {}
        self._deploying: dict[str, asyncio.Task[InstanceStatus]] = {}
        self._upgrade_locks: dict[str, asyncio.Lock] = {}
        self._upgrading = 0  # upgrades under way (the package cache is not pruned meanwhile)
        # Processes tagged with an instance whose record is unreadable: reported, never kept
        # silently (the master destroys what it has no record of).
        self.strays: dict[str, InstanceStatus] = {}

    def _runner(self, record: InstanceRecord) -> InstanceRunner:
        cls = AdoptedRunner if record.spec.adoption is not None else InstanceRunner
        return cls(
            record,
            workdir=self.workdir,
            executor=self.executor,
            node_id=self.node_id,
            on_change=self._changed,
            base_env=self.base_env,
            default_user=self.default_user,
        )

    def _changed(self, status: InstanceStatus) -> None:
        self.on_change(status)

    def load(self) -> None:
        """Read every instance record and re-attach or converge (call on the event loop)."""
        records, broken = self.workdir.load_records()
        for folder, problem in broken:
            pids = self.executor.find_tag(folder.name)
            if not pids:
                log.error("ignoring %s: %s", folder, problem)
                continue
            log.warning(
                "instance %s: %s, but processes %s carry its tag; reporting them to the master",
                folder.name,
                problem,
                pids,
            )
            self.strays[folder.name] = _stray(folder.name, pids, problem)
        for record in records:
            if record.upgrade is not None:
                self._finish_switch(record)
            try:
                runner = self._runner(record)
            except GdosError as exc:
                log.error("instance %s cannot be loaded: %s", record.spec.instance_id, exc)
                continue
            self.runners[runner.instance_id] = runner
            with log_context(instance_id=runner.instance_id):
                runner.resume()

    def _finish_switch(self, record: InstanceRecord) -> None:
        """Settle an upgrade a worker crash cut short (see ``InstanceRecord.upgrade``).

        The new version still waiting in ``releases/`` means app/ was not switched yet:
        the instance stays on its version (the master asks again). Otherwise app/ holds
        the new version and the record follows.
        """
        new = record.upgrade
        assert new is not None
        paths = self.workdir.paths(record.spec.instance_id)
        if paths.release(new.sha256).is_dir():
            old = paths.release(record.spec.sha256)
            if not paths.app.exists() and old.is_dir():
                os.replace(old, paths.app)  # cut between the two renames: undo the first
            log.warning(
                "instance %s: the switch to %s was cut short; it stays on %s",
                record.spec.instance_id,
                new.version,
                record.spec.version,
            )
        else:
            log.warning(
                "instance %s: finishing the switch to %s cut short by a restart",
                record.spec.instance_id,
                new.version,
            )
            record.spec = new
        record.upgrade = None
        self.workdir.save_record(record)

    def inventory(self) -> list[InstanceStatus]:
        """Every instance of this node, strays (no usable record) included."""
        return [r.status() for r in self.runners.values()] + list(self.strays.values())

    def get(self, instance_id: str) -> InstanceRunner:
        runner = self.runners.get(instance_id)
        if runner is None:
            raise NotFoundError(f"no instance {instance_id} on this node")
        return runner

    # --- commands ---------------------------------------------------------------------------

    async def execute(self, command: Command) -> InstanceStatus | None:
        """Run one command from the master."""
        instance_id = command.spec.instance_id if isinstance(command, DeployCommand) else None
        # Log lines of the command, and of the tasks it starts (watchers, restarts), name it.
        with log_context(instance_id=getattr(command, "instance_id", instance_id)):
            return await self._execute(command)

    async def _execute(self, command: Command) -> InstanceStatus | None:
        if isinstance(command, DeployCommand):
            return await self.deploy(command.spec, start=command.start)
        if isinstance(command, StartCommand):
            return await self.get(command.instance_id).start()
        if isinstance(command, StopCommand):
            return await self.get(command.instance_id).stop()
        if isinstance(command, RestartCommand):
            return await self.get(command.instance_id).restart()
        if isinstance(command, DestroyCommand):
            await self.destroy(command.instance_id)
            return None
        if isinstance(command, UpgradeCommand):
            return await self.upgrade(command.spec)
        raise NotFoundError(f"unknown command {command!r}")

    async def deploy(self, spec: InstanceSpec, *, start: bool) -> InstanceStatus:
        """Deploy (or, if it exists, start) an instance; see the module docstring."""
        running = self._deploying.get(spec.instance_id)
        if running is not None:
            # Wait for it (shielded: cancelling this request must not cancel that deploy).
            # If it failed or was cancelled by a destroy, this request makes its own try.
            try:
                await asyncio.shield(running)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not running.cancelled() or (task is not None and task.cancelling()):
                    raise
            except Exception:  # noqa: S110 - its error was answered to its own request
                pass
        existing = self.runners.get(spec.instance_id)
        if existing is not None:
            if existing.record.spec.sha256 != spec.sha256:
                raise ConflictError(f"instance {spec.instance_id} exists with another package")
            return await existing.start() if start else existing.status()
        task = asyncio.get_running_loop().create_task(self._deploy(spec, start=start))
        self._deploying[spec.instance_id] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._deploying.pop(spec.instance_id, None)
            else:  # this request was cancelled, the deploy goes on: drop it when it ends
                task.add_done_callback(lambda _: self._deploying.pop(spec.instance_id, None))

    async def _deploy(self, spec: InstanceSpec, *, start: bool) -> InstanceStatus:
        if self.strays.pop(spec.instance_id, None) is not None:
            self.executor.kill_tag(spec.instance_id)  # what ran without a record goes first
        if spec.adoption is not None:
            return await self._adopt(spec, start=start)
        Manifest.from_dict(spec.manifest)  # refuse a bad manifest before fetching anything
        paths = self.workdir.paths(spec.instance_id)
        if paths.root.exists():  # debris of an interrupted deploy
            await asyncio.to_thread(shutil.rmtree, paths.root, True)
        try:
            archive = await self._fetch(spec)
            paths.root.mkdir(PRIVATE_DIR, parents=True)
            await _finish_thread(
                functools.partial(safe_extract, archive, paths.app, mode=PRIVATE_DIR)
            )
            paths.logs.mkdir(PRIVATE_DIR)
            record = InstanceRecord(
                spec=spec, desired_state=DesiredState.STOPPED, state=InstanceState.DEPLOYING
            )
            self.workdir.save_record(record)
            runner = self._runner(record)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, paths.root, True)
            raise
        self.runners[spec.instance_id] = runner
        runner._set_state(InstanceState.STOPPED, "deployed")  # DEPLOYING -> STOPPED
        if not start:
            return runner.status()
        try:
            return await runner.start()
        except BaseException:
            # A deploy that cannot start leaves nothing behind either (the master forgets
            # an instance whose deploy it was refused).
            await self.destroy(spec.instance_id)
            raise

    async def _adopt(self, spec: InstanceSpec, *, start: bool) -> InstanceStatus:
        """Record an adopted instance; with ``start``, adopt (or start) its process now.

        If nothing can be adopted the instance is forgotten again and the error
        reported, so a failed adoption leaves nothing behind (the process, if any,
        is never touched).
        """
        paths = self.workdir.paths(spec.instance_id)
        if paths.root.exists():
            await asyncio.to_thread(shutil.rmtree, paths.root, True)
        private_dir(paths.logs)
        record = InstanceRecord(
            spec=spec, desired_state=DesiredState.STOPPED, state=InstanceState.DEPLOYING
        )
        try:
            runner = self._runner(record)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, paths.root, True)
            raise
        self.runners[spec.instance_id] = runner
        runner._set_state(InstanceState.STOPPED, "adopted")  # DEPLOYING -> STOPPED
        if not start:
            return runner.status()
        try:
            return await runner.start()
        except BaseException:
            await self.destroy(spec.instance_id)
            raise

    async def upgrade(self, spec: InstanceSpec) -> InstanceStatus:
        """Move an instance to the package version of ``spec``; see the module docstring.

        Raises:
            NotFoundError: no such instance on this node.
            ConflictError: it is an adopted instance, or ``spec`` is of another package.
            TransportError: the package could not be fetched (the instance still runs
                its version: nothing was stopped).
        """
        lock = self._upgrade_locks.setdefault(spec.instance_id, asyncio.Lock())
        self._upgrading += 1
        try:
            async with lock:
                runner = self.get(spec.instance_id)
                current = runner.record.spec
                if current.adoption is not None or spec.adoption is not None:
                    raise ConflictError("an adopted instance has no package version to change")
                if current.package != spec.package:
                    raise ConflictError(
                        f"instance {spec.instance_id} runs package {current.package!r},"
                        f" not {spec.package!r}"
                    )
                if current.sha256 == spec.sha256:
                    return runner.status()  # asked again (a reconcile, a resumed rollout)
                Manifest.from_dict(spec.manifest)  # refuse a bad manifest before fetching
                await self._prepare_release(spec)
                status = await runner.upgrade(spec)
                paths = self.workdir.paths(spec.instance_id)
                await asyncio.to_thread(self.workdir.prune_releases, paths, self.keep_versions)
        finally:
            self._upgrading -= 1
        if not self._upgrading and not self._deploying:
            await asyncio.to_thread(self._prune_cache)
        return status

    async def _prepare_release(self, spec: InstanceSpec) -> None:
        """``releases/<sha256>/`` of the instance: kept from before, or fetched and extracted."""
        paths = self.workdir.paths(spec.instance_id)
        target = paths.release(spec.sha256)
        if target.is_dir():
            os.utime(target)  # in use again: the last to be pruned
            log.info("instance %s: %s is still on disk", spec.instance_id, spec.version)
            return
        archive = await self._fetch(spec)
        private_dir(paths.releases)
        staging = paths.releases / f".tmp-{spec.sha256}"
        if staging.exists():
            await asyncio.to_thread(shutil.rmtree, staging, True)
        try:
            await _finish_thread(
                functools.partial(safe_extract, archive, staging, mode=PRIVATE_DIR)
            )
            os.replace(staging, target)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, staging, True)
            raise

    def _prune_cache(self) -> None:
        """Remove cached package zips that no instance runs or keeps on disk."""
        wanted = {r.record.spec.sha256 for r in self.runners.values()}
        for runner in self.runners.values():
            wanted.update(self.workdir.kept_releases(runner.paths))
        for path in self.workdir.cache_dir.glob("*.zip"):
            sha = path.stem
            lock = self._fetch_locks.get(sha)
            if sha in wanted or (lock is not None and lock.locked()):
                continue
            path.unlink(missing_ok=True)
            self._fetch_locks.pop(sha, None)

    async def candidates(self, adoption: AdoptionSpec) -> list[ProcessCandidate]:
        """The processes ``adoption`` would adopt on this node, best first."""
        adoption.check()
        found, _ = await asyncio.to_thread(discover, adoption)
        return found

    async def _fetch(self, spec: InstanceSpec) -> Path:
        """The package zip from the cache, downloading and verifying it if needed."""
        target = self.workdir.cached_package(spec.sha256)
        lock = self._fetch_locks.setdefault(spec.sha256, asyncio.Lock())
        async with lock:
            if target.is_file():
                return target
            last: GdosError | None = None
            for attempt in range(self.fetch_attempts):
                if attempt:  # 0.5, 1, 2, 4 ... s between tries
                    await asyncio.sleep(self.fetch_backoff * 2 ** (attempt - 1))
                fd, tmp_name = tempfile.mkstemp(prefix=".dl-", dir=self.workdir.cache_dir)
                tmp = Path(tmp_name)
                os.close(fd)
                try:
                    await self.download(spec.download_path, tmp)
                    digest = await asyncio.to_thread(_sha256, tmp)
                    if digest != spec.sha256:
                        raise TransportError(
                            f"downloaded package has sha256 {digest}, expected {spec.sha256}"
                        )
                    tmp.replace(target)
                    return target
                except GdosError as exc:
                    last = exc
                    log.warning(
                        "download of %s failed (attempt %d): %s",
                        spec.package,
                        attempt + 1,
                        exc.message,
                    )
                finally:
                    tmp.unlink(missing_ok=True)
            assert last is not None
            raise TransportError(
                f"cannot fetch package {spec.package}@{spec.version}"
                f" ({self.fetch_attempts} tries): {last.message}"
            )

    async def destroy(self, instance_id: str) -> None:
        """Stop and remove an instance; one still being deployed is cancelled first."""
        deploying = self._deploying.get(instance_id)
        if deploying is not None and asyncio.current_task() is not deploying:
            deploying.cancel()
            with contextlib.suppress(BaseException):
                await deploying
            if instance_id not in self.runners:
                return  # cancelled before it existed: nothing is left
        if instance_id not in self.runners and self.strays.pop(instance_id, None) is not None:
            self.executor.kill_tag(instance_id)
            await asyncio.to_thread(shutil.rmtree, self.workdir.paths(instance_id).root, True)
            return
        runner = self.get(instance_id)
        await runner.destroy()
        self.runners.pop(instance_id, None)
        self._upgrade_locks.pop(instance_id, None)

    # --- periodic work ----------------------------------------------------------------------

    def samples(self, sampler: ProcessTreeSampler) -> list[InstanceSample]:
        found: list[InstanceSample] = []
        for runner in self.runners.values():
            handle = runner.handle
            if handle is None:
                sampler.forget(runner.instance_id)
                continue
            sample = sampler.sample(runner.instance_id, handle.pid)
            if sample is not None:
                found.append(sample)
        return found

    def rotate_logs(self) -> None:
        for runner in self.runners.values():
            try:
                runner.rotate_logs()
            except OSError as exc:
                log.warning("log rotation for %s failed: %s", runner.instance_id, exc)

    async def close(self) -> None:
        for runner in self.runners.values():
            await runner.close()

    async def stop_all(self) -> None:
        """Stop every instance (desired state ``stopped``), all at once.

        Only for a throw-away worker whose parent ended (``server.parent_pid``): a worker
        that stops otherwise leaves its instances running.
        """
        results = await asyncio.gather(
            *(runner.stop() for runner in self.runners.values()), return_exceptions=True
        )
        for runner, result in zip(self.runners.values(), results, strict=True):
            if isinstance(result, BaseException):
                log.warning("instance %s did not stop: %r", runner.instance_id, result)

    def describe(self) -> list[dict[str, object]]:
        return [unstructure(r.status()) for r in self.runners.values()]
