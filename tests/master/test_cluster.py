"""Several masters: node leases, the leader lease, and commands relayed to a node's owner.

The lease statements run on both engines (the schema is one); a clustered master is
refused on SQLite by its configuration (tests/sdk/test_config.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from gdos_master import mesh
from gdos_master.app import Master, create_app
from gdos_master.bus import Bus, LocalBus, LocalNetwork
from gdos_master.cluster import Cluster, new_master_id
from gdos_master.db import Database
from gdos_master.fleet import AgentConnection, Fleet
from gdos_master.relay import CommandRelay, RemoteConnection
from gdos_sdk.alerts import AlertRule, ReceiverCreate
from gdos_sdk.client import AsyncClient
from gdos_sdk.codec import unstructure
from gdos_sdk.config import (
    MasterAlerts,
    MasterAuth,
    MasterCluster,
    MasterDatabase,
    MasterServer,
    MasterSettings,
)
from gdos_sdk.errors import ConflictError, TransportError
from gdos_sdk.localnats import LocalNats
from gdos_sdk.models import DesiredState, InstanceState
from gdos_sdk.protocol import (
    ErrorInfo,
    InstanceStatus,
    Request,
    Response,
    StopCommand,
    decode,
)

from ..helpers.clock import FakeClock
from ..helpers.webhook import WebhookReceiver
from .test_fleet import sample

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture
def db(db_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database.open(sqlite_path=tmp_path / "ops.db", url=db_url)
    try:
        yield database
    finally:
        database.close()


def _cluster(db: Database, master_id: str, clock: FakeClock, **kw: Any) -> Cluster:
    return Cluster(
        db,
        master_id=master_id,
        clustered=True,
        node_ttl=6.0,
        leader_ttl=15.0,
        clock=clock,
        monotonic=clock,
        **kw,
    )


def test_a_master_id_is_generated_per_process() -> None:
    one, two = new_master_id(), new_master_id()
    assert one != two and len(one) <= 63
    assert one.rsplit("-", 1)[0] == two.rsplit("-", 1)[0]  # the host name, then a suffix


def test_the_newest_connection_owns_the_node_and_a_lease_expires_after_the_grace(
    db: Database, clock: FakeClock
) -> None:
    a, b = _cluster(db, "a", clock), _cluster(db, "b", clock)
    a.take_node("n1")
    assert b.refresh_remote() == {"n1": "a"} and a.refresh_remote() == {}
    assert b.owner("n1") == "a"
    b.take_node("n1")  # the worker moved to b: the latest connection wins
    assert a.refresh_remote() == {"n1": "b"} and b.refresh_remote() == {}
    a.release_node("n1")  # a's old channel closing later changes nothing
    clock.now += 5
    b.renew_nodes()
    clock.now += 5
    assert a.refresh_remote() == {"n1": "b"}  # renewed by b
    b.release_node("n1")  # the channel closed: no renewal from here on
    clock.now += 5
    assert b.renew_nodes() == 0
    assert a.refresh_remote() == {"n1": "b"}  # still within the grace: online elsewhere
    clock.now += 1.5
    assert a.refresh_remote() == {} and a.owner("n1") is None  # expired after the grace


def test_lease_writes_never_move_the_change_counter(db: Database, clock: FakeClock) -> None:
    a = _cluster(db, "a", clock)
    before = db.changes
    a.take_node("n1")
    a.renew_nodes()
    a.try_lead()
    a.renew_self()
    a.release_node("n1")
    assert db.changes == before


def test_one_master_without_a_bus_writes_no_lease_and_leads(db: Database) -> None:
    one = Cluster(db, master_id="solo", clustered=False, node_ttl=6.0)
    assert one.leader and one.try_lead() and one.leader_id() == "solo"
    one.take_node("n1")
    one.renew_self()
    assert db.scalar("SELECT COUNT(*) FROM node_leases") == 0
    assert db.scalar("SELECT COUNT(*) FROM master_leases") == 0
    assert one.live_masters() == {"solo"}


async def test_one_leader_at_a_time_taken_over_when_its_lease_runs_out(
    db: Database, clock: FakeClock
) -> None:
    a, b = _cluster(db, "a", clock), _cluster(db, "b", clock)
    seen: list[tuple[str, bool]] = []

    def watch(name: str) -> Any:
        async def changed(leader: bool) -> None:
            seen.append((name, leader))

        return changed

    a.on_leader.append(watch("a"))
    b.on_leader.append(watch("b"))
    await a.tick()
    await b.tick()
    assert (a.leader, b.leader) == (True, False) and b.leader_id() == "a"
    term = a.term
    for _ in range(20):  # a renews: b never gets it
        clock.now += 1
        await a.tick()
        await b.tick()
    assert (a.leader, b.leader) == (True, False)
    assert b.live_masters() == {"a", "b"}
    clock.now += 15.5  # a stopped renewing (killed): its lease ran out
    await b.tick()
    assert b.leader and b.term == term + 1 and b.leader_id() == "b"
    assert b.live_masters() == {"b"}  # a's own lease ran out too
    await a.tick()  # a comes back: it finds b holding the lease and steps down
    assert not a.leader
    assert seen == [("a", True), ("b", True), ("a", False)]


async def test_a_clean_shutdown_hands_the_lead_over_at_once(db: Database, clock: FakeClock) -> None:
    a, b = _cluster(db, "a", clock), _cluster(db, "b", clock)
    await a.tick()
    await b.tick()
    a.resign()
    await b.tick()
    assert b.leader and not a.leader and b.live_masters() == {"b"}


async def test_a_leader_that_loses_the_database_steps_down_before_the_lease_ends(
    db: Database, clock: FakeClock
) -> None:
    a = _cluster(db, "a", clock)
    await a.tick()
    assert a.leader

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("connection refused")

    a.db = type("Broken", (), {"write_unseen": broken, "all": broken, "one": broken})()  # type: ignore[assignment]
    clock.now += 5
    lost_at = clock.now
    await a.tick()
    assert a.leader and not a.db_ok  # within two thirds of the lease: still sure
    clock.now += 5.5
    await a.tick()
    assert not a.leader  # 10.5 s > 2/3 of 15 s: steps down before another may take it
    assert a.db_lost_since == lost_at  # when it was lost first (/healthz's lost_since)
    a.db = db
    await a.tick()
    assert a.db_ok and a.db_lost_since is None


# --- commands relayed to the owner ------------------------------------------------------------


async def _relay(make_bus: Any) -> None:
    owner_bus, asker_bus = make_bus("a"), make_bus("b")
    await owner_bus.start()
    await asker_bus.start()
    try:
        owner = Fleet(heartbeat_interval=1.0, offline_grace=5.0)
        fleet_conn = _attach(owner)
        await CommandRelay(owner, owner_bus).start()
        asker = Fleet(heartbeat_interval=1.0, offline_grace=5.0)
        asker.remote_channel = lambda node_id, who: RemoteConnection(node_id, who, asker_bus)
        assert asker.connection("n1") is None and not asker.is_online("n1")
        asker.remote = {"n1": "a"}  # what the leases say
        assert asker.is_online("n1") and not asker.is_connected("n1")
        assert asker.online_count() == 1 and asker.online_ids() == {"n1"}
        remote = asker.connection("n1")
        assert isinstance(remote, RemoteConnection) and remote.owner == "a"
        await asyncio.sleep(0.1)
        status = await remote.request(StopCommand(instance_id="i1"), timeout=5)
        assert (
            status is not None
            and status.instance_id == "i1"
            and status.state == InstanceState.STOPPED
        )
        assert [r.command.instance_id for r in fleet_conn.sent] == ["i1"]
        with pytest.raises(ConflictError, match="stale pid file") as caught:
            await remote.request(StopCommand(instance_id="refused"), timeout=5)
        assert caught.value.details == {"code": "conflict", "node_id": "n1"}
        gone = RemoteConnection("n2", "a", asker_bus)  # a has no such node any more
        with pytest.raises(TransportError, match="not connected to master a"):
            await gone.request(StopCommand(instance_id="i1"), timeout=5)
        nobody = RemoteConnection("n1", "c", asker_bus)  # a master that is gone
        with pytest.raises(TransportError, match="no master answers"):
            await nobody.request(StopCommand(instance_id="i1"), timeout=5)
    finally:
        await owner_bus.close()
        await asker_bus.close()


class _Worker:
    """A fake worker's channel: records each request and answers it."""

    def __init__(self) -> None:
        self.sent: list[Request] = []
        self.conn = AgentConnection("n1", self.send, self.close)

    async def send(self, text: str) -> None:
        request = decode(text)
        assert isinstance(request, Request)
        self.sent.append(request)
        instance_id = getattr(request.command, "instance_id", "")
        if instance_id == "refused":
            error = ErrorInfo(code="conflict", message="stale pid file")
            answer = Response(id=request.id, ok=False, error=error)
        else:
            status = InstanceStatus(
                instance_id=instance_id,
                desired_state=DesiredState.STOPPED,
                state=InstanceState.STOPPED,
            )
            answer = Response(id=request.id, ok=True, result=status)
        asyncio.get_running_loop().call_soon(self.conn.resolve, answer)

    async def close(self) -> None:
        return None


