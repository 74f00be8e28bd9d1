"""The unit scheduler batches (and rollouts) share: slots for acting, none for verifying."""

from __future__ import annotations

import asyncio

import pytest

from gdos_master.scheduler import Scheduler, Unit, Verify

pytestmark = pytest.mark.anyio


class Log:
    """Units whose act and verification wait for the test to let them go."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.events: list[str] = []
        self.peak_acting = 0
        self.gates: dict[str, asyncio.Event] = {}

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def unit(self, key: str, *, verify: bool = True) -> Unit:
        async def check() -> None:
            self.events.append(f"verify {key}")
            await self.gate(f"verified {key}").wait()
            self.events.append(f"verified {key}")

        async def act() -> Verify | None:
            self.events.append(f"act {key}")
            self.peak_acting = max(self.peak_acting, self.scheduler.acting)
            await self.gate(f"acted {key}").wait()
            return check if verify else None

        return Unit(key, act)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_at_most_parallel_units_act_and_verifying_holds_no_slot() -> None:
    scheduler = Scheduler(2)
    log = Log(scheduler)
    run = asyncio.ensure_future(scheduler.run([log.unit(k) for k in "abcd"]))
    await settle()
    assert log.events == ["act a", "act b"]
    log.gate("acted a").set()
    await settle()
    # a verifies while c takes its slot.
    assert log.events == ["act a", "act b", "verify a", "act c"]
    assert (scheduler.acting, scheduler.verifying) == (2, 1)
    for key in "bcd":
        log.gate(f"acted {key}").set()
    await settle()
    assert scheduler.acting == 0 and scheduler.verifying == 4 and not run.done()
    for key in "abcd":
        log.gate(f"verified {key}").set()
    assert await run == []
    assert log.peak_acting == 2


async def test_pause_resume_and_halt() -> None:
    scheduler = Scheduler(1)
    log = Log(scheduler)
    run = asyncio.ensure_future(scheduler.run([log.unit(k, verify=False) for k in "abc"]))
    await settle()
    scheduler.pause()
    log.gate("acted a").set()
    await settle()
    assert log.events == ["act a"]  # b waits while paused
    scheduler.resume()
    await settle()
    assert log.events == ["act a", "act b"]
    scheduler.halt()
    log.gate("acted b").set()
    assert await run == ["c"]  # never begun: skipped
    assert log.events == ["act a", "act b"]


async def test_a_bug_in_a_unit_ends_the_run() -> None:
    async def broken() -> Verify | None:
        raise RuntimeError("bug")

    async def forever() -> Verify | None:
        await asyncio.Event().wait()
        return None

    with pytest.raises(ExceptionGroup) as caught:
        await Scheduler(2).run([Unit("ok", forever), Unit("bad", broken)])
    assert [str(e) for e in caught.value.exceptions] == ["bug"]
    with pytest.raises(ValueError, match="at least 1"):
        Scheduler(0)
