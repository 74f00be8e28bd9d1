"""Finding #9: the join token no longer takes over a planned node.

The evidence of the review: after ``POST /nodes {"hostname": "db-prod-01"}``, a
rogue worker that said hello with that hostname (and only the join token) got
the planned node's id and ``approved: true``, and the instances queued for the
node, with their env, would have gone to it. Now a planned node is claimed only
with its own one-time claim token (returned once, when it is planned), or by a
pending node an admin approves. The agents here are hand-made: a WebSocket to
the real agent endpoint that says hello and reads what the master sends.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from quart import Quart
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError

from gdos_master.app import Master
from gdos_sdk.client import AsyncClient
from gdos_sdk.errors import ConflictError
from gdos_sdk.models import Fingerprint, NodeStatus
from gdos_sdk.protocol import PROTOCOL_VERSION, Heartbeat, Hello, Welcome, decode, encode

pytestmark = pytest.mark.anyio

AGENT = "/api/v1/agent/ws"
JOIN = "join-token-for-tests"


def hello(hostname: str, node_id: str | None = None, addresses: list[str] | None = None) -> str:
    return encode(
        Hello(
            protocol=PROTOCOL_VERSION,
            node_id=node_id or str(uuid.uuid4()),
            hostname=hostname,
            agent_version="rogue",
            fingerprint=Fingerprint("Linux", "12", "6", "x86_64", "cpu", 1, 1, 1),
            addresses=addresses or [],
        )
    )


async def say_hello(
    app: Quart, token: str, text: str, *, confirm: bool = False
) -> tuple[Any, list[dict[str, Any]]]:
    """Connect as a worker with ``token``, send ``text``; return the welcome (or error)
    and every frame the master sent within a short while after it. ``confirm``: answer a
    welcome with a heartbeat, as a worker does (which confirms its join)."""
    frames: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with app.test_client().websocket(AGENT, headers=headers) as ws:
        await ws.send(text)
        first = decode(await ws.receive())
        if confirm and isinstance(first, Welcome):
            await ws.send(encode(Heartbeat(ts=time.time())))
        try:
            while True:
                frames.append(json.loads(await asyncio.wait_for(ws.receive(), 0.5)))
        except (TimeoutError, WebsocketDisconnectError):
            pass
    return first, frames


async def planned_with_queued_instance(admin: AsyncClient, make_zip: Any) -> tuple[str, str, str]:
    """A planned node db-prod-01 with a module instance queued for it; (node, token, instance)."""
    node = await admin.plan_node("db-prod-01", addresses=["10.9.9.9"], alias="primary")
    assert node.claim_token is not None and node.claim_token.startswith("gdosp_")
    await admin.upload_package(make_zip())
    system = await admin.create_system("db")
    module = await admin.create_module(
        system.id, "pg", "demo", "1.0.0", env={"DB_PASSWORD": "queued-secret"}
    )
    instance = await admin.deploy(module.id, node.id, wait="started")
    return node.id, node.claim_token, instance.id


async def test_the_hostname_and_the_join_token_do_not_claim_a_planned_node(
    admin: AsyncClient, app: Quart, master: Master, make_zip: Any
) -> None:
    planned, _, instance = await planned_with_queued_instance(admin, make_zip)
    for rogue in (hello("db-prod-01"), hello("other", addresses=["10.9.9.9"])):
        welcome, frames = await say_hello(app, JOIN, rogue)
        assert isinstance(welcome, Welcome)
        assert welcome.node_id != planned and welcome.approved is False
        # Nothing queued for the planned node reaches it, not even a command frame.
        assert frames == [] or all(f.get("type") != "request" for f in frames)
        assert "queued-secret" not in json.dumps(frames)
    node = await admin.get_node(planned)
    assert node.status == NodeStatus.PLANNED
    assert [i.node_id for i in await admin.list_instances()] == [planned]
    assert (await admin.get_instance(instance)).node_id == planned
    # The impostors wait for an admin, and say which node they would take over.
    pending = await admin.list_nodes(status="pending")
    assert len(pending) == 2 and {n.claims for n in pending} == {planned}


async def test_the_planned_node_id_alone_does_not_claim_it_either(
    admin: AsyncClient, app: Quart, make_zip: Any
) -> None:
    planned, _, _ = await planned_with_queued_instance(admin, make_zip)
    welcome, _ = await say_hello(app, JOIN, hello("db-prod-01", node_id=planned))
    assert not isinstance(welcome, Welcome)
    assert "claim token" in welcome.message
    assert (await admin.get_node(planned)).status == NodeStatus.PLANNED


async def test_the_claim_token_claims_it_once(
    admin: AsyncClient, app: Quart, master: Master, make_zip: Any
) -> None:
    planned, token, instance = await planned_with_queued_instance(admin, make_zip)
    welcome, _ = await say_hello(app, token, hello("any-name"), confirm=True)
    assert isinstance(welcome, Welcome)
    assert welcome.node_id == planned and welcome.approved is True
    assert welcome.credential is not None and welcome.credential.startswith("gdosn_")
    node = await admin.get_node(planned)
    assert node.status != NodeStatus.PLANNED and node.alias == "primary"
    assert node.claim_token is None  # never shown again
    # Used once: the token is spent.
    with pytest.raises(WebsocketResponseError) as refused:
        await say_hello(app, token, hello("again"))
    assert refused.value.response.status_code == 401
    audit = (await admin.list_audit(action="node.join")).items
    assert audit[0].params["via"] == "claim token"
    assert (await admin.get_instance(instance)).node_id == planned


async def test_a_claim_whose_welcome_was_lost_is_made_again_until_confirmed(
    admin: AsyncClient, app: Quart, make_zip: Any
) -> None:
    planned, token, instance = await planned_with_queued_instance(admin, make_zip)
    # The worker never answered its welcome (it gave up waiting, or the welcome was lost):
    # the token takes the node again, with a new credential; the first one is void.
    lost, _ = await say_hello(app, token, hello("db-prod-01"))
    again, _ = await say_hello(app, token, hello("db-prod-01"), confirm=True)
    assert isinstance(lost, Welcome) and isinstance(again, Welcome)
    assert lost.node_id == again.node_id == planned
    assert again.credential is not None and again.credential != lost.credential
    assert lost.credential is not None
    with pytest.raises(WebsocketResponseError):
        await say_hello(app, lost.credential, hello("db-prod-01", node_id=planned))
    # Confirmed by the worker's first frame: now the token is spent.
    with pytest.raises(WebsocketResponseError) as refused:
        await say_hello(app, token, hello("db-prod-01"))
    assert refused.value.response.status_code == 401
    assert (await admin.get_instance(instance)).node_id == planned


async def test_approving_the_matching_worker_hands_it_the_planned_node(
    admin: AsyncClient, app: Quart, master: Master, make_zip: Any
) -> None:
    planned, _, instance = await planned_with_queued_instance(admin, make_zip)
    welcome, _ = await say_hello(app, JOIN, hello("db-prod-01"))
    assert isinstance(welcome, Welcome) and not welcome.approved
    # The console's node table (the live "nodes" topic) says which node it would take over.
    rows = app.extensions["gdos_live"].node_cache
    rows.refresh()
    assert rows.rows[welcome.node_id]["claims"] == planned
    approved = await admin.approve_node(welcome.node_id)
    assert approved.alias == "primary" and approved.claims is None
    rows.refresh()
    assert rows.rows[welcome.node_id]["claims"] is None
    assert (await admin.get_instance(instance)).node_id == welcome.node_id
    assert [n.id for n in await admin.list_nodes()] == [welcome.node_id]


async def test_a_lost_claim_token_is_replaced_by_an_admin(
    admin: AsyncClient, app: Quart, make_zip: Any
) -> None:
    planned, old, _ = await planned_with_queued_instance(admin, make_zip)
    renewed = await admin.new_claim_token(planned)
    assert renewed.claim_token is not None and renewed.claim_token != old
    with pytest.raises(WebsocketResponseError):
        await say_hello(app, old, hello("db-prod-01"))
    welcome, _ = await say_hello(app, renewed.claim_token, hello("db-prod-01"))
    assert isinstance(welcome, Welcome) and welcome.node_id == planned
    with pytest.raises(ConflictError):  # joined now: no claim token any more
        await admin.new_claim_token(planned)