def _attach(fleet: Fleet) -> _Worker:
    worker = _Worker()
    rt = fleet.runtime("n1")
    rt.connection = worker.conn
    rt.last_heartbeat = fleet.now()
    return worker


async def test_a_command_for_a_node_on_another_master_goes_through_it_in_process() -> None:
    network = LocalNetwork()
    await _relay(lambda name: LocalBus(name, network))


async def test_a_command_for_a_node_on_another_master_goes_through_it_over_nats(
    nats: LocalNats,
) -> None:
    await _relay(lambda name: Bus.open(nats.url, master_id=name))


# --- in-process masters on one PostgreSQL -----------------------------------------------------


def _settings(tmp_path: Path, db_url: str, name: str) -> MasterSettings:
    return MasterSettings(
        server=MasterServer(data_dir=str(tmp_path / name)),
        database=MasterDatabase(url=db_url),
        cluster=MasterCluster(master_id=name, leader_ttl=5.0),
        auth=MasterAuth(admin_password="admin-password-1", password_cost=14),
    )


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


class _TwoMasters:
    """Masters "a" and "b" in process on one database, over one in-process bus.

    ``async with`` starts both as ``app.test_app()`` does (startup hooks, the cluster
    loop); :meth:`stop` shuts one down cleanly before the end; leaving stops the rest, even
    on failure. ``settings`` replace fields of both masters' settings (``attrs.evolve``).
    """

    def __init__(self, tmp_path: Path, db_url: str, **settings: Any) -> None:
        network = LocalNetwork()
        self.apps = {
            name: create_app(
                attrs.evolve(_settings(tmp_path, db_url, name), **settings),
                bus=LocalBus(name, network),
            )
            for name in ("a", "b")
        }
        self.a: Master = self.apps["a"].extensions["gdos"]
        self.b: Master = self.apps["b"].extensions["gdos"]
        self._contexts = {name: app.test_app() for name, app in self.apps.items()}
        self._running: list[str] = []

    async def __aenter__(self) -> _TwoMasters:
        try:
            for name, context in self._contexts.items():
                await context.__aenter__()
                self._running.append(name)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for name in list(self._running):
            await self.stop(name)

    async def stop(self, master: Master | str) -> None:
        name = master if isinstance(master, str) else master.cluster.master_id
        self._running.remove(name)
        await self._contexts[name].__aexit__(None, None, None)

    async def elected(self) -> tuple[Master, Master]:
        """(the leader, the other one), once they agree on which leads."""
        a, b = self.a, self.b
        await _until(lambda: a.cluster.leader != b.cluster.leader)
        return (a, b) if a.cluster.leader else (b, a)


