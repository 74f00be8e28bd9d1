"""Batch jobs and module health check overrides, in process (no workers: nodes are offline)."""

from __future__ import annotations

import httpx
import pytest
from quart import Quart

from gdos_master.app import Master
from gdos_sdk import NotFoundError, ValidationError
from gdos_sdk.batches import BatchState
from gdos_sdk.client import AsyncClient

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
