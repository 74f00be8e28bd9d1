"""The browser live channel: authentication, snapshots then changes, slow clients dropped."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from quart.testing.connections import WebsocketResponseError

try:
    from quart.testing.connections import WebsocketDisconnectError
except ImportError:  # Quart 0.23+ (Python 3.13+): its test socket no longer reports a close
    WebsocketDisconnectError = None  # type: ignore[assignment,misc]

from gdos_master import live
from gdos_master.app import Master
from gdos_master.auth import Principal
from gdos_master.fleet import AgentConnection
from gdos_master.live import LiveClient, LiveHub
from gdos_sdk.client import AsyncClient
from gdos_sdk.models import Fingerprint, InstanceSample, NodeSample, Role
from gdos_sdk.protocol import PROTOCOL_VERSION, Hello

from .conftest import ADMIN_PASSWORD, token_for

pytestmark = pytest.mark.anyio

LIVE = "/api/v1/live"


@pytest.fixture
def hub(app: Quart) -> LiveHub:
    found: LiveHub = app.extensions["gdos_live"]
    return found


@pytest.fixture
async def admin_token(admin: AsyncClient) -> str:
    return (await admin.create_token("live")).secret


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def recv(ws: Any, topic: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame (for ``topic`` if given; frames of other topics are skipped)."""
    while True:
        message: dict[str, Any] = await asyncio.wait_for(ws.receive_json(), timeout)
        if topic is None or message.get("topic") == topic:
            return message


async def subscribe(ws: Any, topic: str) -> dict[str, Any]:
    await ws.send_json({"op": "subscribe", "topic": topic})
    return await recv(ws, topic)


def sample(ts: float, cpu: float = 12.5) -> NodeSample:
    return NodeSample(
        ts=ts,
        cpu_percent=cpu,
        load1=0.5,
        load5=0.4,
        load15=0.3,
        mem_total=8_000_000_000,
        mem_used=2_000_000_000,
        mem_percent=25.0,
        swap_total=0,
        swap_used=0,
        disk_read_bps=100.0,
        disk_write_bps=200.0,
        uptime_seconds=1000.0,
    )


async def online_node(master: Master, hostname: str = "web-1") -> str:
    """A joined node with an open (fake) agent channel and one heartbeat."""
    fingerprint = Fingerprint(
        os="Linux",
        os_version="12",
        kernel="6.1",
        arch="x86_64",
        cpu_model="Test CPU",
        cpu_cores=4,
        cpu_physical_cores=2,
        memory_bytes=8_000_000_000,
    )
    hello = Hello(
        protocol=PROTOCOL_VERSION,
        node_id=str(uuid.uuid4()),
        hostname=hostname,
        agent_version="test",
        fingerprint=fingerprint,
    )
    node_id, _ = master.nodes.join(hello, via_join_token=True, node_id="")

    async def nothing(*_: Any) -> None:
        return None

    await master.fleet.connect(AgentConnection(node_id, nothing, nothing), approved=True)
    master.fleet.heartbeat(node_id, [sample(time.time())], [])
    return node_id


@pytest.fixture
async def socket(app: Quart, admin_token: str) -> AsyncIterator[Any]:
    async with app.test_client().websocket(LIVE, headers=bearer(admin_token)) as ws:
        yield ws


async def test_refused_without_credentials_or_with_a_node_credential(
    app: Quart, master: Master
) -> None:
    with pytest.raises(WebsocketResponseError) as refused:
        async with app.test_client().websocket(LIVE) as ws:
            await ws.receive()
    assert refused.value.response.status_code == 401

    hello = Hello(
        protocol=PROTOCOL_VERSION,
        node_id=str(uuid.uuid4()),
        hostname="n1",
        agent_version="t",
        fingerprint=Fingerprint("Linux", "12", "6", "x86_64", "cpu", 1, 1, 1),
    )
    _, credential = master.nodes.join(hello, via_join_token=True, node_id="")
    assert credential is not None
    with pytest.raises(WebsocketResponseError) as refused:
        async with app.test_client().websocket(LIVE, headers=bearer(credential)) as ws:
            await ws.receive()
    assert refused.value.response.status_code == 403