@pytest.mark.parametrize("db_engine", ["postgresql"])
async def test_only_the_leader_runs_the_work_that_must_happen_once(
    tmp_path: Path, db_url: str
) -> None:
    async with _TwoMasters(tmp_path, db_url) as masters:
        leader, other = await masters.elected()
        assert len(leader.leader_tasks) == 2 and not other.leader_tasks
        assert all(not t.done() for t in leader.leader_tasks)
        # a batch job left running by a master that is gone is closed by the leader; one
        # of a live master is left alone
        now = time.time()
        for job_id, owner in (("j-gone", "zz-gone"), ("j-live", other.cluster.master_id)):
            leader.db.execute(
                "INSERT INTO batch_jobs(id, system_id, state, started_at, job, master_id)"
                " VALUES (?, 's', 'running', ?, ?, ?)",
                (job_id, now, json.dumps(_job(job_id, now)), owner),
            )
        assert leader.batches.recover_orphans() == 1
        states = {r["id"]: r["state"] for r in leader.db.all("SELECT id, state FROM batch_jobs")}
        assert states == {"j-gone": "failed", "j-live": "running"}
        # its reason names the master that died, not a restart that never happened
        (stored,) = leader.db.all("SELECT job FROM batch_jobs WHERE id = 'j-gone'")
        error = json.loads(stored["job"])["error"]
        assert error == "interrupted: master zz-gone stopped answering while the batch ran"
        # a rule made on the other master is evaluated by the leader: it reads the rules
        # again when the other master says it wrote
        rule = other.alert_store.create_rule(AlertRule(name="cpu", metric="cpu", threshold=90))
        other.alerts.reload()
        await _until(lambda: rule.id in {r.id for r in leader.alerts.rules}, timeout=5)
        # the leader shuts down (cleanly: it resigns): the other takes the lead at once
        await masters.stop(leader)
        await _until(lambda: other.cluster.leader and len(other.leader_tasks) == 2, timeout=5)


