"""Alerts end to end: debounce, webhooks, restart without duplicates, node offline."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from gdos_sdk.alerts import AlertEvent, AlertRule, Receiver, RuleTarget
from gdos_sdk.client import Client
from gdos_sdk.testing import LocalCluster, wait_until

from ..helpers.webhook import WebhookReceiver

pytestmark = pytest.mark.e2e


# The test receiver listens on loopback, which the destination policy denies by default.
ALLOW_HOOK = {"OPS_MASTER_ALERTS_WEBHOOK_ALLOW": "127.0.0.1/32"}


@pytest.fixture
def running(cluster: LocalCluster) -> LocalCluster:
    """A started master that may post to the loopback test receiver, with one worker."""
    cluster.start_master(env=ALLOW_HOOK)
    cluster.start_worker()
    return cluster


def add_receiver(gdos: Client, url: str) -> Receiver:
    return gdos.create_receiver("hook", url)


def add_rule(gdos: Client, rule: AlertRule) -> AlertRule:
    fields = attrs.asdict(rule, recurse=False)
    fields.pop("id")
    name, metric = fields.pop("name"), fields.pop("metric")
    return gdos.create_alert_rule(name, metric, **fields)


def events(gdos: Client) -> list[AlertEvent]:
    return gdos.alert_history().items


def test_cpu_rule_debounces_fires_resolves_and_survives_restart(
    running: LocalCluster, pack: Callable[..., Path], hook: WebhookReceiver
) -> None:
    burner = "#!/usr/bin/env python3\nwhile True:\n    pass\n"
    src = running.root / "burner"
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        add_receiver(gdos, hook.url)
        package = pack("sleeper", name="burner", stop_timeout=1)
        # Swap the entrypoint for a CPU burner: same package shape, different body.
        import zipfile

        with zipfile.ZipFile(package) as zf:
            manifest = json.loads(zf.read("service.json"))
        from ..conftest import write_service
        from .conftest import gdos_pack

        write_service(src, manifest, {"main.py": burner}, exec_files=("main.py",))
        out = running.root / "burner.zip"
        assert gdos_pack("build", str(src), "-o", str(out)).returncode == 0
        uploaded = gdos.upload_package(out)
        system = gdos.create_system("hot")
        module = gdos.create_module(system.id, "burn", uploaded.name, uploaded.version)
        # keep_firing_for rides out a dip when the restarting master competes for the CPU;
        # the threshold is low because on a busy 2-core machine (CI beside other jobs, load
        # 5-6) the burner gets a third of a core, while an idle process stays near 0 %.
        add_rule(
            gdos,
            AlertRule(
                name="instance cpu high",
                metric="cpu",
                op=">",
                threshold=10,
                for_seconds=4,
                keep_firing_for=6,
                severity="critical",
                target=RuleTarget(kind="instances", system_id=system.id),
            ),
        )
        deployed_at = time.time()
        instance = gdos.deploy(module.id, node_id, wait="started")
        wait_until(lambda: "firing" in hook.statuses(), timeout=30, what="firing webhook")
        first = hook.received[0]
        fired_at, body = first.at, first.json()
        assert fired_at - deployed_at >= 4  # not before `for` elapsed
        assert body["status"] == "firing" and body["target"] == f"instance:{instance.id}"
        assert body["rule"]["severity"] == "critical" and body["value"] > 10
        assert [e.state for e in events(gdos)] == ["firing"]

    assert running.master is not None
    running.master.terminate()  # stop the master while the alert fires...
    running.start_master(port=running.master_port, env=ALLOW_HOOK)  # ...and start it again
    with running.client() as gdos:
        running.wait_worker_connected(running.workers[0])
        time.sleep(4)  # several evaluations with the burner still hot
        assert [e.state for e in events(gdos)] == ["firing"]  # exactly one event
        assert hook.statuses() == ["firing"]  # no duplicate notification
        gdos.stop_instance(instance.id)
        wait_until(lambda: "resolved" in hook.statuses(), timeout=20, what="resolved webhook")
        history = events(gdos)
        assert len(history) == 1 and history[0].state == "resolved"
        assert history[0].ended_at is not None and history[0].started_at < history[0].ended_at
        assert hook.statuses() == ["firing", "resolved"]


def test_node_offline_fires_within_interval_plus_grace_and_resolves(
    cluster: LocalCluster, hook: WebhookReceiver
) -> None:
    cluster.start_master(
        env={
            "OPS_MASTER_ALERTS_STARTUP_GRACE": "0",
            "OPS_MASTER_FLEET_OFFLINE_GRACE": "3",
            **ALLOW_HOOK,
        }
    )
    worker = cluster.start_worker()
    with cluster.client() as gdos:
        node_id = cluster.wait_worker_connected(worker)
        add_receiver(gdos, hook.url)
        add_rule(
            gdos,
            AlertRule(
                name="node offline",
                metric="node_offline",
                op="==",
                threshold=1,
                target=RuleTarget(kind="nodes"),
            ),
        )
        time.sleep(2)
        assert hook.received == []  # online: nothing fires
        worker.kill()
        killed_at = time.time()
        wait_until(lambda: "firing" in hook.statuses(), timeout=20, what="offline alert")
        offline_after = gdos.get_settings().offline_after
        assert hook.received[0].at - killed_at <= offline_after + 2.0
        assert hook.bodies()[0]["labels"]["node_id"] == node_id
        cluster.start_worker(work_dir=cluster.root / "worker0")
        wait_until(lambda: "resolved" in hook.statuses(), timeout=20, what="back online")
        assert [e.state for e in events(gdos)] == ["resolved"]


def test_deleting_a_rule_resolves_its_alerts(cluster: LocalCluster, hook: WebhookReceiver) -> None:
    cluster.start_master(env={"OPS_MASTER_ALERTS_STARTUP_GRACE": "0", **ALLOW_HOOK})
    worker = cluster.start_worker()
    with cluster.client() as gdos:
        cluster.wait_worker_connected(worker)
        add_receiver(gdos, hook.url)
        rule = add_rule(gdos, AlertRule(name="always", metric="cpu", op=">=", threshold=0))
        wait_until(lambda: "firing" in hook.statuses(), timeout=15, what="firing")
        gdos.delete_alert_rule(rule.id)
        wait_until(lambda: "resolved" in hook.statuses(), timeout=15, what="resolved")
        history = events(gdos)
        assert [e.state for e in history] == ["resolved"]
        assert history[0].end_reason == "rule deleted"