async def test_session_cookie_needs_a_same_origin_page(app: Quart) -> None:
    client = app.test_client()
    response = await client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200
    for origin in (None, "http://evil.example"):
        headers = {"Origin": origin} if origin else {}
        with pytest.raises(WebsocketResponseError) as refused:
            async with client.websocket(LIVE, headers=headers) as ws:
                await ws.receive()
        assert refused.value.response.status_code == 403
        body = await refused.value.response.get_json()
        assert body["error"]["code"] == "forbidden"
    async with client.websocket(LIVE, headers={"Origin": "http://localhost"}) as ws:
        first = await subscribe(ws, "fleet")
        assert first["data"]["snapshot"] is True


async def test_nodes_snapshot_then_only_changes(
    socket: Any, admin: AsyncClient, master: Master, hub: LiveHub
) -> None:
    node_id = await online_node(master)
    first = await subscribe(socket, "nodes")
    (row,) = first["data"]["rows"]
    assert first["data"]["snapshot"] is True
    assert row["id"] == node_id and row["status"] == "online" and row["hostname"] == "web-1"
    assert row["fingerprint"]["cpu_cores"] == 4 and row["latest"]["cpu_percent"] == 12.5

    # A new sample alone travels as a small `latest` entry, not as the whole row.
    master.fleet.heartbeat(node_id, [sample(time.time() + 1, cpu=77.0)], [])
    hub.tick()
    change = await recv(socket, "nodes")
    assert change["data"] == {"latest": {node_id: change["data"]["latest"][node_id]}}
    assert change["data"]["latest"][node_id]["cpu_percent"] == 77.0

    planned = await admin.plan_node("db-1", addresses=["10.0.0.9"])
    hub.tick()
    change = await recv(socket, "nodes")
    assert [r["id"] for r in change["data"]["rows"]] == [planned.id]
    assert change["data"]["rows"][0]["status"] == "planned"

    await admin.update_node(planned.id, alias="database")
    hub.tick()
    change = await recv(socket, "nodes")
    assert change["data"]["rows"][0]["alias"] == "database"

    await admin.delete_node(planned.id)
    hub.tick()
    change = await recv(socket, "nodes")
    assert change["data"] == {"removed": [planned.id]}


async def test_node_samples_and_fleet_summary(socket: Any, master: Master, hub: LiveHub) -> None:
    node_id = await online_node(master)
    first = await subscribe(socket, f"node:{node_id}")
    assert [s["cpu_percent"] for s in first["data"]["samples"]] == [12.5]
    master.fleet.heartbeat(node_id, [sample(time.time() + 1, cpu=50.0)], [])
    hub.tick()
    change = await recv(socket, f"node:{node_id}")
    assert [s["cpu_percent"] for s in change["data"]["samples"]] == [50.0]
    assert "snapshot" not in change["data"]

    fleet = (await subscribe(socket, "fleet"))["data"]
    assert fleet["nodes"] == {"total": 1, "online": 1, "offline": 0, "pending": 0, "planned": 0}
    assert fleet["top_cpu"][0]["id"] == node_id and fleet["top_cpu"][0]["cpu_percent"] == 50.0

    # The channel closes: the node goes offline and the summary follows.
    conn = master.fleet.connection(node_id)
    assert conn is not None
    await master.fleet.disconnect(conn)
    hub.tick()
    change = await recv(socket, "fleet")
    assert change["data"]["nodes"]["offline"] == 1 and change["data"]["top_cpu"] == []


async def test_instances_of_a_system(
    socket: Any, admin: AsyncClient, hub: LiveHub, make_zip: Any
) -> None:
    await admin.upload_package(make_zip())
    system = await admin.create_system("shop")
    module = await admin.create_module(system.id, "web", "demo", "1.0.0")
    node = await admin.plan_node("later-1")
    first = await subscribe(socket, f"system:{system.id}")
    assert first["data"] == {"snapshot": True, "rows": []}
    everything = await subscribe(socket, "instances")
    assert everything["data"]["rows"] == []

    instance = await admin.deploy(
        module.id, node.id, start=True, wait="started"
    )  # node offline: recorded
    hub.tick()
    change = await recv(socket, f"system:{system.id}")
    (row,) = change["data"]["rows"]
    assert row["id"] == instance.id and row["state"] == "unknown"
    assert row["desired_state"] == "running" and row["node_online"] is False

    await admin.stop_instance(instance.id)
    hub.tick()
    change = await recv(socket, f"system:{system.id}")
    assert change["data"]["rows"][0]["desired_state"] == "stopped"

    await admin.destroy_instance(instance.id)
    hub.tick()
    change = await recv(socket, f"system:{system.id}")
    assert change["data"] == {"removed": [instance.id]}


