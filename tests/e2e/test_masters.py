"""Several masters on one PostgreSQL and one NATS, with a real worker (docs/scale-out.md).

Each master is a real ``gdos-master`` process (``-bus``, ``-master_id``) on a free port;
the worker is connected to master A only (moving between masters is the workers' side).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gdos_sdk import InstanceState
from gdos_sdk.errors import ConflictError, RemoteError, TransportError
from gdos_sdk.localnats import LocalNats
from gdos_sdk.localpg import LocalPostgres
from gdos_sdk.terminal_client import Terminal
from gdos_sdk.testing import wait_until

from ..helpers.masters import LEADER_TTL, Masters
from .test_lifecycle import setup_module_instance

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("db_engine", ["postgresql"])
def test_a_node_on_master_a_is_seen_and_commanded_through_master_b(masters: Masters) -> None:
    a, b = masters.start("a"), masters.start("b")
    assert masters.health("a")["bus"] == "ok" and masters.health("b")["database"] == "ok"
    wait_until(lambda: len(masters.leaders(["a", "b"])) == 1, timeout=15, what="one leader")
    worker = a.start_worker()
    node_id = a.node_id(worker)
    with b.client(token=a.admin_token()) as via_b:
        # REST on B: the node connected to A is online there (A's lease)
        wait_until(
            lambda: via_b.get_node(node_id).status.value == "online", timeout=10, what="online"
        )
        assert via_b.health()["nodes_online"] == 1
        # a live subscription on B gets the node's samples, which A publishes for it
        began = time.time()
        samples = []
        for sample in via_b.follow_node_samples(node_id, duration=25):
            samples.append(sample)
            if len(samples) >= 3 and samples[-1].ts > began:
                break
        times = [s.ts for s in samples]
        assert len(samples) >= 3 and times == sorted(times) and len(set(times)) == len(times)
        # B keeps the samples A relays: the node's latest sample and its series, by REST
        node = via_b.get_node(node_id)
        assert node.latest is not None and node.latest.ts >= samples[0].ts
        mem = via_b.query_range("mem_used", f"node:{node_id}", start=began - 5, step=1)
        assert sum(1 for v in mem.series[0].values if v is not None) >= 3
        assert via_b.latest(f"node:{node_id}").values["mem_used"].ts >= began
        # a fleet command sent to B runs on the node through A, output included
        run = via_b.run_command([node_id], "echo via-b; echo err >&2; exit 3", timeout=20)
        (result,) = run.nodes
        assert (result.exit_code, result.stdout, result.stderr) == (3, "via-b\n", "err\n")
        assert not result.error
        # a terminal through B: the worker lists only A, so it refuses to dial back to B
        with pytest.raises(RemoteError, match=f"{re.escape(b.url)} is not one of them: add it"):
            via_b.open_terminal(node_id)
        (refused,) = via_b.list_terminal_sessions(node_id=node_id).items
        assert refused.state.value == "closed" and refused.reason == "error"
        assert f"terminal {refused.id} refused: this worker dials" in worker.output()
        # a token revoked on A stops working on B at once (the write signal)
        token = via_b.create_token("short-lived")
        with b.client(token=token.secret) as short:
            assert short.get_node(node_id).id == node_id
            with a.client(token=a.admin_token()) as via_a:
                via_a.revoke_token(token.token.id)
            wait_until(lambda: _refused(short, node_id), timeout=5, what="revoked on B")


@pytest.mark.parametrize("db_engine", ["postgresql"])
def test_a_terminal_opened_on_master_b_is_dialled_back_to_b_by_a_worker_on_a(
    masters: Masters,
) -> None:
    one = {"OPS_MASTER_TERMINAL_MAX_SESSIONS_PER_NODE": "1"}
    a, b = masters.start("a", env=one), masters.start("b", env=one)
    worker = a.start_worker("-master", f"{a.url},{b.url}")
    node_id = a.node_id(worker)
    with b.client(token=a.admin_token()) as via_b:
        wait_until(lambda: via_b.get_node(node_id).status.value == "online", what="online")
        with via_b.open_terminal(node_id) as term:
            term.write("echo through-$((40+2))-b\r")
            _read_until(term, b"through-42-b")
            session_id = term.id
            # the session lives on B, which relays it: B lists it attached
            assert via_b.get_terminal_session(session_id).state.value == "attached"
            # the node's cap counts the session B relays, also on A (the node's owner)
            with a.client() as via_a, pytest.raises(ConflictError, match="already has 1"):
                via_a.open_terminal(node_id)
            # a master starting now leaves the session of live master B open
            c = masters.start("c", public_url=False)
            with c.client(token=a.admin_token()) as via_c:
                assert via_c.get_terminal_session(session_id).state.value == "attached"
            term.write("echo still-$((2*3))\r")
            _read_until(term, b"still-6")
        assert term.ended and term.reason == "closed"
        assert worker.alive() and f"connected to {a.url}" in worker.output()
        # B stored the recording and audited start and end
        ended = wait_until(
            lambda: (s := via_b.get_terminal_session(session_id)).state.value == "closed" and s,
            what="the session closed",
        )
        assert ended.recording and "through-42-b" in via_b.get_terminal_recording(session_id)
        entries = via_b.list_audit(target=f"node:{node_id}", action="terminal.").items
        audited = {(e.action, e.params.get("session_id")) for e in entries}
        assert {("terminal.start", session_id), ("terminal.end", session_id)} <= audited
        # a master without server.public_url says what to set, before asking the worker
        with c.client(token=a.admin_token()) as via_c:
            wait_until(lambda: via_c.get_node(node_id).status.value == "online", what="on c")
            with pytest.raises(TransportError, match=r"set server\.public_url \(-public_url"):
                via_c.open_terminal(node_id)


def _read_until(term: Terminal, text: bytes, timeout: float = 20.0) -> None:
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{text!r} not seen in {seen[-2000:]!r}"
        try:
            seen += term.read(timeout=left)
        except TimeoutError:
            continue


def _refused(client: Any, node_id: str) -> bool:
    try:
        client.get_node(node_id)
    except Exception as exc:
        return "401" in str(exc) or "auth" in type(exc).__name__.lower()
    return False


@pytest.mark.parametrize("db_engine", ["postgresql"])
def test_kill_9_of_the_elected_master_another_takes_over_in_bounded_time(
    masters: Masters,
) -> None:
    names = ["a", "b", "c"]
    for name in names:
        masters.start(name)
    (leader,) = wait_until(
        lambda: (found := masters.leaders(names)) and len(found) == 1 and found,
        timeout=15,
        what="one leader",
    )
    process = masters.nodes[leader].master
    assert process is not None
    process.kill()  # SIGKILL: no resignation, the lease has to run out
    killed_at = time.monotonic()
    rest = [n for n in names if n != leader]
    (new,) = wait_until(
        lambda: (found := masters.leaders(rest)) and len(found) == 1 and found,
        timeout=LEADER_TTL + 10,
        what="a new leader",
    )
    took = time.monotonic() - killed_at
    # documented bound: cluster.leader_ttl + 1 s of renewal period (+ this poll's slack)
    assert took <= LEADER_TTL + 3, f"took {took:.1f} s"
    assert new in rest and masters.health(new)["status"] == "ok"


@pytest.mark.parametrize("db_engine", ["postgresql"])
def test_a_lost_bus_is_reported_writes_get_503_and_it_recovers_alone(
    masters: Masters, nats: LocalNats
) -> None:
    a = masters.start("a")
    with a.client() as gdos:
        gdos.create_token("before")
        nats.stop()
        stopped_at = time.time()
        wait_until(lambda: masters.health("a")["bus"] == "lost", timeout=10, what="bus lost")
        answer = httpx.get(a.url + "/healthz", timeout=2)
        assert answer.status_code == 503 and answer.json()["status"] == "unavailable"
        assert stopped_at - 1 <= answer.json()["lost_since"] <= time.time()  # the banner's
        health = gdos.master_health()  # the SDK's view of it: a 503 answer, not raised
        assert health.lost == ["bus"] and not health.ok and health.master_id == "a"
        assert len(gdos.list_tokens()) >= 1  # reads still answer
        with pytest.raises(
            TransportError, match="this master lost the bus; writes are refused"
        ) as no:
            gdos.create_token("during")
        # what the console's banner reads
        assert no.value.details == {"lost": ["bus"], "changed": False}
        assert not [t for t in gdos.list_tokens() if t.name == "during"]  # nothing written
        nats.start()
        wait_until(lambda: masters.health("a")["status"] == "ok", timeout=20, what="recovered")
        assert masters.health("a")["lost_since"] is None
        gdos.create_token("after")
    log = (masters.root / "a" / "master.log").read_text()
    assert "lost the bus" in log and "bus connection back" in log


def test_a_lost_database_is_reported_writes_get_503_and_it_recovers_alone(
    tmp_path: Path, nats: LocalNats
) -> None:
    with LocalPostgres() as server:  # its own server: this test stops it
        url = server.create_database("gdos")
        group = Masters(tmp_path, url, nats.url)
        try:
            a = group.start("a")
            worker = a.start_worker()
            node_id = a.node_id(worker)
            with a.client() as gdos:
                gdos.create_token("before")
                server.halt()
                wait_until(
                    lambda: group.health("a")["database"] == "lost", timeout=10, what="db lost"
                )
                answer = httpx.get(a.url + "/healthz", timeout=2)
                assert answer.status_code == 503 and answer.json()["status"] == "unavailable"
                with pytest.raises(TransportError, match="lost the database"):
                    gdos.create_token("during")
                assert a.worker_health(worker)["connected"]  # the worker stays connected
                time.sleep(1.5)  # a flush of last-seen times meets the outage
                server.resume()
                wait_until(
                    lambda: group.health("a")["status"] == "ok", timeout=20, what="recovered"
                )
                names = [t.name for t in gdos.list_tokens()]
                assert "before" in names and "during" not in names
                gdos.create_token("after")
                wait_until(
                    lambda: gdos.get_node(node_id).status.value == "online",
                    timeout=10,
                    what="node online",
                )
            log = (tmp_path / "a" / "master.log").read_text()
            assert "lease renewal failed (database unreachable?)" in log
            assert "could not flush last-seen times" in log
            assert "background task failed" not in log  # every loop lived through it
        finally:
            group.close()


@pytest.mark.parametrize("db_engine", ["postgresql"])
def test_a_node_is_never_shown_offline_while_its_worker_moves_to_another_master(
    masters: Masters,
) -> None:
    a, b = masters.start("a"), masters.start("b")
    worker = a.start_worker("-master", f"{a.url},{b.url}")
    node_id = a.node_id(worker)
    with b.client(token=a.admin_token()) as via_b:
        wait_until(lambda: via_b.get_node(node_id).status.value == "online", what="online")
        assert a.master is not None
        a.master.kill()  # kill -9: A's lease is not released, it runs out unrenewed
        seen: list[str] = []
        deadline = time.monotonic() + 12  # past A's lease (1 + 5 s) and the move
        while time.monotonic() < deadline:
            seen.append(via_b.get_node(node_id).status.value)
            time.sleep(0.05)
        assert set(seen) == {"online"}, seen
        assert f"connected to {b.url}" in worker.output()
    assert masters.health("b")["status"] == "ok"


@pytest.mark.parametrize("db_engine", ["postgresql"])
def test_deploy_stop_start_logs_and_destroy_through_another_master(
    masters: Masters, pack: Callable[..., Path]
) -> None:
    a, b = masters.start("a"), masters.start("b")
    node_id = a.node_id(a.start_worker())
    with b.client(token=a.admin_token()) as via_b:
        wait_until(lambda: via_b.get_node(node_id).status.value == "online", what="online")
        instance = setup_module_instance(via_b, node_id, pack("sleeper"), start=True)
        assert instance.state == InstanceState.RUNNING and instance.pid and instance.node_online
        assert via_b.stop_instance(instance.id).state == InstanceState.STOPPED
        started = via_b.start_instance(instance.id)
        assert started.state == InstanceState.RUNNING and started.pid != instance.pid
        names = [f.name for f in via_b.list_log_files(instance.id)]
        assert "console.log" in names
        chunk = wait_until(
            lambda: (c := via_b.read_log(instance.id, "console.log")) and "up" in c.text and c,
            what="the service's output",
        )
        assert "up\n" in chunk.text
        via_b.destroy_instance(instance.id)
        assert instance.id not in {i.id for i in via_b.list_instances()}
        work = masters.root / "a" / "worker0" / "instances" / instance.id
        wait_until(lambda: not work.exists(), what="the instance gone from the worker")
