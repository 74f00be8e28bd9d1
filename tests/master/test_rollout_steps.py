"""The I/O-free parts of rollouts, and the agent protocol's compatibility around upgrades."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from quart import Quart
from quart.testing.connections import WebsocketDisconnectError

from gdos_master.app import Master
from gdos_master.rollout_steps import Verification, order_instances, step_for
from gdos_sdk import ConflictError
from gdos_sdk.client import AsyncClient
from gdos_sdk.codec import structure, unstructure
from gdos_sdk.models import Fingerprint, Instance
from gdos_sdk.protocol import (
    Hello,
    InstanceSpec,
    InstanceStatus,
    Request,
    UpgradeCommand,
    decode,
    encode,
)
from gdos_sdk.rollouts import (
    Rollout,
    RolloutItem,
    RolloutState,
    RolloutStrategy,
    RolloutWait,
    StepState,
)
from gdos_sdk.states import DesiredState, Health, InstanceState

from .scripted import ScriptedWorker, join

S = InstanceState
T = StepState


def instance(**fields: Any) -> Instance:
    defaults: dict[str, Any] = {
        "id": "i",
        "module_id": "m",
        "system_id": "s",
        "node_id": "n",
        "package": "demo",
        "version": "2.0.0",
        "desired_state": DesiredState.RUNNING,
        "state": S.RUNNING,
        "pid": 10,
        "started_at": 100.0,
        "node_online": True,
    }
    return Instance(**{**defaults, **fields})


def test_stable_needs_one_process_for_min_healthy_time() -> None:
    check = Verification(RolloutStrategy(wait=RolloutWait.STABLE, min_healthy_time=5), "2.0.0")
    assert "switch to 2.0.0" in check.look(instance(version="1.0.0"), 101).waiting_for
    assert "so far 2.0 s" in check.look(instance(), 102).waiting_for
    assert check.look(instance(), 105).done
    # Another process (it crashed and was restarted between two looks) fails it.
    check = Verification(RolloutStrategy(min_healthy_time=5), "2.0.0")
    check.look(instance(), 101)
    assert "crashed on 2.0.0" in check.look(instance(pid=11, reason="x"), 102).failed
    assert "crashed" in check.look(instance(state=S.BACKOFF, reason="exited 3"), 102).failed
    assert "failed on 2.0.0: boom" in check.look(instance(state=S.FAILED, reason="boom"), 1).failed


def test_healthy_waits_for_the_check_then_holds_it() -> None:
    check = Verification(RolloutStrategy(wait=RolloutWait.HEALTHY, min_healthy_time=2), "2.0.0")
    assert check.look(instance(health=Health.STARTING), 101).waiting_for.startswith("its health")
    assert not check.look(instance(health=Health.HEALTHY), 110).done  # healthy from now
    assert check.look(instance(health=Health.HEALTHY), 112).done
    failing = check.look(instance(health=Health.UNHEALTHY, reason="503"), 113)
    assert failing.failed == "unhealthy on 2.0.0: 503"
    # Without a health check, healthy waits as stable.
    check = Verification(RolloutStrategy(wait=RolloutWait.HEALTHY, min_healthy_time=2), "2.0.0")
    assert check.look(instance(), 102).done


def test_running_and_stopped_instances() -> None:
    check = Verification(RolloutStrategy(wait=RolloutWait.RUNNING), "2.0.0")
    assert check.look(instance(), 100).done
    stopped = instance(desired_state=DesiredState.STOPPED, state=S.STOPPED, pid=None)
    assert Verification(RolloutStrategy(), "2.0.0").look(stopped, 100).done


def status(state: InstanceState, version: str) -> InstanceStatus:
    return InstanceStatus("i", DesiredState.RUNNING, state, version=version)


def test_the_steps_a_worker_reports_only_move_forward() -> None:
    assert step_for(T.PREPARING, status(S.STOPPING, "1.0.0"), "2.0.0") == T.STOPPING
    assert step_for(T.STOPPING, status(S.STOPPED, "1.0.0"), "2.0.0") == T.STARTING
    assert step_for(T.STARTING, status(S.RUNNING, "2.0.0"), "2.0.0") == T.VERIFYING
    # The old version still running (a late report) does not move it back, or forward.
    assert step_for(T.STARTING, status(S.RUNNING, "1.0.0"), "2.0.0") == T.STARTING
    assert step_for(T.PREPARING, status(S.STOPPED, "1.0.0"), "2.0.0") == T.PREPARING
    assert step_for(T.DONE, status(S.STOPPING, "2.0.0"), "2.0.0") == T.DONE


def test_instances_are_spread_over_the_nodes_online_first() -> None:
    at = [datetime(2030, 1, 1, 0, 0, n, tzinfo=UTC) for n in range(6)]
    found = [
        instance(id="a1", node_id="a", created_at=at[0], node_online=False),
        instance(id="a2", node_id="a", created_at=at[1], node_online=False),
        instance(id="b1", node_id="b", created_at=at[2]),
        instance(id="b2", node_id="b", created_at=at[3]),
        instance(id="b3", node_id="b", created_at=at[4]),
        instance(id="c1", node_id="c", created_at=at[5]),
    ]
    assert [i.id for i in order_instances(found)] == ["b1", "c1", "a1", "b2", "a2", "b3"]


# --- the protocol -----------------------------------------------------------------------------


def test_the_upgrade_command_and_a_rollout_survive_the_wire() -> None:
    spec = InstanceSpec(
        instance_id="i",
        module_id="m",
        system_id="s",
        module_name="api",
        package="demo",
        version="2.0.0",
        sha256="ab" * 32,
        size=10,
        download_path="/api/v1/agent/packages/x",
        manifest={"name": "demo", "version": "2.0.0", "entrypoint": "run.sh"},
        env={"PORT": "80"},
    )
    request = Request(id="r1", command=UpgradeCommand(spec=spec), timeout=300)
    assert decode(encode(request)) == request
    rollout = Rollout(
        id="r",
        module_id="m",
        system_id="s",
        module="api",
        package="demo",
        from_version="1.0.0",
        to_version="2.0.0",
        kind="rollout",
        strategy=RolloutStrategy(max_parallel=2, canary=1, auto_promote_after=30.0),
        state=RolloutState.AWAITING_PROMOTION,
        user="admin",
        started_at=1.0,
        items=[RolloutItem("i", "n", "1.0.0", canary=True, state=StepState.DONE)],
        revision=7,
    )
    assert structure(unstructure(rollout), Rollout) == rollout


def hello(protocol: int) -> str:
    return encode(
        Hello(
            protocol=protocol,
            node_id=str(uuid.uuid4()),
            hostname="old-worker",
            agent_version="0.0.9",
            fingerprint=Fingerprint("Linux", "12", "6", "x86_64", "cpu", 1, 1, 1),
        )
    )


async def first_answer(app: Quart, text: str) -> Any:
    headers = {"Authorization": "Bearer join-token-for-tests"}
    async with app.test_client().websocket("/api/v1/agent/ws", headers=headers) as ws:
        await ws.send(text)
        answer = decode(await ws.receive())
        try:
            await asyncio.wait_for(ws.receive(), 0.2)
        except (TimeoutError, WebsocketDisconnectError):
            pass
    return answer


@pytest.mark.anyio
async def test_a_master_takes_workers_of_protocol_1_to_3_only(app: Quart) -> None:
    for protocol in (1, 2, 3):
        assert (await first_answer(app, hello(protocol))).type == "welcome"
    refused = await first_answer(app, hello(4))
    assert refused.type == "error" and "speaks 1 to 3" in refused.message


@pytest.mark.anyio
async def test_a_worker_too_old_to_upgrade_in_place_is_named(
    admin: AsyncClient, master: Master, make_zip: Any
) -> None:
    for version in ("1.0.0", "2.0.0"):
        await admin.upload_package(make_zip(version=version))
    node = join(master)
    worker = ScriptedWorker(master, node)
    worker.conn.protocol = 1
    await worker.connect()
    system = await admin.create_system("s")
    module = await admin.create_module(system.id, "api", "demo", "1.0.0")
    deployed = await admin.deploy(module.id, node, wait="started")
    with pytest.raises(ConflictError, match="agent protocol 1"):
        await master.orchestrator.upgrade(deployed.id, "2.0.0")
    # Its reconcile does not send what it cannot read, even for an instance behind.
    master.orchestrator.set_desired_version(deployed.id, "2.0.0")
    report = InstanceStatus(deployed.id, DesiredState.RUNNING, S.RUNNING, version="1.0.0")
    planned = master.orchestrator.plan_reconcile(node, [report], protocol=1)
    assert not [c for c in planned if isinstance(c, UpgradeCommand)]
    planned = master.orchestrator.plan_reconcile(node, [report], protocol=2)
    assert [c.spec.version for c in planned if isinstance(c, UpgradeCommand)] == ["2.0.0"]
    # A rollout says why it stops there.
    job = await admin.get_rollout((await admin.rollout(module.id, "2.0.0")).id, wait=10)
    assert job.state.value == "failed" and "upgrade that worker" in job.error


@pytest.mark.anyio
async def test_a_master_shutdown_cancels_the_move_in_flight() -> None:
    """Cancelling a rollout's task (master shutdown) cancels the move it waits on too.

    Before, the move ran on after the master had closed its database (a connection
    left open on PostgreSQL, an error in a background task on SQLite).
    """
    from types import SimpleNamespace

    from gdos_master.rollouts import Rollouts

    started, cancelled = asyncio.Event(), asyncio.Event()

    async def move() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = SimpleNamespace(stop=asyncio.Event())
    waiting = asyncio.ensure_future(Rollouts._until_stopped(None, job, move()))  # type: ignore[arg-type]
    await started.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.wait_for(cancelled.wait(), 5)