async def test_instance_samples_arrive_in_order_even_in_batches(
    socket: Any, admin: AsyncClient, master: Master, hub: LiveHub, make_zip: Any
) -> None:
    await admin.upload_package(make_zip())
    system = await admin.create_system("shop")
    module = await admin.create_module(system.id, "web", "demo", "1.0.0")
    node = await admin.plan_node("later-2")
    instance = await admin.deploy(module.id, node.id, start=False, wait="started")
    first = await subscribe(socket, f"instance:{instance.id}")
    assert first["data"] == {"snapshot": True, "samples": []}
    now = time.time()
    batch = [
        InstanceSample(now + i, instance.id, 10.0 * i, 1000, 0.0, 0.0, 3, 4, 1) for i in (2, 1)
    ]
    master.fleet.heartbeat(node.id, [], batch)
    hub.tick()
    change = await recv(socket, f"instance:{instance.id}")
    assert [s["cpu_percent"] for s in change["data"]["samples"]] == [10.0, 20.0]


async def test_audit_topic_is_for_admins(
    app: Quart, socket: Any, admin: AsyncClient, hub: LiveHub
) -> None:
    first = await subscribe(socket, "audit")
    assert first["data"]["snapshot"] is True
    assert first["data"]["items"][0]["action"] == "token.create"
    await admin.create_system("billing")
    hub.tick()
    change = await recv(socket, "audit")
    assert [e["action"] for e in change["data"]["items"]] == ["system.create"]

    viewer = await token_for(admin, app, "viewer")
    async with app.test_client().websocket(LIVE, headers=bearer(viewer)) as ws:
        refused = await subscribe(ws, "audit")
        assert refused["error"]["code"] == "forbidden"
        assert (await subscribe(ws, "fleet"))["data"]["snapshot"] is True


async def test_bad_frames_get_error_frames(socket: Any) -> None:
    await socket.send("not json")
    assert (await recv(socket))["error"]["code"] == "validation_error"
    await socket.send_json({"op": "dance", "topic": "fleet"})
    assert "unknown op" in (await recv(socket))["error"]["message"]
    unknown = await subscribe(socket, "weather")
    assert unknown["error"]["code"] == "validation_error"
    missing = await subscribe(socket, "node:00000000-0000-0000-0000-000000000000")
    assert missing["error"]["code"] == "not_found"
    # The connection still works after errors.
    assert (await subscribe(socket, "fleet"))["data"]["snapshot"] is True


async def test_unsubscribe_stops_the_frames(socket: Any, master: Master, hub: LiveHub) -> None:
    node_id = await online_node(master)
    await subscribe(socket, f"node:{node_id}")
    await asyncio.sleep(0.05)  # the watch is applied in the background
    assert master.fleet.nodes[node_id].watchers == 1  # watched nodes report every second
    await socket.send_json({"op": "unsubscribe", "topic": f"node:{node_id}"})
    await subscribe(socket, "fleet")  # a round trip: the unsubscribe was handled
    assert f"node:{node_id}" not in hub.topics
    await asyncio.sleep(0.05)
    assert master.fleet.nodes[node_id].watchers == 0
    master.fleet.heartbeat(node_id, [sample(time.time() + 5)], [])
    hub.tick()
    with pytest.raises(TimeoutError):
        await recv(socket, f"node:{node_id}", timeout=0.3)


