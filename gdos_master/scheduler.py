"""Run units of work with a parallelism limit; a unit's verification holds no slot.

Batch actions (and, next, rollouts) act on many instances with at most N at a
time. Each :class:`Unit` has two phases:

* **act** holds one of ``parallel`` slots: start (or stop, or upgrade) an
  instance and wait until it got there (``running``, or ``healthy`` when the
  job waits for health). It returns the unit's verification, or ``None``;
* **verify** runs after the slot is free: checks that need only time, such as
  "stays running with one pid for ``min_running`` seconds". A failure there
  still fails the unit (the unit records it); it just does not keep the next
  unit waiting.

Units begin in the order given. :meth:`Scheduler.pause` keeps units that have
not begun from beginning (those acting or verifying go on), :meth:`resume`
lets them go, :meth:`halt` skips them for good; :meth:`run` returns the keys
of the units it skipped.

Example::

    async def start_web() -> Verify | None:
        await orchestrator.start(instance_id)
        return stays_up  # checked while the next instance starts

    skipped = await Scheduler(parallel=4).run([Unit("web-1", start_web), ...])
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

import attrs

__all__ = ["Scheduler", "Unit", "Verify"]

Verify = Callable[[], Awaitable[None]]


@attrs.frozen
class Unit:
    """One unit of work: ``act`` runs in a slot and returns what to verify after it."""

    key: str
    act: Callable[[], Awaitable[Verify | None]]


class Scheduler:
    """At most ``parallel`` units act at once; verifications run beside them, slot-free."""

    def __init__(self, parallel: int) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self.parallel = parallel
        self._slots = asyncio.Semaphore(parallel)
        self._open = asyncio.Event()
        self._open.set()
        self._halted = False
        self.acting = 0  # units holding a slot now
        self.verifying = 0  # units checking after their slot was freed

    def pause(self) -> None:
        """Begin no further unit until :meth:`resume` (units under way go on)."""
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def halt(self) -> None:
        """Skip every unit that has not begun (for good); units under way finish."""
        self._halted = True
        self._open.set()

    @property
    def halted(self) -> bool:
        return self._halted

    async def run(self, units: Iterable[Unit]) -> list[str]:
        """Run ``units`` to the end; return the keys of those skipped by :meth:`halt`.

        A unit's own failures are the unit's to record; an exception escaping ``act`` or a
        verification (a bug) cancels the other units and propagates.
        """
        skipped: list[str] = []

        async def one(unit: Unit) -> None:
            async with self._slots:
                await self._open.wait()
                if self._halted:
                    skipped.append(unit.key)
                    return
                self.acting += 1
                try:
                    verify = await unit.act()
                finally:
                    self.acting -= 1
            if verify is not None:
                self.verifying += 1
                try:
                    await verify()
                finally:
                    self.verifying -= 1

        async with asyncio.TaskGroup() as group:
            for unit in units:
                group.create_task(one(unit))
        return skipped