def _job(job_id: str, now: float) -> dict[str, Any]:
    return {
        "id": job_id,
        "system_id": "s",
        "action": "restart",
        "user": "admin",
        "concurrency": 1,
        "wait_healthy": False,
        "tier_timeout": 60.0,
        "min_running": 1.0,
        "state": "running",
        "started_at": now,
        "tiers": [],
        "items": [],
    }


def test_samples_relayed_by_the_owner_are_kept_but_are_no_liveness() -> None:
    fleet = Fleet(heartbeat_interval=1.0, offline_grace=5.0)
    heard: list[tuple[str, int]] = []
    fleet.on_samples.append(lambda node_id, nodes, instances: heard.append((node_id, len(nodes))))
    now = time.time()
    samples = [unstructure(sample(now - 1 + n)) for n in range(2)]
    fleet.mirror("n1", samples, [])
    assert heard == [("n1", 2)]
    rt = fleet.nodes["n1"]
    assert rt.latest is not None and rt.latest.ts == now and rt.connection is None
    assert fleet.store.latest("node:n1")["mem_used"] == (int(now), 1.0)
    assert not fleet.is_online("n1") and fleet.connection("n1") is None  # liveness: leases
    assert fleet.stats.node_samples == 0 and fleet.stats.heartbeats == 0  # not this ingest


