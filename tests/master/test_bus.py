"""The bus between masters (gdos_master.bus): the in-process default and a real NATS server."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from gdos_master.bus import Bus, LocalBus, LocalNetwork, NatsBus, subject_matches
from gdos_sdk.errors import TransportError
from gdos_sdk.localnats import LocalNats

pytestmark = pytest.mark.anyio


def test_subjects_match_like_nats() -> None:
    assert subject_matches("gdos.live.>", "gdos.live.node.n1")
    assert not subject_matches("gdos.live.>", "gdos.live")
    assert subject_matches("gdos.node.*.command", "gdos.node.n1.command")
    assert not subject_matches("gdos.node.*.command", "gdos.node.n1.x.command")
    assert subject_matches("gdos.changed", "gdos.changed")
    assert not subject_matches("gdos.changed", "gdos.changed.more")


def test_the_default_master_never_imports_the_nats_client() -> None:
    code = (
        "import sys\n"
        "from gdos_master import app, bus\n"
        "b = bus.Bus.open('', master_id='m')\n"
        "assert isinstance(b, bus.LocalBus)\n"
        "print('nats' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


async def _wait(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _received(
    make: Callable[[str], Bus],
) -> None:
    """Publish/subscribe and request/reply between two buses; the sender never hears itself."""
    a, b = make("a"), make("b")
    await a.start()
    await b.start()
    try:
        got_a: list[tuple[str, dict[str, Any]]] = []
        got_b: list[tuple[str, dict[str, Any]]] = []
        arrived = asyncio.Event()

        async def on_a(subject: str, data: dict[str, Any]) -> None:
            got_a.append((subject, data))

        async def on_b(subject: str, data: dict[str, Any]) -> None:
            got_b.append((subject, data))
            arrived.set()

        await a.subscribe("gdos.live.>", on_a)
        await b.subscribe("gdos.live.>", on_b)

        async def answer(data: dict[str, Any]) -> dict[str, Any]:
            return {"echo": data["n"] * 2, "by": "b"}

        await b.serve("gdos.node.n1.command", answer)
        await asyncio.sleep(0.1)  # NATS: the subscriptions reach the server
        await a.publish("gdos.live.node.n1", {"samples": [1, 2]})
        await asyncio.wait_for(arrived.wait(), 5)
        assert got_b == [("gdos.live.node.n1", {"samples": [1, 2]})]
        reply = await a.request("gdos.node.n1.command", {"n": 21}, timeout=5)
        assert reply == {"echo": 42, "by": "b"}
        with pytest.raises(TransportError, match=r"no master answers gdos\.node\.n2\.command"):
            await a.request("gdos.node.n2.command", {}, timeout=2)
        # b serves n1, but its own request does not come back to itself
        with pytest.raises(TransportError, match="no master answers"):
            await b.request("gdos.node.n1.command", {"n": 1}, timeout=2)
        # What orjson refuses or writes otherwise crosses as json.dumps wrote it (NaN, an
        # integer past 64 bits, text outside ASCII); checked samples take the fast encoder.
        odd = {"value": math.nan, "big": 2**70, "name": "hôte-π"}
        sample = {"ts": 1.5, "cpu": 12.25, "net": [{"interface": "eth0", "rx_bps": 3.0}]}
        arrived.clear()
        await a.publish("gdos.live.odd", odd)
        await a.publish("gdos.live.samples", {"batch": [sample]}, finite=True)
        await a.publish("gdos.live.big", {"ts": 2**70}, finite=True)
        await _wait(lambda: len(got_b) == 4)
        subject, data = got_b[1]
        assert subject == "gdos.live.odd" and math.isnan(data["value"])
        assert (data["big"], data["name"]) == (2**70, "hôte-π")
        assert got_b[2:] == [
            ("gdos.live.samples", {"batch": [sample]}),
            ("gdos.live.big", {"ts": 2**70}),
        ]
        await asyncio.sleep(0.1)
        assert got_a == []  # a published, b did not: a heard nothing, not even itself
    finally:
        await a.close()
        await b.close()


async def test_local_bus_between_masters_of_one_process() -> None:
    network = LocalNetwork()
    await _received(lambda name: LocalBus(name, network))


async def test_a_lone_local_bus_publishes_to_nobody() -> None:
    bus = Bus.open("", master_id="m")
    assert isinstance(bus, LocalBus) and bus.connected and not bus.shared
    await bus.publish("gdos.live.fleet", {"x": 1})
    with pytest.raises(TransportError, match="no master answers"):
        await bus.request("gdos.node.n.command", {}, timeout=1)


async def test_nats_bus_between_two_masters(nats: LocalNats) -> None:
    await _received(lambda name: Bus.open(nats.url, master_id=name))


async def test_nats_bus_reports_a_lost_server_and_comes_back(nats: LocalNats) -> None:
    a, b = NatsBus(nats.url, master_id="a"), NatsBus(nats.url, master_id="b")
    await a.start()
    await b.start()
    try:
        assert a.connected and a.shared
        heard: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_b(subject: str, data: dict[str, Any]) -> None:
            await heard.put(data)

        await b.subscribe("gdos.changed", on_b)
        nats.stop()
        for _ in range(100):
            if not a.connected:
                break
            await asyncio.sleep(0.05)
        assert not a.connected and a.lost_at is not None
        nats.start()
        for _ in range(200):
            if a.connected and b.connected:
                break
            await asyncio.sleep(0.05)
        assert a.connected and b.connected and a.lost_at is None
        await asyncio.sleep(0.2)  # b's subscription is sent again on reconnect
        await a.publish("gdos.changed", {"after": "outage"})
        assert await asyncio.wait_for(heard.get(), 5) == {"after": "outage"}
    finally:
        await a.close()
        await b.close()


async def test_nats_bus_that_cannot_connect_is_a_clear_error() -> None:
    nowhere = LocalNats()  # never started: nothing listens on its port
    try:
        bus = NatsBus(nowhere.url, master_id="a")
        bus.connect_wait = 2.0
        with pytest.raises(TransportError, match=r"cannot reach the bus at nats://127\.0\.0\.1"):
            await bus.start()
        assert not bus.connected
    finally:
        nowhere.close()
