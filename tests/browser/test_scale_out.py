"""Issue 15, item 5: kill -9 of a master under a live fleet, watched from another master.

Real processes on loopback: masters A, B and C on one PostgreSQL database and one NATS
server (A starts first, so it is the leader), two real workers with ``-master A,C,B`` and
``-master A,B,C`` that both start connected to A, each running a real service; Chromium
logged in on master B with the node drawer of a node connected to A open (that node moves
to C, so B keeps charting it through the bus). Then A gets SIGKILL, and the failure
table of docs/scale-out.md is checked end to end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import psutil
import pytest
from playwright.sync_api import Page, expect

from gdos_sdk.alerts import AlertRule, RuleTarget
from gdos_sdk.batches import BatchJob, BatchState
from gdos_sdk.testing import wait_until

from ..e2e.conftest import pack  # noqa: F401  (the fixture)
from ..e2e.test_alerts import ALLOW_HOOK, add_rule
from ..e2e.test_failover import OFFLINE_GRACE, PUSH_INTERVAL, connections, same_process
from ..helpers.masters import LEADER_TTL, Masters
from ..helpers.webhook import WebhookReceiver
from .conftest import login
from .test_console import points

CHART = "[data-test=node-cpu-chart]"


class OfflineWatch:
    """Polls master B's node list every 50 ms in a thread; records any status but online."""

    def __init__(self, masters: Masters, token: str, node_ids: list[str]) -> None:
        self.seen: list[tuple[str, str]] = []
        self.rounds = 0
        self._stop = threading.Event()
        self._client = masters.nodes["b"].client(token=token)
        self._ids = set(node_ids)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for node in self._client.list_nodes():
                if node.id in self._ids and node.status.value != "online":
                    self.seen.append((node.id, node.status.value))
            self.rounds += 1
            self._stop.wait(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._client.close()


@pytest.mark.parametrize("db_engine", ["postgresql"])
def test_kill_9_of_master_a_under_a_fleet_watched_from_master_b(
    masters: Masters,
    hook: WebhookReceiver,
    pack: Callable[..., Path],  # noqa: F811  (the fixture imported above)
    page: Page,
) -> None:
    a = masters.start("a", env=ALLOW_HOOK)  # first: the leader
    wait_until(lambda: masters.leaders(["a"]) == ["a"], timeout=15, what="a the leader")
    b, c = masters.start("b", env=ALLOW_HOOK), masters.start("c", env=ALLOW_HOOK)
    # Node 0, the one watched on B, moves to C (B then shows it through the bus); node 1
    # moves to B.
    orders = [(a, c, b), (a, b, c)]
    workers = [a.start_worker("-master", ",".join(m.url for m in order)) for order in orders]
    node_ids = [a.node_id(w) for w in workers]
    assert all(connections(w) == [a.url] for w in workers)
    token = a.admin_token()
    with a.client(token=token) as via_a, b.client(token=token) as via_b:
        # A real service on each node, and a batch on A still running at the kill: its
        # start waits for 10 minutes of running before the instance counts as started.
        uploaded = via_a.upload_package(pack("sleeper"))
        shop = via_a.create_system("shop")
        instances = []
        for i, node_id in enumerate(node_ids):
            svc = via_a.create_module(shop.id, f"svc{i}", uploaded.name, uploaded.version)
            instances.append(via_a.deploy(svc.id, node_id, wait="started"))
        batch_system = via_a.create_system("batch")
        module = via_a.create_module(batch_system.id, "long", uploaded.name, uploaded.version)
        batched = via_a.deploy(module.id, node_ids[0], start=False, wait="started")
        job = via_a.start_batch(batch_system.id, "start", min_running=600)
        wait_until(
            lambda: via_a.get_instance(batched.id).state.value == "running",
            what="the batch's instance running",
        )
        assert via_a.get_batch(job.id).state == BatchState.RUNNING

        # A firing alert on both nodes, notified once each by the leader (A).
        via_a.create_receiver("hook", hook.url)
        rule = add_rule(
            via_a,
            AlertRule(
                name="always",
                metric="cpu",
                op=">=",
                threshold=0,
                target=RuleTarget(kind="nodes"),
            ),
        )
        wait_until(lambda: len(hook.received) >= 2, timeout=20, what="two firing webhooks")
        firing = sorted(body["labels"]["node_id"] for body in hook.bodies())
        assert firing == sorted(node_ids) and hook.statuses() == ["firing", "firing"]

        pids = {i.id: via_a.get_instance(i.id).pid for i in [*instances, batched]}
        assert all(pids.values())
        created = {i: psutil.Process(p).create_time() for i, p in pids.items() if p}

        # The console on B: the drawer of node 0 (connected to A), its chart growing live.
        login(page, b.url, masters.password)
        page.goto(f"{b.url}/nodes")
        page.fill("[data-test=nodes-search]", node_ids[0])
        page.locator("[data-test=nodes-table] [data-state=online]").first.click()
        expect(page.locator("[data-test=node-drawer]")).to_be_visible()
        page.wait_for_function(
            f"() => document.querySelector('{CHART}')?.dataset.points >= 2", timeout=20_000
        )

        # Anything shown offline on B from now on is counted, in the page and by REST.
        page.evaluate(
            "() => { window.offlineSeen = 0; setInterval(() => {"
            " if (document.querySelector('[data-state=offline]')) window.offlineSeen++ }, 50) }"
        )
        watch = OfflineWatch(masters, token, node_ids)
        try:
            assert a.master is not None
            a.master.kill()  # kill -9: no goodbye, no resignation, leases left to run out
            killed = time.monotonic()

            # Both workers are connected to B or C within offline grace + push interval.
            moved = wait_until(
                lambda: all(len(connections(w)) == 2 for w in workers) and time.monotonic(),
                timeout=OFFLINE_GRACE + PUSH_INTERVAL + 15,  # reported below, asserted tightly
                interval=0.05,
                what="both workers on another master",
            )
            took = moved - killed
            print(f"both workers moved {took:.2f} s after kill -9 of master A")
            assert took < OFFLINE_GRACE + PUSH_INTERVAL, f"moving took {took:.2f} s"
            assert [connections(w)[1] for w in workers] == [c.url, b.url]

            # The console on B keeps updating: the watched node's chart gains points.
            before = points(page, CHART)
            page.wait_for_function(
                f"() => document.querySelector('{CHART}').dataset.points > {before + 1}",
                timeout=15_000,
            )

            # A fleet command to both nodes through B: output from both.
            run = via_b.run_command(node_ids, "echo from-$((6*7))", timeout=20)
            assert sorted(r.node_id for r in run.nodes) == sorted(node_ids)
            assert all(r.exit_code == 0 and r.stdout == "from-42\n" for r in run.nodes), run

            # A's batch is closed as failed with the reason by the new leader.
            def batch_closed() -> BatchJob | None:
                seen = via_b.get_batch(job.id)
                return None if seen.state == BatchState.RUNNING else seen

            ended = wait_until(
                batch_closed,
                timeout=LEADER_TTL + 5 + 10,
                what="A's batch closed by the new leader",
            )
            took = time.monotonic() - killed
            print(f"A's batch closed {took:.2f} s after the kill")
            assert took < LEADER_TTL + 5 + 2, f"closing A's batch took {took:.2f} s"
            assert ended is not None and ended.state == BatchState.FAILED
            reason = "interrupted: master a stopped answering while the batch ran"
            assert ended.error == reason, ended.error
            (item,) = ended.items
            assert item.state == BatchState.FAILED and item.error == reason
            assert len(masters.leaders(["b", "c"])) == 1

            # Several evaluations by the new leader: still firing, no second notification.
            time.sleep(3)
        finally:
            watch.close()
        assert watch.rounds > 20 and not watch.seen, watch.seen
        assert page.evaluate("() => window.offlineSeen") == 0

        history = via_b.alert_history().items
        assert sorted(e.state for e in history) == ["firing", "firing"], history
        assert hook.statuses() == ["firing", "firing"]
        # The new leader carries those alerts on: a rule raised out of reach through B
        # resolves them, once each, as the same events.
        via_b.replace_alert_rule(rule.id, attrs.evolve(rule, threshold=1e9))
        wait_until(lambda: len(hook.received) >= 4, timeout=15, what="two resolved webhooks")
        time.sleep(1.5)  # an evaluation more: nothing else is sent
        assert hook.statuses() == ["firing", "firing", "resolved", "resolved"]
        assert sorted(e.state for e in via_b.alert_history().items) == ["resolved"] * 2

        # Every instance kept its process through the move.
        for instance_id, pid in pids.items():
            assert pid is not None and same_process(pid, created[instance_id]), instance_id
            assert via_b.get_instance(instance_id).pid == pid
    assert all(w.alive() for w in workers)