@pytest.mark.parametrize("db_engine", ["postgresql"])
async def test_the_heartbeats_of_a_tick_cross_the_bus_in_one_message(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    masters = _TwoMasters(tmp_path, db_url)
    a, b = masters.a, masters.b
    sent: list[tuple[str, int]] = []
    publish = a.bus.publish

    async def counted(subject: str, data: dict[str, Any], **options: Any) -> None:
        if subject.startswith("gdos.samples"):
            entries = data.get("batch") or [data]  # (one heartbeat a message before)
            sent.append((subject, sum(len(e["nodes"]) for e in entries)))
        await publish(subject, data, **options)

    a.bus.publish = counted  # type: ignore[method-assign]
    async with masters:
        ids = [f"n{i}" for i in range(20)]
        for node_id in ids:  # 20 workers connected to a, each sending one heartbeat
            rt = a.fleet.runtime(node_id)
            rt.connection = AgentConnection(node_id, _Worker().send, _Worker().close)
            a.fleet.heartbeat(node_id, [sample(time.time())], [])
        await _until(lambda: all(b.fleet.store.latest(f"node:{n}") for n in ids), timeout=5)
        assert sent == [("gdos.samples", 20)]  # one message, not one per heartbeat
        assert not any(b.fleet.is_connected(n) for n in ids)  # kept there, not owned
        # a large tick is split (NATS refuses payloads over 1 MB by default)
        monkeypatch.setattr(mesh, "SAMPLES_PER_MESSAGE", 8)
        sent.clear()
        later = time.time() + 1
        for node_id in ids:
            a.fleet.heartbeat(node_id, [sample(later)], [])
        await _until(
            lambda: all(b.fleet.store.latest(f"node:{n}")["cpu"][0] == int(later) for n in ids),
            timeout=5,
        )
        assert sent == [("gdos.samples", 8), ("gdos.samples", 8), ("gdos.samples", 4)]


@pytest.mark.parametrize("db_engine", ["postgresql"])
async def test_a_firing_alert_stays_firing_across_a_new_leader_with_one_notification(
    tmp_path: Path, db_url: str, hook: WebhookReceiver
) -> None:
    alerts = MasterAlerts(startup_grace=0, webhook_allow="127.0.0.1/32")
    async with _TwoMasters(tmp_path, db_url, alerts=alerts) as masters:
        leader, other = await masters.elected()
        # a joined node whose worker is connected to no master: node_offline fires
        leader.db.execute(
            "INSERT INTO nodes(id, hostname, credential_hash, created_at) VALUES(?, ?, ?, ?)",
            ("n1", "web1", "hash-of-n1", time.time()),
        )
        other.alert_store.create_receiver(ReceiverCreate(name="hook", url=hook.url))
        other.alert_store.create_rule(
            AlertRule(name="down", metric="node_offline", op=">", threshold=0.5)
        )
        await _until(lambda: len(hook.received) == 1, timeout=10)
        assert hook.statuses() == ["firing"]
        # the leader goes; the other takes over with the alert still firing, not notified
        await masters.stop(leader)
        await _until(lambda: other.cluster.leader and len(other.leader_tasks) == 2, timeout=5)
        await asyncio.sleep(3)  # several evaluations by the new leader
        assert other.alerts.firing_count() == 1
        assert len(hook.received) == 1
        firing = other.db.scalar("SELECT COUNT(*) FROM alert_events WHERE state = 'firing'")
        assert firing == 1


@pytest.mark.parametrize("db_engine", ["postgresql"])
async def test_a_master_restarted_with_its_id_closes_only_its_own_jobs(
    tmp_path: Path, db_url: str
) -> None:
    db = Database.open(url=db_url)
    try:
        now = time.time()
        for job_id, owner in (("j-mine", "a"), ("j-other", "zz")):
            db.execute(
                "INSERT INTO batch_jobs(id, system_id, state, started_at, job, master_id)"
                " VALUES (?, 's', 'running', ?, ?, ?)",
                (job_id, now, json.dumps(_job(job_id, now)), owner),
            )
    finally:
        db.close()
    app = create_app(_settings(tmp_path, db_url, "a"), bus=LocalBus("a", LocalNetwork()))
    master: Master = app.extensions["gdos"]
    try:
        states = {r["id"]: r["state"] for r in master.db.all("SELECT id, state FROM batch_jobs")}
        # its own job is closed at start; another master's waits for the leader's look
        assert states == {"j-mine": "failed", "j-other": "running"}
    finally:
        await master.close()


@pytest.mark.parametrize("db_engine", ["postgresql"])
async def test_a_node_held_by_another_master_is_online_in_every_listing(
    tmp_path: Path, db_url: str
) -> None:
    app = create_app(_settings(tmp_path, db_url, "a"), bus=LocalBus("a", LocalNetwork()))
    master: Master = app.extensions["gdos"]
    try:
        master.db.execute(
            "INSERT INTO nodes(id, hostname, credential_hash, created_at) VALUES(?, ?, ?, ?)",
            ("n1", "web1", "hash-of-n1", time.time()),
        )
        assert json.loads(master.nodes.list_json())[0]["status"] == "offline"
        master.fleet.remote = {"n1": "b"}  # b's fresh lease, as run_cluster reads it
        assert "n1" not in master.fleet.nodes  # no sample of it here yet
        assert json.loads(master.nodes.list_json())[0]["status"] == "online"
        assert master.nodes.get("n1").status.value == "online"
        assert json.loads(master.nodes.list_json(status="online"))[0]["id"] == "n1"
    finally:
        await master.close()


@pytest.mark.parametrize("db_engine", ["postgresql"])
async def test_health_says_what_is_lost_since_when_and_refusals_name_it(
    tmp_path: Path, db_url: str
) -> None:
    # What the console's outage banner reads: /healthz through the SDK's master_health(),
    # and the details of a write refused meanwhile.
    bus = LocalBus("a", LocalNetwork())
    app = create_app(_settings(tmp_path, db_url, "a"), bus=bus)
    async with app.test_app():
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with AsyncClient("http://master.test", transport=transport, retries=0) as gdos:
            await gdos.login("admin", "admin-password-1")
            health = await gdos.master_health()
            assert health.ok and health.lost == [] and health.lost_since is None
            assert health.master_id == "a" and health.database == "ok" and health.bus == "ok"
            lost_at = time.time() - 30
            bus.closed, bus.lost_since = True, lost_at  # as NatsBus on a lost connection
            health = await gdos.master_health()  # a 503 answer, not raised
            assert health.status == "unavailable" and not health.ok
            assert health.lost == ["bus"] and health.bus == "lost" and health.database == "ok"
            assert health.lost_since == pytest.approx(lost_at)
            with pytest.raises(TransportError, match="lost the bus") as refused:
                await gdos.create_token("during")
            assert refused.value.details == {"lost": ["bus"], "changed": False}
            bus.closed, bus.lost_since = False, None
            assert (await gdos.master_health()).ok
            await gdos.create_token("after")


async def test_health_of_a_single_master_says_ok_only(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path, "", "a"))
    async with app.test_app():
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with AsyncClient("http://master.test", transport=transport) as gdos:
            health = await gdos.master_health()
    assert health.ok and health.master_id is None and health.lost == []


