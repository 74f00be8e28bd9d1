"""Issue 15, item 5 under load: PostgreSQL or NATS restarted while two masters carry work.

Two real ``gdos-master`` processes share one PostgreSQL server and one NATS server (both of
the test's own, so the test may stop them). While the outage happens they carry:

* a real worker (``-master a,b``) running a service, whose pid must not change;
* a few hundred simulated nodes (``tools/fleet_sim.py``, in a thread of the test) sending
  heartbeats, half to each master;
* a live subscriber on master B (the SDK's ``watch``) following the real worker's node,
  whose samples reach B over the bus;
* a writer per master that keeps creating, describing and deleting systems through the SDK
  (one at a time, each with a unique name), recording what every write was answered.

Then: ``/healthz`` says what is lost and since when, and ``ok`` after; the master log has
the lines docs/scale-out.md lists; every write answered 2xx is in the database exactly once
(row and audit entry), every write refused with 503 ``transport_error`` left nothing behind,
nothing was answered 500; the worker stays connected and its service keeps its pid; the
simulated nodes are online on both masters afterwards; and both masters recover by
themselves, without a restart, within bounds that hold at three times the quiet figures.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import psycopg
import pytest

from gdos_sdk import Client, InstanceState
from gdos_sdk.errors import GdosError
from gdos_sdk.localnats import LocalNats
from gdos_sdk.localpg import LocalPostgres
from gdos_sdk.testing import LocalCluster, wait_until

from ..helpers.masters import Masters
from .test_lifecycle import setup_module_instance

pytestmark = pytest.mark.e2e

FLEET_SIM = Path(__file__).resolve().parents[2] / "tools" / "fleet_sim.py"
SIM_NODES = 300
WRITE_PAUSE = 0.05  # between a writer's rounds (create, describe, maybe delete)
# Bounds, about three times what a quiet run measures (given in each test's comments).
NOTICED_WITHIN = 6.0  # from the server stopped to /healthz saying so on both masters
RECOVERED_WITHIN = 10.0  # from the server back to /healthz ok on both masters
NODES_BACK_WITHIN = 15.0  # from /healthz ok to every node online on both masters


def _fleet_sim() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gdos_tools_fleet_sim", FLEET_SIM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SimFleet:
    """``FleetSim`` on an event loop in a thread of its own; :meth:`close` stops both."""

    def __init__(self, urls: list[str], join_token: str, nodes: int) -> None:
        self.sim: Any = _fleet_sim().FleetSim(urls, join_token, nodes=nodes)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fleet-sim")
        self.thread.start()

    def _run(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self._run(self.sim.start(wait=90), 100)

    def connected(self) -> int:
        return int(self.sim.connected())

    def close(self) -> None:
        if self.thread.is_alive():
            try:
                self._run(self.sim.stop(), 30)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(30)
        self.loop.close()


@dataclass
class Outcome:
    """What the master answered one write: ``status`` None when no answer came."""

    op: str
    name: str
    status: int | None
    code: str = ""
    lost: list[str] = field(default_factory=list)
    message: str = ""
    at: float = 0.0
    changed: bool | str = False  # a refusal's details.changed: "unknown" = lost after a commit

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        """Refused for an outage: 503 ``transport_error`` naming what is lost."""
        return self.status == 503 and self.code == "transport_error" and bool(self.lost)

    @property
    def unknown(self) -> bool:
        """Lost after the change was sent: the master says it may have been made."""
        return self.refused and self.changed == "unknown"


class Writer(threading.Thread):
    """Keeps writing systems through one master: create ``<tag>-<n>`` (description v1),
    describe it (v2), and delete every other one; one request at a time, no retries."""

    def __init__(self, url: str, token: str, tag: str) -> None:
        super().__init__(name=f"writer-{tag}")
        self.url, self.token, self.tag = url, token, tag
        self.outcomes: list[Outcome] = []
        self.halt = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with Client(self.url, token=self.token, timeout=30, retries=0) as gdos:
                n = 0
                while not self.halt.is_set():
                    name = f"{self.tag}-{n}"
                    made = self._do("create", name, gdos.create_system, name, "v1")
                    if made is not None:
                        self._do("patch", name, gdos.update_system, made.id, description="v2")
                        if n % 2 == 0:
                            self._do("delete", name, gdos.delete_system, made.id)
                    n += 1
                    self.halt.wait(WRITE_PAUSE)
        except BaseException as exc:  # shown by the test, not lost in the thread
            self.failure = exc

    def _do(self, op: str, name: str, call: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            result = call(*args, **kw)
        except GdosError as exc:
            details = exc.details if isinstance(exc.details, dict) else {}
            lost = list(details.get("lost") or [])
            changed = details.get("changed", False)
            self.outcomes.append(
                Outcome(op, name, exc.status, exc.code, lost, exc.message, time.time(), changed)
            )
            return None
        except Exception as exc:  # no answer at all (the SDK wraps most of these)
            self.outcomes.append(Outcome(op, name, None, type(exc).__name__, [], str(exc)))
            return None
        self.outcomes.append(Outcome(op, name, 200, at=time.time()))
        return result if result is not None else True

    def stop(self) -> None:
        self.halt.set()
        self.join(60)
        assert not self.is_alive(), f"{self.name} did not stop"
        if self.failure is not None:
            raise self.failure


class Follower(threading.Thread):
    """A live subscriber (the SDK's ``watch``) on one topic; keeps when each frame came."""

    def __init__(self, gdos: Client, topic: str) -> None:
        super().__init__(name=f"follow-{topic}")
        self.stream = gdos.watch(topic)
        self.times: list[float] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stream.closed:
                try:
                    self.stream.receive(timeout=0.5)
                except TimeoutError:
                    continue
                self.times.append(time.time())
        except GdosError as exc:
            if not self.stream.closed:
                self.failure = exc

    def stop(self) -> None:
        self.stream.close()
        self.join(30)
        if self.failure is not None:
            raise self.failure


@dataclass
class Rig:
    """Two masters under load; what a test stops and starts is its own."""

    masters: Masters
    pg: LocalPostgres
    nats: LocalNats
    db_url: str
    a: LocalCluster
    b: LocalCluster
    worker_node: str
    instance_id: str
    pid: int
    fleet: SimFleet
    writers: list[Writer]
    follower: Follower

    def health(self, name: str) -> dict[str, Any]:
        return self.masters.health(name)

    def nodes_online(self, name: str) -> int:
        with self.masters.nodes[name].client() as gdos:
            return sum(1 for n in gdos.list_nodes() if n.status.value == "online")


@pytest.fixture
def rig(tmp_path: Path, nats: LocalNats, pack: Callable[..., Path]) -> Iterator[Rig]:
    """Masters a and b on a PostgreSQL server of the test's own and the test's NATS, loaded
    as the module docstring says; everything stopped after, even on failure."""
    with LocalPostgres() as pg:
        url = pg.create_database("gdos")
        group = Masters(tmp_path, url, nats.url)
        fleet: SimFleet | None = None
        writers: list[Writer] = []
        follower: Follower | None = None
        try:
            a, b = group.start("a"), group.start("b")
            worker = a.start_worker("-master", f"{a.url},{b.url}")
            node_id = a.node_id(worker)
            token = a.admin_token()
            with a.client() as gdos:
                instance = setup_module_instance(gdos, node_id, pack("sleeper"), start=True)
            assert instance.state == InstanceState.RUNNING and instance.pid
            fleet = SimFleet([a.url, b.url], group.join_token, SIM_NODES)
            fleet.start()
            for name in ("a", "b"):
                with group.nodes[name].client(token=token) as gdos:
                    wait_until(
                        lambda gdos=gdos: (
                            sum(1 for n in gdos.list_nodes() if n.status.value == "online")
                            == SIM_NODES + 1
                        ),
                        timeout=30,
                        what=f"every node online on {name}",
                    )
            with b.client(token=token) as via_b:
                follower = Follower(via_b, f"node:{node_id}")
            follower.start()
            writers = [Writer(m.url, token, f"w{name}") for name, m in (("a", a), ("b", b))]
            for writer in writers:
                writer.start()
            yield Rig(
                group, pg, nats, url, a, b, node_id, instance.id, instance.pid,
                fleet, writers, follower,
            )  # fmt: skip
        finally:
            for writer in writers:
                writer.halt.set()
            if follower is not None:
                follower.stream.close()
            for thread in [*writers, *([follower] if follower else [])]:
                thread.join(30)
            if fleet is not None:
                fleet.close()
            group.close()


def _outage(
    rig: Rig, what: str, stop: Callable[[], object], start: Callable[[], object], outage: float
) -> float:
    """Load, then ``stop`` the server for ``outage`` seconds, then ``start`` it; checks
    /healthz on the way. Returns the time (``time.time()``) both masters said ``ok`` again."""
    wait_until(lambda: all(_oks(w) >= 10 for w in rig.writers), timeout=20, what="writes")
    wait_until(lambda: len(rig.follower.times) >= 3, timeout=20, what="live frames on b")
    stop()
    stopped_at = time.time()
    for name in ("a", "b"):
        wait_until(
            lambda name=name: rig.health(name)[what] == "lost",
            timeout=NOTICED_WITHIN,
            what=f"{what} lost on {name}",
        )
    for name in ("a", "b"):
        answer = httpx.get(rig.masters.nodes[name].url + "/healthz", timeout=5)
        health = answer.json()
        assert answer.status_code == 503 and health["status"] == "unavailable", health
        assert health[what] == "lost" and health["master_id"] == name
        assert stopped_at - 1 <= health["lost_since"] <= time.time()
    # writes go on meanwhile: each master refuses them (below: nothing was left behind)
    wait_until(
        lambda: all(_refusals(w) >= 3 for w in rig.writers), timeout=outage + 10, what="refusals"
    )
    left = outage - (time.time() - stopped_at)
    if left > 0:
        time.sleep(left)  # the outage lasts that long, under load
    assert rig.a.worker_health(rig.a.workers[0])["connected"]  # a worker does not leave
    start()
    back_at = time.time()
    for name in ("a", "b"):
        wait_until(
            lambda name=name: rig.health(name)["status"] == "ok",
            timeout=RECOVERED_WITHIN,
            interval=0.1,
            what=f"{name} recovered",
        )
    recovered = time.time()
    print(f"\n{what}: back, both masters ok {recovered - back_at:.2f} s later")
    for name in ("a", "b"):
        health = rig.health(name)
        assert health[what] == "ok" and health["lost_since"] is None, health
    return recovered


def _oks(writer: Writer) -> int:
    return sum(1 for o in list(writer.outcomes) if o.ok)


def _refusals(writer: Writer) -> int:
    return sum(1 for o in list(writer.outcomes) if o.refused)


def _after_recovery(rig: Rig, what: str, recovered: float) -> None:
    """What must hold once both masters are back (shared by both tests)."""
    # from the moment both say ok, no node is shown offline on either (looked at for 3 s)
    seen: list[tuple[float, str, int]] = []
    while time.time() < recovered + 3:
        seen += [(round(time.time() - recovered, 1), n, rig.nodes_online(n)) for n in "ab"]
        time.sleep(0.1)
    offline = [s for s in seen if s[2] != SIM_NODES + 1]
    assert not offline, f"(seconds after ok, master, nodes online): {offline}"
    # writes succeed again on both masters, by themselves
    wait_until(
        lambda: all(
            sum(1 for o in list(w.outcomes) if o.ok and o.at > recovered) >= 5 for w in rig.writers
        ),
        timeout=20,
        what="writes after the recovery",
    )
    # the live subscriber on B gets the node's samples (from A, over the bus) again
    wait_until(
        lambda: any(t > recovered for t in list(rig.follower.times)),
        timeout=NODES_BACK_WITHIN,
        what="a live frame after the recovery",
    )
    for writer in rig.writers:
        writer.stop()
    rig.follower.stop()
    outcomes = [o for w in rig.writers for o in w.outcomes]
    print(Counter((o.op, o.status, o.message[:40]) for o in outcomes))
    # every answer was a success or a refusal for the outage: no 500, no other error
    odd = [o for o in outcomes if not o.ok and not o.refused]
    assert not odd, odd[:10]
    refused = [o for o in outcomes if o.refused]
    assert {tuple(o.lost) for o in refused} == {(what,)}, {tuple(o.lost) for o in refused}
    assert len(refused) >= 6 and sum(1 for o in outcomes if o.ok) >= 40
    _check_the_database(rig, outcomes)

    # the worker stayed (or came back within its grace) and its service kept its pid
    worker = rig.a.workers[0]
    assert worker.alive() and rig.a.worker_health(worker)["connected"]
    with rig.a.client() as gdos:
        instance = gdos.get_instance(rig.instance_id)
        assert instance.state == InstanceState.RUNNING and instance.pid == rig.pid
    os.kill(rig.pid, 0)  # the very process still runs
    # every node (the simulated ones too) is online on both masters
    for name in ("a", "b"):
        wait_until(
            lambda name=name: rig.nodes_online(name) == SIM_NODES + 1,
            timeout=NODES_BACK_WITHIN,
            what=f"every node online on {name}",
        )
    assert rig.fleet.connected() == SIM_NODES
    # nobody restarted a master; none logged an unexpected error
    for name in ("a", "b"):
        master = rig.masters.nodes[name].master
        assert master is not None and master.alive()
        log = (rig.masters.root / name / "master.log").read_text()
        assert "unhandled error" not in log and "background task failed" not in log


def _check_the_database(rig: Rig, outcomes: list[Outcome]) -> None:
    """Each write answered 2xx is there exactly once; each refused one left nothing, but
    one the master answered "may have been made" (the database lost after its commit was
    sent) may be either way."""
    with psycopg.connect(rig.db_url) as conn:
        rows = conn.execute("SELECT name, description FROM systems WHERE name LIKE 'w%'").fetchall()
        audit = conn.execute(
            "SELECT action, params FROM audit WHERE action LIKE 'system.%' AND result = 'ok'"
        ).fetchall()
    systems: dict[str, list[str]] = {}
    for name, description in rows:
        systems.setdefault(name, []).append(description)
    by_name: dict[str, dict[str, Outcome]] = {}
    for o in outcomes:
        by_name.setdefault(o.name, {})[o.op] = o
    for name, ops in by_name.items():
        created, patched, deleted = ops.get("create"), ops.get("patch"), ops.get("delete")
        assert created is not None
        if created.unknown:
            assert systems.get(name, ["v1"]) == ["v1"], (name, ops)
            continue
        if not created.ok:
            assert name not in systems, f"{name}: create refused, yet the system is there"
            continue
        if deleted is not None and deleted.ok:
            assert name not in systems, f"{name}: deleted, yet still there"
            continue
        if patched is not None and patched.unknown:
            described = {"v1", "v2"}
        else:
            described = {"v2" if patched and patched.ok else "v1"}
        if deleted is not None and deleted.unknown and name not in systems:
            continue
        assert len(systems.get(name, [])) == 1 and systems[name][0] in described, (name, ops)
    assert set(systems) <= set(by_name), "systems no writer made"
    # the audit trail: one ok entry per successful create, none for a refused one
    made = Counter(
        json.loads(p)["body"]["name"] for action, p in audit if action == "system.create"
    )
    wanted = Counter(n for n, ops in by_name.items() if ops["create"].ok)
    del made["shop"]  # the rig's own
    extra, missing = made - wanted, wanted - made
    assert not missing, missing
    # an entry for an unknown create is possible only if its row was committed
    assert all(by_name[n]["create"].unknown and n in systems for n in extra), extra


def test_postgresql_restarted_under_load(rig: Rig) -> None:
    # Quiet figures (2 cores, idle): noticed in ~1 s (one lease round), both ok ~0.5-1.5 s
    # after the server accepts connections again.
    # 8 s: longer than a node lease's grace (1 + 5 s), so every lease runs out meanwhile
    recovered = _outage(rig, "database", rig.pg.halt, rig.pg.resume, 8.0)
    _after_recovery(rig, "database", recovered)
    for name in ("a", "b"):
        log = (rig.masters.root / name / "master.log").read_text()
        assert "lease renewal failed (database unreachable?)" in log


def test_nats_restarted_under_load(rig: Rig) -> None:
    # Quiet figures (2 cores, idle): noticed at once (the socket closes), both ok ~1-2 s
    # after the server is back (the client tries every second).
    recovered = _outage(rig, "bus", rig.nats.stop, rig.nats.start, 5.0)
    _after_recovery(rig, "bus", recovered)
    for name in ("a", "b"):
        log = (rig.masters.root / name / "master.log").read_text()
        assert "lost the bus (NATS" in log and "bus connection back" in log
