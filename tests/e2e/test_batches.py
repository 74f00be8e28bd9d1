"""Ordered batch actions with real services: tiers in order, healthy waits, stop in reverse."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from gdos_sdk import InstanceState
from gdos_sdk.batches import BatchState
from gdos_sdk.testing import LocalCluster, free_port, wait_until

pytestmark = pytest.mark.e2e


def read_events(path: Path) -> dict[tuple[str, str], float]:
    """``{(kind, module): time}`` of the last start/stop each service wrote."""
    found: dict[tuple[str, str], float] = {}
    for line in path.read_text().splitlines():
        kind, module, ts = line.split()
        found[(kind, module)] = float(ts)
    return found


def watch_batch(cluster: LocalCluster, batch_id: str) -> list[dict[str, Any]]:
    """Every frame of the live topic ``batch:<id>`` until the job ends."""
    url = cluster.url.replace("http://", "ws://") + "/api/v1/live"
    headers = {"Authorization": f"Bearer {cluster.admin_token()}"}
    frames: list[dict[str, Any]] = []
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        ws.send(json.dumps({"op": "subscribe", "topic": f"batch:{batch_id}"}))
        while True:
            message = json.loads(ws.recv(timeout=60))
            assert "error" not in message, message
            frames.append(message["data"])
            if message["data"]["state"] in ("done", "failed"):
                return frames


def test_three_tiers_start_in_order_with_healthy_waits_and_stop_in_reverse(
    running: LocalCluster, pack: Callable[..., Path], tmp_path: Path
) -> None:
    events = tmp_path / "events.log"
    check = {"type": "http", "url": "http://127.0.0.1:${PORT}/", "interval": 0.3, "timeout": 1}
    package = pack("healthy", health_check=check)
    # Each service listens (is healthy) only 1 s after it runs: a tier that waited for
    # "running" alone would start the next one too early.
    tiers = {"db": 0, "api-a": 10, "api-b": 10, "web": 20}
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        uploaded = gdos.upload_package(package)
        system = gdos.create_system("tiers")
        instances: dict[str, str] = {}
        for name, order in tiers.items():
            env = {"PORT": str(free_port()), "LISTEN_DELAY": "1", "EVENTS_FILE": str(events)}
            module = gdos.create_module(
                system.id, name, uploaded.name, uploaded.version, env=env, start_order=order
            )
            instances[name] = gdos.deploy(module.id, node_id, start=False, wait="started").id
        # The UI edits the order afterwards: moving "web" keeps it last.
        web = next(m for m in gdos.list_modules(system.id) if m.name == "web")
        assert gdos.update_module(web.id, start_order=30).start_order == 30

        job = gdos.start_batch(system.id, "start", concurrency=1)
        assert job.action == "start" and [t.order for t in job.tiers] == [0, 10, 30]
        frames = watch_batch(running, job.id)
        job = gdos.get_batch(job.id, wait=60)
        assert job.state == BatchState.DONE, job
        assert [t.state for t in job.tiers] == [BatchState.DONE] * 3
        assert {i.state for i in job.items} == {BatchState.DONE}
        # Progress was visible while it ran: some frame showed a tier running.
        assert any(any(t["state"] == "running" for t in f["tiers"]) for f in frames)

        started = {n: gdos.get_instance(i).started_at or 0.0 for n, i in instances.items()}
        listening = read_events(events)
        # Each tier was spawned only after the previous tier listened (was healthy)...
        assert started["api-a"] > listening[("start", "db")]
        assert started["api-b"] > listening[("start", "db")]
        assert started["web"] > max(listening[("start", "api-a")], listening[("start", "api-b")])
        # ...and concurrency 1 ran the two instances of tier 10 one after the other.
        first, second = sorted(["api-a", "api-b"], key=lambda n: started[n])
        assert started[second] > listening[("start", first)]

        events.write_text("")
        stopped = gdos.stop_system(system.id)  # waits for the whole ordered stop
        assert all(r.ok and r.state == InstanceState.STOPPED for r in stopped), stopped
        stops = read_events(events)
        assert stops[("stop", "web")] < stops[("stop", "api-a")] < stops[("stop", "db")]
        assert stops[("stop", "api-b")] < stops[("stop", "db")]

        batches = gdos.list_batches(system.id)
        assert [b.action for b in batches] == ["stop", "start"]
        assert [t.order for t in batches[0].tiers] == [30, 10, 0]
        audit = gdos.list_audit(limit=50).items
        actions = [(e.action, e.result) for e in audit if e.target == f"system:{system.id}"]
        assert ("system.batch", "ok") in actions and ("system.stop", "ok") in actions
        assert actions.count(("batch.done", "ok")) == 2


def test_failed_tier_skips_the_next_ones(
    running: LocalCluster, pack: Callable[..., Path], tmp_path: Path
) -> None:
    package = pack("crasher", restart={"policy": "never"})
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        uploaded = gdos.upload_package(package)
        system = gdos.create_system("broken")
        ids = []
        for name, order in (("first", 0), ("second", 1)):
            module = gdos.create_module(
                system.id, name, uploaded.name, uploaded.version, start_order=order
            )
            ids.append(gdos.deploy(module.id, node_id, start=False, wait="started").id)
        job = gdos.start_batch(system.id, "start", tier_timeout=20)
        job = gdos.get_batch(job.id, wait=60)
        assert job.state == BatchState.FAILED
        assert [t.state for t in job.tiers] == [BatchState.FAILED, BatchState.SKIPPED]
        assert "first" in job.error
        second = gdos.get_instance(ids[1])
        assert second.state == InstanceState.STOPPED and second.started_at is None
        wait_until(
            lambda: any(
                e.action == "batch.done" and e.result == "error"
                for e in gdos.list_audit(limit=20).items
            ),
            timeout=5,
            what="batch.done audit entry",
        )


@pytest.mark.both_engines
def test_a_master_restart_mid_batch_leaves_it_failed_with_the_reason(
    running: LocalCluster, pack: Callable[..., Path]
) -> None:
    check = {"type": "http", "url": "http://127.0.0.1:${PORT}/", "interval": 0.3, "timeout": 1}
    package = pack("healthy", health_check=check)
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        uploaded = gdos.upload_package(package)
        system = gdos.create_system("cut-short")
        for name, order, delay in (("quick", 0, "0"), ("slow", 1, "600"), ("last", 2, "0")):
            env = {"PORT": str(free_port()), "LISTEN_DELAY": delay}
            module = gdos.create_module(
                system.id, name, uploaded.name, uploaded.version, env=env, start_order=order
            )
            gdos.deploy(module.id, node_id, start=False, wait="started")
        job = gdos.start_batch(system.id, "start", tier_timeout=300)
        # Tier 1's service never becomes healthy: the job waits there when the master dies.
        wait_until(
            lambda: gdos.get_batch(job.id).tiers[1].state == BatchState.RUNNING,
            timeout=30,
            what="the second tier running",
        )
    assert running.master is not None
    running.master.kill()  # kill -9: the job's task dies with the process
    running.start_master(port=running.master_port)

    with running.client() as gdos:
        ended = gdos.get_batch(job.id, wait=5)
        assert ended.state == BatchState.FAILED
        assert ended.error.startswith("interrupted: the master restarted"), ended.error
        assert ended.finished_at is not None and ended.finished_at > ended.started_at
        # What it had done is kept; what it had not begun is skipped.
        assert [t.state for t in ended.tiers] == [
            BatchState.DONE,
            BatchState.FAILED,
            BatchState.SKIPPED,
        ]
        by_module = {i.module: i for i in ended.items}
        assert by_module["quick"].state == BatchState.DONE
        assert by_module["slow"].state == BatchState.FAILED
        assert by_module["slow"].error.startswith("interrupted")
        assert by_module["last"].state == BatchState.SKIPPED
        assert [b.id for b in gdos.list_batches(system.id)] == [job.id]
        done = [
            e for e in gdos.list_audit(action="batch.done").items if e.params.get("batch") == job.id
        ]
        assert len(done) == 1 and done[0].result == "error" and done[0].actor == "master"
        slow = by_module["slow"].instance_id
        assert done[0].params["failed"] == {slow: by_module["slow"].error}

        # A second restart does not close it again (one batch.done entry, same end).
        assert running.master is not None
        running.master.terminate()
        running.start_master(port=running.master_port)
    with running.client() as gdos:
        assert gdos.get_batch(job.id).finished_at == ended.finished_at
        again = [
            e for e in gdos.list_audit(action="batch.done").items if e.params.get("batch") == job.id
        ]
        assert len(again) == 1