@pytest.mark.parametrize("db_engine", ["postgresql"])
async def test_terminal_sessions_of_a_live_master_stay_open_and_count_against_the_caps(
    tmp_path: Path, db_url: str
) -> None:
    app = create_app(_settings(tmp_path, db_url, "a"), bus=LocalBus("a", LocalNetwork()))
    master: Master = app.extensions["gdos"]
    db, now = master.db, time.time()
    try:
        # b is alive (its own lease is fresh); zz died; a is this master, restarted
        db.execute(
            "INSERT INTO master_leases(name, master_id, expires_at, term) VALUES(?, ?, ?, 1)",
            ("master:b", "b", now + 60),
        )
        for session_id, owner in (("t-mine", "a"), ("t-b", "b"), ("t-lost", "zz")):
            db.execute(
                'INSERT INTO terminal_sessions(id, node_id, "user", user_id, state,'
                " started_at, master_id) VALUES(?, 'n1', 'admin', 'u1', 'attached', ?, ?)",
                (session_id, now, owner),
            )
        relay = master.terminals
        assert await relay.recover() == 2  # at start: its own and the dead master's

        def states() -> dict[str, str]:
            rows = db.all("SELECT id, state FROM terminal_sessions")
            return {r["id"]: r["state"] for r in rows}

        assert states() == {"t-mine": "closed", "t-lost": "closed", "t-b": "attached"}
        # b's open session counts for the node and the user here (the caps across masters)
        assert relay._open_elsewhere("n1", "u1") == (1, 1)
        assert relay._open_elsewhere("n2", "u2") == (0, 0)
        # b dies: its session no longer counts, and the leader's sweep closes it
        db.execute("UPDATE master_leases SET expires_at = ? WHERE name = 'master:b'", (now - 1,))
        assert relay._open_elsewhere("n1", "u1") == (0, 0)
        assert await relay.recover(orphans=True) == 1
        assert states()["t-b"] == "closed"
    finally:
        await master.close()


def test_a_database_shutting_down_under_a_request_is_a_503_not_a_500() -> None:
    # A server shutting down ends the session a request is using with AdminShutdown (a
    # subclass of OperationalError): found by tests/e2e/test_outage_load.py as a 500.
    import psycopg

    from gdos_master.routing import database_lost

    assert database_lost(psycopg.errors.AdminShutdown("terminating connection"))
    assert database_lost(psycopg.OperationalError("connection failed"))
    assert database_lost(psycopg.InterfaceError("the connection is closed"))
    assert not database_lost(psycopg.errors.UniqueViolation("duplicate key"))
    assert not database_lost(ValueError("not the database"))


async def test_after_a_database_outage_the_other_masters_leases_get_a_round_to_be_renewed(
    db: Database, clock: FakeClock
) -> None:
    # Found by tests/e2e/test_outage_load.py: after an outage longer than the grace, the
    # master that came back first showed the other's nodes offline until that one renewed.
    a, b = _cluster(db, "a", clock), _cluster(db, "b", clock)
    b.take_node("n1")
    b.take_node("gone")
    b.release_node("gone")  # its lease runs out at +6, before the outage
    clock.now += 6.5
    b.renew_nodes()
    await a.tick()
    assert a.remote == {"n1": "b"}  # "gone" ran out before the outage

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("connection refused")

    a.db = type("Broken", (), {"write_unseen": broken, "all": broken, "one": broken})()  # type: ignore[assignment]
    clock.now += 0.5
    await a.tick()  # the outage begins
    assert not a.db_ok and a.remote == {"n1": "b"}  # what a knew: kept meanwhile
    clock.now += 8  # b's lease on n1 ran out while the database was away
    a.db = db
    await a.tick()  # a is back before b renewed: n1 stays online here, "gone" stays gone
    assert a.db_ok and a.remote == {"n1": "b"}
    assert a.owner("n1") is None  # a command still asks the lease as it is
    clock.now += 1
    b.renew_nodes()  # b's first round after the outage
    await a.tick()
    assert a.remote == {"n1": "b"} and a.owner("n1") == "b"
    b.release_node("n1")
    clock.now += 6.5  # past the grace after the outage: plain expiry again
    await a.tick()
    assert a.remote == {}


