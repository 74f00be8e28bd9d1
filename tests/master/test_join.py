"""Joining with the join token: a lost welcome, and planned nodes found by index (issue 15).

A worker whose hello the master processed but whose welcome it never read (it gave up
waiting while the master was slow, or the connection broke) used to be locked out: its
node existed, so every later join-token hello was refused with "has already joined".
A join now stays open until the worker's first frame after the welcome confirms it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from quart import Quart
from quart.testing.connections import WebsocketResponseError

from gdos_master.app import Master
from gdos_sdk.client import AsyncClient
from gdos_sdk.models import Fingerprint, PlannedNodeCreate
from gdos_sdk.protocol import (
    PROTOCOL_VERSION,
    ErrorMessage,
    Heartbeat,
    Hello,
    Welcome,
    decode,
    encode,
)

pytestmark = pytest.mark.anyio

AGENT = "/api/v1/agent/ws"
JOIN = "join-token-for-tests"


def hello(node_id: str, hostname: str = "web-1", addresses: list[str] | None = None) -> Hello:
    return Hello(
        protocol=PROTOCOL_VERSION,
        node_id=node_id,
        hostname=hostname,
        agent_version="test",
        fingerprint=Fingerprint("Linux", "12", "6", "x86_64", "cpu", 1, 1, 1),
        addresses=addresses or [],
    )


async def join(app: Quart, token: str, message: Hello, *, confirm: bool) -> Any:
    """One agent connection: hello, the master's answer, and (``confirm``) a first
    heartbeat as a worker sends once it has its welcome."""
    headers = {"Authorization": f"Bearer {token}", "X-GDOS-Node-Id": message.node_id}
    async with app.test_client().websocket(AGENT, headers=headers) as ws:
        await ws.send(encode(message))
        answer = decode(await ws.receive())
        if confirm and isinstance(answer, Welcome):
            await ws.send(encode(Heartbeat(ts=time.time())))
            await ws.send(encode(Heartbeat(ts=time.time())))  # read after the first one
    return answer


async def test_a_worker_whose_welcome_was_lost_joins_again(app: Quart, master: Master) -> None:
    node_id = str(uuid.uuid4())
    lost = await join(app, JOIN, hello(node_id), confirm=False)
    assert isinstance(lost, Welcome) and lost.credential is not None
    again = await join(app, JOIN, hello(node_id), confirm=True)
    assert isinstance(again, Welcome) and again.node_id == node_id
    assert again.credential is not None and again.credential != lost.credential
    # Only the credential of the welcome the worker confirmed works.
    with pytest.raises(WebsocketResponseError):
        await join(app, lost.credential, hello(node_id), confirm=False)
    back = await join(app, again.credential, hello(node_id), confirm=False)
    assert isinstance(back, Welcome) and back.credential is None
    # Confirmed: the join token cannot take the node any more.
    refused = await join(app, JOIN, hello(node_id), confirm=False)
    assert isinstance(refused, ErrorMessage) and "already joined" in refused.message
    assert len(master.db.all("SELECT id FROM nodes")) == 1


async def test_connecting_with_the_credential_confirms_the_join(app: Quart) -> None:
    node_id = str(uuid.uuid4())
    welcome = await join(app, JOIN, hello(node_id), confirm=False)
    assert isinstance(welcome, Welcome) and welcome.credential is not None
    # The worker had its welcome but the channel broke before its first heartbeat.
    assert isinstance(await join(app, welcome.credential, hello(node_id), confirm=False), Welcome)
    refused = await join(app, JOIN, hello(node_id), confirm=False)
    assert isinstance(refused, ErrorMessage) and "already joined" in refused.message


async def test_no_rejoin_once_instances_were_placed_on_the_node(
    app: Quart, admin: AsyncClient, make_zip: Any
) -> None:
    node_id = str(uuid.uuid4())
    assert isinstance(await join(app, JOIN, hello(node_id), confirm=False), Welcome)
    await admin.upload_package(make_zip())
    system = await admin.create_system("s")
    module = await admin.create_module(system.id, "m", "demo", "1.0.0", env={"KEY": "secret"})
    await admin.deploy(module.id, node_id, wait="started")
    # Those instances (and their env) go only to the holder of the node's credential.
    refused = await join(app, JOIN, hello(node_id), confirm=False)
    assert isinstance(refused, ErrorMessage) and "instances were placed" in refused.message


# SQLite's EXPLAIN QUERY PLAN shows the index; on PostgreSQL the planner rightly scans a
# 52-row table, and test_database.py checks the index exists there too.
@pytest.mark.parametrize("db_engine", ["sqlite"])
async def test_planned_matches_read_only_planned_nodes(master: Master) -> None:
    nodes = master.nodes
    for i in range(50):
        node_id = str(uuid.uuid4())
        master.db.execute(
            "INSERT INTO nodes(id, hostname, addresses, created_at) VALUES(?,?,?,?)",
            (node_id, f"joined-{i}", f'["10.0.0.{i}"]', time.time()),
        )
    planned = nodes.plan(PlannedNodeCreate(hostname="db-1", addresses=["10.9.9.9"]))
    other = nodes.plan(PlannedNodeCreate(hostname="db-2", addresses=["10.9.9.8"]))
    read: list[str] = []
    master.db.conn.set_trace_callback(read.append)
    try:
        by_name = nodes._planned_match(hello(str(uuid.uuid4()), "db-1"))
        by_address = nodes._planned_match(hello(str(uuid.uuid4()), "x", ["10.9.9.8"]))
        none = nodes._planned_match(hello(str(uuid.uuid4()), "joined-3", ["10.0.0.3"]))
    finally:
        master.db.conn.set_trace_callback(None)
    assert by_name is not None and by_name["id"] == planned.id
    assert by_address is not None and by_address["id"] == other.id
    assert none is None  # joined nodes never match, whatever they are called
    # No statement read the whole table (a mass join would be quadratic).
    plans = {sql: [row[3] for row in master.db.all(f"EXPLAIN QUERY PLAN {sql}")] for sql in read}
    assert plans and all(not any(p.startswith("SCAN") for p in plan) for plan in plans.values())
    assert any("nodes_planned" in p for plan in plans.values() for p in plan), plans
