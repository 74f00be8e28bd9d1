"""Batch jobs and module health check overrides, in process (no workers: nodes are offline)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest
from quart import Quart

from gdos_master.app import Master
from gdos_master.batches import INTERRUPTED
from gdos_master.db import Database
from gdos_sdk import NotFoundError, ValidationError
from gdos_sdk.batches import BatchState
from gdos_sdk.client import AsyncClient
from gdos_sdk.codec import unstructure
from gdos_sdk.states import InstanceState

from .scripted import ScriptedWorker, join, status

pytestmark = pytest.mark.anyio


async def test_module_health_check_override_is_validated_and_kept(
    admin: AsyncClient, make_zip
) -> None:
    await admin.upload_package(make_zip())
    system = await admin.create_system("s")
    check = {"type": "tcp", "port": 5432, "check_restart": {"limit": 2}}
    module = await admin.create_module(system.id, "db", "demo", "1.0.0", health_check=check)
    assert module.health_check == check
    with pytest.raises(ValidationError) as refused:
        await admin.create_module(
            system.id, "bad", "demo", "1.0.0", health_check={"type": "tcp", "prot": 1}
        )
    paths = [d["path"] for d in refused.value.details]
    assert paths == ["$.health_check.prot", "$.health_check.port"]
    with pytest.raises(ValidationError) as refused:
        await admin.update_module(module.id, health_check={"type": "http", "url": "nope"})
    assert [d["path"] for d in refused.value.details] == ["$.health_check.url"]
    assert (await admin.get_module(module.id)).health_check == check
    cleared = await admin.update_module(module.id, health_check={})
    assert cleared.health_check is None


async def test_batch_tiers_follow_start_order_and_a_failed_tier_skips_the_rest(
    admin: AsyncClient, master: Master, make_zip
) -> None:
    await admin.upload_package(make_zip())
    node = await admin.plan_node("far-away")  # never connects: every command is deferred
    system = await admin.create_system("s")
    for name, order in (("web", 20), ("db", 0), ("api", 10)):
        module = await admin.create_module(system.id, name, "demo", "1.0.0", start_order=order)
        await admin.deploy(module.id, node.id, start=False, wait="started")

    job = await admin.start_batch(system.id, "start", concurrency=2)
    assert [(t.order, t.modules) for t in job.tiers] == [(0, ["db"]), (10, ["api"]), (20, ["web"])]
    job = await admin.get_batch(job.id, wait=10)
    assert job.state == BatchState.FAILED
    assert [t.state for t in job.tiers] == [
        BatchState.FAILED,
        BatchState.SKIPPED,
        BatchState.SKIPPED,
    ]
    assert "node is offline" in job.error and job.error.startswith("tier 0: db")

    stop = await admin.start_batch(system.id, "stop")
    assert [t.order for t in stop.tiers] == [20, 10, 0]
    stop = await admin.get_batch(stop.id, wait=10)
    # A stop goes on after a failure: every tier was tried.
    assert [t.state for t in stop.tiers] == [BatchState.FAILED] * 3
    assert [b.id for b in await admin.list_batches(system.id)] == [stop.id, job.id]

    entries = (await admin.list_audit(limit=20)).items
    done = [e for e in entries if e.action == "batch.done"]
    assert len(done) == 2 and {e.result for e in done} == {"error"}
    assert done[0].params["action"] == "stop" and len(done[0].params["failed"]) == 3
    assert any(e.action == "system.batch" and e.params.get("batch") == job.id for e in entries)


async def test_batch_bad_input(admin: AsyncClient, app: Quart) -> None:
    system = await admin.create_system("empty")
    token = (await admin.create_token("t")).secret
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://m/api/v1",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    ) as http:
        for body, needle in (
            (b'{"action": "start", "concurrency": 0}', "concurrency"),
            (b'{"action": "restart"}', "action"),
            (b'{"action": "start", "tier_timeout": 0}', "tier_timeout"),
            (b'{"action": "start", "concurency": 2}', "concurency"),
        ):
            response = await http.post(f"/systems/{system.id}/batches", content=body)
            assert response.status_code == 422, (body, response.text)
            assert needle in response.text
    with pytest.raises(NotFoundError):
        await admin.start_batch("no-such-system", "start")
    with pytest.raises(NotFoundError):
        await admin.get_batch("no-such-batch")
    empty = await admin.get_batch((await admin.start_batch(system.id, "start")).id, wait=5)
    assert empty.state == BatchState.DONE and empty.tiers == []
    assert await admin.start_system(system.id) == []


async def test_recover_closes_a_job_left_running_and_keeps_what_it_did(
    admin: AsyncClient, master: Master
) -> None:
    """What a master restart (or a backup taken mid-batch) leaves in the batch_jobs table."""
    system = await admin.create_system("s")
    ended = await admin.get_batch((await admin.start_batch(system.id, "start")).id, wait=5)
    item = {"module_id": "m", "node_id": "n", "started_at": 1.0, "finished_at": None}
    stored = {
        **unstructure(ended),
        "id": "cut-short",
        "state": "running",
        "finished_at": None,
        "tiers": [
            {"order": 0, "modules": ["db"], "state": "done", "started_at": 1.0, "finished_at": 2.0},
            {"order": 1, "modules": ["api"], "state": "running", "started_at": 2.0},
            {"order": 2, "modules": ["web"], "state": "pending"},
        ],
        "items": [
            {**item, "instance_id": "i0", "module": "db", "order": 0, "state": "done"},
            {**item, "instance_id": "i1", "module": "api", "order": 1, "state": "running"},
            {**item, "instance_id": "i2", "module": "api", "order": 1, "state": "done"},
            {**item, "instance_id": "i3", "module": "web", "order": 2, "state": "pending"},
        ],
    }
    master.db.execute(
        "INSERT INTO batch_jobs(id, system_id, state, started_at, job) VALUES (?, ?, ?, ?, ?)",
        ("cut-short", system.id, "running", 1.0, json.dumps(stored)),
    )
    assert master.batches.recover() == 1
    job = await admin.get_batch("cut-short", wait=5)  # not run here: answered at once
    assert job.state == BatchState.FAILED and job.error == INTERRUPTED
    assert [t.state for t in job.tiers] == [BatchState.DONE, BatchState.FAILED, BatchState.SKIPPED]
    assert job.tiers[0].finished_at == 2.0 and job.tiers[1].finished_at == job.finished_at
    assert [(i.state, i.error) for i in job.items] == [
        (BatchState.DONE, ""),
        (BatchState.FAILED, INTERRUPTED),
        (BatchState.DONE, ""),
        (BatchState.SKIPPED, ""),
    ]
    # Newest first: the crafted job started at t=1.
    assert [b.id for b in await admin.list_batches(system.id)] == [ended.id, "cut-short"]
    assert master.batches.recover() == 0  # closed once
    done = (await admin.list_audit(action="batch.done")).items[0]
    assert (done.params["batch"], done.actor, done.result) == ("cut-short", "master", "error")
    assert done.params["failed"] == {"i1": INTERRUPTED}


@pytest.mark.parametrize("db_engine", ["postgresql"])
async def test_recover_skips_a_job_another_master_is_closing(
    admin: AsyncClient, master: Master, db_url: str
) -> None:
    """Masters sharing one PostgreSQL claim left-over jobs with row locks, never twice."""
    system = await admin.create_system("s")
    ended = await admin.get_batch((await admin.start_batch(system.id, "start")).id, wait=5)
    for job_id in ("taken", "free"):
        stored = {**unstructure(ended), "id": job_id, "state": "running", "finished_at": None}
        master.db.execute(
            "INSERT INTO batch_jobs(id, system_id, state, started_at, job) VALUES (?,?,?,?,?)",
            (job_id, system.id, "running", 1.0, json.dumps(stored)),
        )
    other = Database.open(url=db_url)  # another master's connection, in its recovery
    try:
        with other.transaction():
            claimed = other.all(
                "SELECT id FROM batch_jobs WHERE id = 'taken'" + other.for_update_skip_locked
            )
            assert [r["id"] for r in claimed] == ["taken"]
            assert master.batches.recover() == 1  # "free" only; "taken" is skipped
        assert (await admin.get_batch("free")).state == BatchState.FAILED
        assert (await admin.get_batch("taken")).state == BatchState.RUNNING
    finally:
        other.close()


async def test_jobs_beyond_the_stored_limit_are_dropped(admin: AsyncClient, master: Master) -> None:
    system = await admin.create_system("s")
    master.batches.keep, master.batches.keep_stored = 2, 3
    ids = []
    for _ in range(5):
        job = await admin.start_batch(system.id, "start")
        ids.append((await admin.get_batch(job.id, wait=5)).id)
    assert [b.id for b in await admin.list_batches(system.id)] == ids[::-1][:3]
    assert len(master.batches.jobs) == 2  # older ended jobs are read from the database
    assert (await admin.get_batch(ids[2])).id == ids[2]
    with pytest.raises(NotFoundError, match="last 3"):
        await admin.get_batch(ids[0])


async def scripted_system(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes], count: int
) -> tuple[str, ScriptedWorker, list[str]]:
    """A system of ``count`` instances on one node whose worker answers every command at once."""
    worker = ScriptedWorker(master, join(master))
    await worker.connect()
    await admin.upload_package(make_zip())
    system = await admin.create_system("fast")
    module = await admin.create_module(system.id, "web", "demo", "1.0.0")
    ids = [
        (await admin.deploy(module.id, worker.node_id, start=False, wait="started")).id
        for _ in range(count)
    ]
    worker.received.clear()
    worker.received_at.clear()
    return system.id, worker, ids


async def test_min_running_is_checked_without_holding_a_slot(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    system_id, worker, _ = await scripted_system(admin, master, make_zip, 6)
    began = time.monotonic()
    job = await admin.start_batch(system_id, "start", concurrency=2, min_running=1.5)
    job = await admin.get_batch(job.id, wait=30)
    took = time.monotonic() - began
    assert job.state == BatchState.DONE, job.error
    starts = worker.received_at
    assert [r.command.kind for r in worker.received] == ["start"] * 6
    # Two slots, six instances: had each slot waited out min_running, the last start would
    # come 3 s after the first. A slot is free as soon as its instance runs.
    assert starts[-1] - starts[0] < 1.0, starts
    assert took >= 1.5  # ... and every instance was still watched for min_running


async def test_a_crash_within_min_running_still_fails_the_batch(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    system_id, worker, ids = await scripted_system(admin, master, make_zip, 3)
    job = await admin.start_batch(system_id, "start", concurrency=1, min_running=2)
    await worker.wait_requests(3)  # all started: the slot did not wait for min_running
    master.orchestrator.report(worker.node_id, status(ids[1], InstanceState.FAILED))
    job = await admin.get_batch(job.id, wait=30)
    assert job.state == BatchState.FAILED
    states = {i.instance_id: (i.state, i.error) for i in job.items}
    assert states[ids[1]][0] == BatchState.FAILED
    assert states[ids[1]][1].startswith("instance is failed")
    assert states[ids[0]][0] == states[ids[2]][0] == BatchState.DONE
