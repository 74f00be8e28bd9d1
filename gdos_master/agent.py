"""The master's end of the agent channel (``/api/v1/agent/ws``).

The handshake is authenticated before the socket is accepted: a node
credential, a planned node's one-time claim token, or the cluster join token
together with ``X-GDOS-Node-Id``.
After ``hello`` / ``welcome`` the receive loop only updates memory
(heartbeats), records state changes, and completes pending requests; the
reconciliation runs as its own task so a slow worker answer never stalls
heartbeat processing.

Limits (docs/security.md, "Nodes and the agent channel"): a frame over
:data:`~gdos_sdk.protocol.MAX_FRAME` closes the channel with code 1009 and a reason
naming the limit; a hello's fingerprint and address list are bounded; the frames of a
pending (not yet approved) node are not even parsed: they only keep it "seen".
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, cast

from quart import Quart, websocket

from gdos_master.audit import record_audit
from gdos_master.auth import NODE_PREFIX, authenticate_websocket
from gdos_master.fleet import AgentConnection
from gdos_master.ingest import parse_heartbeat
from gdos_master.nodes import CLAIM_PREFIX
from gdos_master.routing import error_response
from gdos_sdk.codec import unstructure
from gdos_sdk.errors import AuthError, GdosError, ProtocolError
from gdos_sdk.logformat import set_log_context
from gdos_sdk.protocol import (
    MAX_FRAME,
    MIN_PROTOCOL,
    PROTOCOL_VERSION,
    CommandOutput,
    ErrorMessage,
    Heartbeat,
    Hello,
    InstanceEvent,
    Response,
    Welcome,
    decode,
    encode,
)

__all__ = ["register_agent_socket"]

log = logging.getLogger("gdos.master.agent")

HELLO_TIMEOUT = 10.0
CLOSE_TOO_BIG = 1009  # RFC 6455: "message too big"
# A hello's parts that are stored with the node (its inventory is only compared, not kept).
MAX_FINGERPRINT = 64 * 1024  # characters of JSON; a real one is 1-3 KB
MAX_ADDRESSES = 256
MAX_HOSTNAME = 253


def _bearer() -> str:
    value = websocket.headers.get("Authorization", "")
    return value[7:].strip() if value[:7].lower() == "bearer " else ""


def register_agent_socket(app: Quart) -> None:
    """Add the agent WebSocket route to ``app``."""

    @app.websocket("/api/v1/agent/ws")
    async def agent_ws() -> Any:
        from gdos_master.app import current_master

        master = current_master()
        token = _bearer()
        via_join = False
        node_id = ""
        claim = ""
        try:
            if token.startswith(NODE_PREFIX):
                node_id = authenticate_websocket(master).node_id
            elif token.startswith(CLAIM_PREFIX):
                claim = master.nodes.claimed_by(token)
            elif master.join_token.matches(token):
                via_join = True
            else:
                raise AuthError(
                    "agent channel needs a node credential, a planned node's claim token or"
                    " the join token"
                )
        except GdosError as exc:
            # Refused before accept(): the worker sees an HTTP status, not a socket.
            return error_response(exc)
        await websocket.accept()
        ws = cast(Any, websocket)._get_current_object()
        send_lock = asyncio.Lock()

        async def send(text: str) -> None:
            async with send_lock:
                await ws.send(text)

        async def close() -> None:
            await ws.close(1000)

        try:
            hello, hello_size = await _receive_hello(ws)
            node_id, credential = master.nodes.join(
                hello, via_join_token=via_join, node_id=node_id, claim=claim
            )
        except GdosError as exc:
            await send(encode(ErrorMessage(code=exc.code, message=exc.message)))
            await ws.close(1008)
            return None
        set_log_context(node_id=node_id)  # this task is the node's connection from here on
        approved = master.nodes.is_approved(node_id)
        if credential is not None:
            record_audit(
                master.db,
                principal=None,
                ip=master.proxies.client(
                    websocket.remote_addr or "", websocket.headers.getlist("X-Forwarded-For")
                ),
                action="node.join",
                target=f"node:{node_id}",
                params={
                    "hostname": hello.hostname,
                    "approved": approved,
                    "via": "claim token" if claim else "join token",
                },
                status=200,
                actor_kind="node",
                actor=f"node:{node_id}",
            )
        await send(
            encode(
                Welcome(
                    node_id=node_id,
                    heartbeat_interval=master.fleet.initial_interval(node_id),
                    server_time=time.time(),
                    credential=credential,
                    approved=approved,
                )
            )
        )
        conn = AgentConnection(node_id, send, close, protocol=hello.protocol)
        await master.fleet.connect(conn, approved=approved)
        master.cluster.take_node(node_id)  # several masters: this one owns the node now
        log.info("node %s (%s) connected; hello of %d bytes", node_id, hello.hostname, hello_size)
        if approved:
            master.spawn_reconcile(node_id, hello.instances)
        try:
            await _receive_loop(master, conn, ws, joined=credential is not None)
        finally:
            await master.fleet.disconnect(conn)
            master.nodes.flush_last_seen_one(node_id)
            log.info("node %s disconnected", node_id)
        return None


def too_big(size: int) -> str:
    """The close reason for a frame of ``size`` characters (at most 123 bytes)."""
    return f"frame of {size} bytes is over the agent channel limit of {MAX_FRAME} bytes"


async def _receive_hello(ws: Any) -> tuple[Hello, int]:
    """The worker's hello and its size in bytes."""
    try:
        text = await asyncio.wait_for(ws.receive(), HELLO_TIMEOUT)
    except TimeoutError:
        raise ProtocolError("no hello within 10 s") from None
    if len(text) > MAX_FRAME:
        raise ProtocolError(too_big(len(text)))
    message = decode(text)
    if not isinstance(message, Hello):
        raise ProtocolError(f"expected hello, got {message.type}")
    if not MIN_PROTOCOL <= message.protocol <= PROTOCOL_VERSION:
        raise ProtocolError(
            f"worker speaks agent protocol {message.protocol}, this master speaks"
            f" {MIN_PROTOCOL} to {PROTOCOL_VERSION}; upgrade the older side"
        )
    _check_hello(message)
    return message, len(text)