@contextlib.asynccontextmanager
async def _clustered_master(
    tmp_path: Path, db_url: str
) -> AsyncIterator[tuple[Master, AsyncClient]]:
    """A master with a bus on ``db_url`` (in process), and an admin's client to it."""
    app = create_app(_settings(tmp_path, db_url, "a"), bus=LocalBus("a", LocalNetwork()))
    master: Master = app.extensions["gdos"]
    async with app.test_app():
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with AsyncClient("http://master.test", transport=transport, retries=0) as gdos:
            await gdos.login("admin", "admin-password-1")
            yield master, gdos


@pytest.mark.parametrize("db_engine", ["postgresql"])
async def test_a_request_that_meets_the_database_away_reports_the_outage_at_once(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by the console's banner coming and going: a refusal said "database lost" while
    # /healthz still said ok until the next lease round.
    import psycopg

    async with _clustered_master(tmp_path, db_url) as (master, gdos):
        assert (await gdos.master_health()).ok

        def away(**_: Any) -> str:
            raise psycopg.OperationalError("connection failed: Connection refused")

        async def no_round() -> None:  # no lease round in between to end it early
            return None

        monkeypatch.setattr(master.cluster, "tick", no_round)
        monkeypatch.setattr(master.nodes, "list_json", away)
        with pytest.raises(TransportError, match="database is unreachable") as refused:
            await gdos.list_nodes()
        assert refused.value.details == {"lost": ["database"], "changed": False}
        health = await gdos.master_health()  # at once, not at the next round
        assert health.lost == ["database"] and health.lost_since is not None
        monkeypatch.undo()
        await master.cluster.tick()  # a round that reaches the database ends it
        assert (await gdos.master_health()).ok


@pytest.mark.parametrize("db_engine", ["postgresql"])
async def test_a_database_lost_after_a_commit_was_sent_says_the_change_may_be_made(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by tests/e2e/test_outage_load.py: a PATCH whose commit went through, followed
    # by the read that answers it failing, was answered "nothing was changed".
    import psycopg

    async with _clustered_master(tmp_path, db_url) as (master, gdos):
        system = await gdos.create_system("shop", description="v1")
        real = master.systems.get_system
        calls: list[str] = []

        def lost_at(call: int) -> Callable[[str], Any]:
            def get_system(system_id: str) -> Any:
                calls.append(system_id)
                if len(calls) == call:
                    raise psycopg.OperationalError("server closed the connection")
                return real(system_id)

            return get_system

        async def no_round() -> None:
            return None

        a_round = master.cluster.tick
        monkeypatch.setattr(master.cluster, "tick", no_round)
        # Lost at the first read, before anything was sent: nothing changed.
        monkeypatch.setattr(master.systems, "get_system", lost_at(1))
        with pytest.raises(TransportError, match="nothing was changed") as refused:
            await gdos.update_system(system.id, description="v2")
        assert refused.value.details == {"lost": ["database"], "changed": False}
        assert real(system.id).description == "v1"
        await a_round()  # the database is back: writes are taken again
        # Lost at the read after the commit: the change is there, and the answer says
        # it may be.
        calls.clear()
        monkeypatch.setattr(master.systems, "get_system", lost_at(2))
        with pytest.raises(TransportError, match="may have been made") as unsure:
            await gdos.update_system(system.id, description="v3")
        assert unsure.value.status == 503
        assert unsure.value.details == {"lost": ["database"], "changed": "unknown"}
        assert real(system.id).description == "v3"
        # The next request starts with a clean slate.
        monkeypatch.undo()
        await master.cluster.tick()
        assert (await gdos.get_system(system.id)).description == "v3"
