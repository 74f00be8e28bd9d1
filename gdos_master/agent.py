"""The master's end of the agent channel (``/api/v1/agent/ws``).

The handshake is authenticated before the socket is accepted: a node
credential, or the cluster join token together with ``X-GDOS-Node-Id``.
After ``hello`` / ``welcome`` the receive loop only updates memory
(heartbeats), records state changes, and completes pending requests; the
reconciliation runs as its own task so a slow worker answer never stalls
heartbeat processing.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Any, cast

from quart import Quart, websocket

from gdos_master.audit import record_audit
from gdos_master.auth import NODE_PREFIX, authenticate_websocket
from gdos_master.fleet import AgentConnection
from gdos_master.routing import error_response
from gdos_sdk.errors import AuthError, GdosError, ProtocolError
from gdos_sdk.logformat import set_log_context
from gdos_sdk.protocol import (
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
        try:
            if token.startswith(NODE_PREFIX):
                node_id = authenticate_websocket(master).node_id
            elif token and hmac.compare_digest(token, master.join_token):
                via_join = True
            else:
                raise AuthError("agent channel needs a node credential or the join token")
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
            hello = await _receive_hello(ws)
            node_id, credential = master.nodes.join(hello, via_join_token=via_join, node_id=node_id)
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
                ip=websocket.remote_addr or "",
                action="node.join",
                target=f"node:{node_id}",
                params={"hostname": hello.hostname, "approved": approved},
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
        conn = AgentConnection(node_id, send, close)
        await master.fleet.connect(conn, approved=approved)
        log.info("node %s (%s) connected", node_id, hello.hostname)
        if approved:
            master.spawn_reconcile(node_id, hello.instances)
        try:
            await _receive_loop(master, conn, ws)
        finally:
            await master.fleet.disconnect(conn)
            master.nodes.flush_last_seen_one(node_id)
            log.info("node %s disconnected", node_id)
        return None


async def _receive_hello(ws: Any) -> Hello:
    try:
        text = await asyncio.wait_for(ws.receive(), HELLO_TIMEOUT)
    except TimeoutError:
        raise ProtocolError("no hello within 10 s") from None
    message = decode(text)
    if not isinstance(message, Hello):
        raise ProtocolError(f"expected hello, got {message.type}")
    if message.protocol != PROTOCOL_VERSION:
        raise ProtocolError(
            f"worker speaks agent protocol {message.protocol}, this master speaks"
            f" {PROTOCOL_VERSION}; upgrade the older side"
        )
    return message


async def _receive_loop(master: Any, conn: AgentConnection, ws: Any) -> None:
    while True:
        text = await ws.receive()
        try:
            message = decode(text)
        except ProtocolError as exc:
            log.warning("node %s sent a bad frame: %s", conn.node_id, exc.message)
            continue
        if isinstance(message, Heartbeat):
            master.fleet.heartbeat(conn.node_id, message.node_samples, message.instance_samples)
        elif isinstance(message, InstanceEvent):
            master.orchestrator.apply_status(conn.node_id, message.status)
        elif isinstance(message, Response):
            conn.resolve(message)
        elif isinstance(message, CommandOutput):
            master.commands.output(conn.node_id, message)
        elif isinstance(message, ErrorMessage):
            log.warning("node %s reported: %s", conn.node_id, message.message)
