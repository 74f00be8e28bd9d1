"""Instances against a scripted worker channel: deploys without an answer, orphans, queued restarts.

The master is real (SQLite file, routes, audit); the worker end of the agent channel is a
:class:`ScriptedWorker` that answers each command the way a test tells it to, or not at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gdos_master.app import Master
from gdos_sdk.client import AsyncClient
from gdos_sdk.client._base import CSRF_HEADER
from gdos_sdk.codec import converter
from gdos_sdk.protocol import DeployCommand, DestroyCommand, ErrorInfo, Response, RestartCommand
from gdos_sdk.states import InstanceState

from .scripted import ScriptedWorker, join, status

pytestmark = pytest.mark.anyio


async def module(admin: AsyncClient, make_zip: Callable[..., bytes]) -> str:
    await admin.upload_package(make_zip())
    system = await admin.create_system("shop")
    return (await admin.create_module(system.id, "web", "demo", "1.0.0")).id


async def post(admin: AsyncClient, path: str, body: Any = None) -> httpx.Response:
    """A POST as it goes over the wire (the SDK hides 201 vs 202 and raises on errors)."""
    headers = {CSRF_HEADER: admin._csrf or ""}
    return await admin._http.post(path, json=body, headers=headers)


async def post_deploy(admin: AsyncClient, module_id: str, node_id: str) -> httpx.Response:
    body = {"module_id": module_id, "node_id": node_id, "start": True}
    return await post(admin, "/instances", body)


def audit(master: Master, action: str) -> list[dict[str, Any]]:
    rows = master.db.all("SELECT * FROM audit WHERE action = ? ORDER BY id", (action,))
    return [{**dict(r), "params": json.loads(r["params"])} for r in rows]


async def test_a_deploy_without_an_answer_in_time_is_kept_and_its_late_answer_settles_it(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    node_id = join(master)
    worker = ScriptedWorker(master, node_id)
    await worker.connect()
    module_id = await module(admin, make_zip)
    master.orchestrator.command_timeout = 0.3
    worker.answer = lambda _: None  # the package download is held up somewhere

    answer = await post_deploy(admin, module_id, node_id)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["state"] == "deploying" and "no answer yet" in body["reason"]
    instance_id = body["id"]
    assert (await admin.get_instance(instance_id)).state == InstanceState.DEPLOYING

    # The worker finishes after all: its answer, though late, is recorded.
    late = worker.received[-1]
    worker.conn.resolve(Response(id=late.id, ok=True, result=status(instance_id)))
    settled = await admin.get_instance(instance_id)
    assert settled.state == InstanceState.RUNNING and settled.pid == 4242

    # A second one fails on the worker after the answer: the record says so, with why.
    answer = await post_deploy(admin, module_id, node_id)
    assert answer.status_code == 202
    failed_id = answer.json()["id"]
    late = worker.received[-1]
    error = ErrorInfo(code="transport_error", message="cannot fetch package demo@1.0.0")
    worker.conn.resolve(Response(id=late.id, ok=False, error=error))
    failed = await admin.get_instance(failed_id)
    assert failed.state == InstanceState.FAILED
    assert failed.reason == "deploy failed: cannot fetch package demo@1.0.0"
    entry = audit(master, "instance.deploy_failed")[-1]
    assert entry["target"] == f"instance:{failed_id}" and entry["actor"] == "master"


async def test_a_deploy_the_worker_refuses_leaves_no_record(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    node_id = join(master)
    worker = ScriptedWorker(master, node_id)
    await worker.connect()
    module_id = await module(admin, make_zip)
    error = ErrorInfo(code="spawn_failed", message="cannot start 'run.sh'")
    worker.answer = lambda _: Response(id="", ok=False, error=error)
    answer = await post_deploy(admin, module_id, node_id)
    assert answer.status_code == 502 and "cannot start" in answer.text
    assert await admin.list_instances() == []


async def test_a_report_about_an_instance_without_record_destroys_the_orphan(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    node_id = join(master)
    worker = ScriptedWorker(master, node_id)
    await worker.connect()
    orchestrator = master.orchestrator

    orchestrator.report(node_id, status("ghost"))
    orchestrator.report(node_id, status("ghost"))  # reported twice: destroyed once
    for _ in range(50):
        if worker.received:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert [type(c) for c in worker.commands()] == [DestroyCommand]
    assert worker.commands()[0].instance_id == "ghost"  # type: ignore[union-attr]
    entry = audit(master, "instance.orphan")[-1]
    assert entry["target"] == "instance:ghost" and entry["actor"] == "master"
    assert entry["params"]["node_id"] == node_id and entry["params"]["pid"] == 4242

    # A report still on its way about an instance just destroyed is not an orphan.
    module_id = await module(admin, make_zip)
    instance = await admin.deploy(module_id, node_id, wait="started")
    await admin.destroy_instance(instance.id)
    sent = len(worker.received)
    orchestrator.report(node_id, status(instance.id, InstanceState.STOPPED))
    await asyncio.sleep(0.05)
    assert len(worker.received) == sent
    assert len(audit(master, "instance.orphan")) == 1

    # The same in a hello's inventory: destroyed by the reconcile, and audited as well.
    await orchestrator.reconcile(node_id, [status("ghost-2")])
    assert worker.commands()[-1] == DestroyCommand("ghost-2")
    assert audit(master, "instance.orphan")[-1]["target"] == "instance:ghost-2"
    # An instance the worker runs without a usable record, which the master knows: redeployed.
    kept = await admin.deploy(module_id, node_id, wait="started")
    await orchestrator.reconcile(node_id, [status(kept.id, InstanceState.UNKNOWN)])
    assert isinstance(worker.commands()[-1], DeployCommand)


async def test_a_restart_on_an_offline_node_is_queued_and_sent_when_it_returns(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    node_id = join(master)
    worker = ScriptedWorker(master, node_id)
    await worker.connect()
    module_id = await module(admin, make_zip)
    instance = await admin.deploy(module_id, node_id, wait="started")
    await master.fleet.disconnect(worker.conn)

    answer = await post(admin, f"/instances/{instance.id}/restart")
    assert answer.status_code == 202, answer.text  # like start and stop, not 409
    assert answer.json()["reason"].endswith("restart queued")

    worker = ScriptedWorker(master, node_id)
    await worker.connect()
    inventory = [status(instance.id)]
    await master.orchestrator.reconcile(node_id, inventory)
    assert [type(c) for c in worker.commands()] == [RestartCommand]
    assert "restart queued" not in (await admin.get_instance(instance.id)).reason
    await master.orchestrator.reconcile(node_id, inventory)
    assert len(worker.received) == 1  # sent once

    # A stop while the node is away drops a queued restart.
    await master.fleet.disconnect(worker.conn)
    await post(admin, f"/instances/{instance.id}/restart")
    stopped = await admin.stop_instance(instance.id)
    assert "restart queued" not in stopped.reason
    worker = ScriptedWorker(master, node_id)
    await worker.connect()
    await master.orchestrator.reconcile(node_id, inventory)
    assert [c.kind for c in worker.commands()] == ["stop"]
    assert converter.unstructure(worker.commands()[0])["instance_id"] == instance.id

    # Online, a restart is sent, never queued: one whose answer is lost is not repeated.
    master.orchestrator.command_timeout = 0.2
    worker.answer = lambda _: None
    answer = await post(admin, f"/instances/{instance.id}/restart")
    assert answer.status_code == 503
    assert "restart queued" not in (await admin.get_instance(instance.id)).reason