async def test_logout_closes_the_socket(
    app: Quart, hub: LiveHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "REAUTH_INTERVAL", 0.05)
    client = app.test_client()
    await client.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    async with client.websocket(LIVE, headers={"Origin": "http://localhost"}) as ws:
        await subscribe(ws, "fleet")
        (live_client,) = hub.clients
        csrf = next(c.value for c in client.cookie_jar or () if c.name == "gdos_csrf")
        response = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
        assert response.status_code == 204
        if WebsocketDisconnectError is not None:
            with pytest.raises(WebsocketDisconnectError) as closed:
                while True:
                    await asyncio.wait_for(ws.receive(), 5)
            assert closed.value.args[0] == live.CLOSE_AUTH
        for _ in range(100):  # the server side: closed with the auth code, unsubscribed
            if live_client.closing.is_set() and live_client not in hub.clients:
                break
            await asyncio.sleep(0.05)
        assert live_client.closing.is_set() and live_client.close_code == live.CLOSE_AUTH
        assert live_client not in hub.clients


async def test_a_slow_client_is_dropped_without_blocking(
    hub: LiveHub, master: Master, admin: AsyncClient
) -> None:
    principal = Principal(kind="token", role=Role.ADMIN, user_id="u", username="admin")
    slow = LiveClient(principal, queue_size=2)
    fast = LiveClient(principal)
    for client in (slow, fast):
        hub.subscribe(client, "nodes")
    for i in range(4):  # the slow one never reads; each new node is a frame
        await admin.plan_node(f"host-{i}")
        hub.tick()
    assert slow.closing.is_set() and slow.close_code == live.CLOSE_SLOW
    assert slow not in hub.clients and slow not in hub.topics["nodes"].subscribers
    assert fast.queue.qsize() == 5 and not fast.closing.is_set()


async def test_alerts_topic_pushes_counts_and_changes(
    app: Quart, socket: Any, admin_token: str, master: Master
) -> None:
    node_id = await online_node(master)
    first = await subscribe(socket, "alerts")
    assert first["data"] == {"snapshot": True, "firing": 0, "pending": 0}

    client = app.test_client()
    rule = {
        "name": "memory used",
        "metric": "mem_percent",
        "op": ">",
        "threshold": 10,
        "target": {"kind": "nodes"},
        "severity": "critical",
    }
    created = await client.post("/api/v1/alerts/rules", json=rule, headers=bearer(admin_token))
    assert created.status_code == 201
    rule_id = (await created.get_json())["id"]

    # One evaluation fires it: the frame comes without waiting for a hub tick.
    master.alerts.evaluate()
    fired = (await recv(socket, "alerts"))["data"]
    assert fired["firing"] == 1 and fired["pending"] == 0
    (change,) = fired["changes"]
    assert change["change"] == "firing"
    alert = change["alert"]
    assert alert["rule_id"] == rule_id and alert["target"] == f"node:{node_id}"
    assert alert["state"] == "firing" and alert["value"] == 25.0
    assert alert["severity"] == "critical" and alert["event_id"] is not None

    # A late subscriber's snapshot holds the count.
    async with client.websocket(LIVE, headers=bearer(admin_token)) as late:
        assert (await subscribe(late, "alerts"))["data"]["firing"] == 1

    # Deleting the rule resolves the alert on the page too.
    deleted = await client.delete(f"/api/v1/alerts/rules/{rule_id}", headers=bearer(admin_token))
    assert deleted.status_code == 204
    resolved = (await recv(socket, "alerts"))["data"]
    assert resolved["firing"] == 0
    assert [c["change"] for c in resolved["changes"]] == ["resolved"]
    assert resolved["changes"][0]["alert"]["event_id"] == alert["event_id"]


async def test_alerts_topic_asks_for_a_reload_after_a_large_batch(
    master: Master, hub: LiveHub
) -> None:
    topic = live.AlertsTopic("alerts", master)
    assert topic.poll(live.View(hub)) == {"firing": 0, "pending": 0}
    assert topic.poll(live.View(hub)) is None  # nothing moved
    for i in range(live.AlertsTopic.MAX_CHANGES + 1):
        topic.add("cancelled", {"rule_id": "r", "target": f"node:{i}"})
    assert topic.poll(live.View(hub)) == {"firing": 0, "pending": 0, "reload": True}
