"""The worker runtime and its small HTTP app (``/healthz``, ``/status``).

The HTTP port accepts no commands: everything the worker does comes over the
agent channel it dials to the master.

Example::

    worker = Worker(settings)
    app = create_app(worker)   # hypercorn serves app; the runtime starts with it
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from quart import Quart, Response

from gdos_sdk.config import WorkerSettings
from gdos_sdk.executors import Executor, default_executor
from gdos_worker import __version__
from gdos_worker.agent import Agent
from gdos_worker.state import WorkDir
from gdos_worker.supervisor import Supervisor

__all__ = ["Worker", "create_app"]

log = logging.getLogger("gdos.worker")

LOG_ROTATE_EVERY = 5.0


class Worker:
    """Work dir + supervisor + agent, started and stopped together."""

    def __init__(self, settings: WorkerSettings, *, executor: Executor | None = None) -> None:
        self.settings = settings
        self.workdir = WorkDir(Path(settings.runtime.work_dir))
        self.workdir.prepare()
        self.workdir.lock()
        identity = self.workdir.load_identity()
        self.agent = Agent(settings, self.workdir, identity, __version__)
        self.supervisor = Supervisor(
            self.workdir,
            executor or default_executor(),
            node_id=identity.node_id,
            download=self.agent.download,
            on_change=self.agent.on_instance_change,
            fetch_attempts=settings.runtime.fetch_attempts,
            default_user=settings.runtime.default_user,
            keep_versions=settings.runtime.keep_versions,
        )
        self.agent.supervisor = self.supervisor
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        self.supervisor.load()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.agent.run()),
            loop.create_task(self.agent.sample_forever()),
            loop.create_task(self._housekeeping()),
        ]

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(LOG_ROTATE_EVERY)
            await asyncio.to_thread(self.supervisor.rotate_logs)

    async def stop(self) -> None:
        """Stop talking to the master; instances keep running (KillMode=process semantics)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.agent.close()
        await self.supervisor.close()
        self.workdir.unlock()

    def health(self) -> dict[str, Any]:
        """What the unauthenticated ``/healthz`` shows: whether this worker is well, no more.

        No node id, master URL, version or error text: anyone who reaches the port may
        read this. Those are in the worker's log and, for admins, on the master.
        """
        states: dict[str, int] = {}
        for status in self.supervisor.inventory():
            states[status.state.value] = states.get(status.state.value, 0) + 1
        return {"status": "ok", "connected": self.agent.connected.is_set(), "instances": states}


def create_app(worker: Worker) -> Quart:
    """The worker's HTTP app; serving it also runs the worker."""
    app = Quart("gdos_worker", static_folder=None)

    @app.route("/healthz")
    async def healthz() -> Response:
        import json

        return Response(json.dumps(worker.health()), content_type="application/json")

    @app.before_serving
    async def begin() -> None:
        await worker.start()

    @app.after_serving
    async def end() -> None:
        await worker.stop()

    return app