def _check_hello(hello: Hello) -> None:
    """Refuse a hello whose stored parts are out of all proportion (a node record is kept)."""
    if len(hello.hostname) > MAX_HOSTNAME:
        raise ProtocolError(f"hostname is longer than {MAX_HOSTNAME} characters")
    if len(hello.addresses) > MAX_ADDRESSES:
        raise ProtocolError(f"hello lists more than {MAX_ADDRESSES} addresses")
    size = len(json.dumps(unstructure(hello.fingerprint)))
    if size > MAX_FINGERPRINT:
        raise ProtocolError(f"fingerprint of {size} bytes is over {MAX_FINGERPRINT} bytes")


async def _receive_loop(master: Any, conn: AgentConnection, ws: Any, *, joined: bool) -> None:
    """Read the worker's frames until the channel closes.

    ``joined``: this channel's hello joined the node (a new credential went out in the
    welcome). The worker's first frame shows the welcome arrived, which confirms the join
    (:meth:`~gdos_master.nodes.Nodes.confirm`).
    """
    fleet = master.fleet
    while True:
        text = await ws.receive()
        if joined:
            joined = False
            master.nodes.confirm(conn.node_id)
        size = len(text)
        fleet.frame(size)
        if size > MAX_FRAME:
            log.warning("node %s sent a frame of %d bytes; closing its channel", conn.node_id, size)
            await ws.close(CLOSE_TOO_BIG, too_big(size))
            return
        if not fleet.is_approved(conn.node_id):
            # A pending node is not read: its frames only show it is alive. (Approval
            # makes it reconnect, and its next hello is read in full.)
            fleet.touch(conn.node_id)
            continue
        # Heartbeats, the bulk of the traffic, go to the fleet as orjson's dicts (checked by
        # read_batch); anything else, or anything unusual, takes the general decoder.
        batch = parse_heartbeat(text)
        if batch is not None:
            fleet.ingest(conn.node_id, batch)
            continue
        try:
            message = decode(text)
        except ProtocolError as exc:
            log.warning("node %s sent a bad frame: %s", conn.node_id, exc.message)
            continue
        if isinstance(message, Heartbeat):
            master.fleet.heartbeat(conn.node_id, message.node_samples, message.instance_samples)
        elif isinstance(message, InstanceEvent):
            master.orchestrator.report(conn.node_id, message.status)
        elif isinstance(message, Response):
            conn.resolve(message)
        elif isinstance(message, CommandOutput):
            master.commands.output(conn.node_id, message)
        elif isinstance(message, ErrorMessage):
            log.warning("node %s reported: %s", conn.node_id, message.message)
