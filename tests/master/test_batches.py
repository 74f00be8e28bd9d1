"""Batch jobs and module health check overrides, in process (no workers: nodes are offline)."""

from __future__ import annotations

import json

import httpx
import pytest
from quart import Quart

from gdos_master.app import Master
from gdos_master.batches import INTERRUPTED
from gdos_sdk import NotFoundError, ValidationError
from gdos_sdk.batches import BatchState
from gdos_sdk.client import AsyncClient
from gdos_sdk.codec import unstructure

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
        await admin.deploy(module.id, node.id, start=False)

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
