"""The two terminal sockets: the browser's and the worker's stream.

``/api/v1/terminal/<node id>?rows=24&cols=80`` (admins only; browsers by
session cookie with a matching ``Origin``, scripts by ``Authorization: Bearer``)
opens a session, or with ``?session=<id>`` reattaches to one. Refusals are
HTTP statuses before the socket is accepted (401 without credentials, 403 for
a viewer or operator, 404 unknown node, 409 session cap, 503 node offline or, for a
node on another master, no ``server.public_url`` here; 502 when the worker refused or
failed to open),
audited as ``terminal.open`` with the refused caller when they were known.
``/api/v1/agent/terminal/<session id>`` is the worker's dial-back, with its
node credential and the session's one-time token. Frames are described in
:mod:`gdos_sdk.terminal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any, cast

from quart import Quart, websocket

from gdos_master.audit import record_audit
from gdos_master.auth import Principal, authenticate_headers, authenticate_websocket
from gdos_master.live import _check_origin
from gdos_master.routing import check_password_fresh, error_response
from gdos_master.terminal import Browser, TerminalRelay
from gdos_sdk.errors import GdosError, PermissionDenied, ValidationError
from gdos_sdk.models import Role
from gdos_sdk.terminal import MAX_COLS, MAX_ROWS, TERMINAL_TOKEN_HEADER, parse_control

if TYPE_CHECKING:
    from gdos_master.app import Master

__all__ = ["register_terminal_sockets"]


def _size(name: str, default: int, maximum: int) -> int:
    raw = websocket.args.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"query parameter {name!r} must be an integer") from None
    if not 1 <= value <= maximum:
        raise ValidationError(f"query parameter {name!r} must be between 1 and {maximum}")
    return value


def _authorise_admin(principal: Principal) -> None:
    """Refuse anyone who may not hold a terminal (the caller audits the refusal)."""
    if principal.kind == "node":
        raise PermissionDenied("node credentials cannot open a terminal")
    if not principal.role.allows(Role.ADMIN):
        raise PermissionDenied(
            f"the web terminal needs the admin role; {principal.username} is {principal.role.value}"
        )
    check_password_fresh(principal)
    if principal.kind == "session":
        _check_origin()


def register_terminal_sockets(app: Quart) -> TerminalRelay:
    """Add both terminal sockets to ``app``; the relay's housekeeping runs while it serves."""
    master: Master = app.extensions["gdos"]
    relay = master.terminals

    @app.before_serving
    async def start_terminal_housekeeping() -> None:
        master.spawn(relay.run())

    @app.websocket("/api/v1/terminal/<node_id>")
    async def terminal_ws(node_id: str) -> Any:
        ip = master.proxies.client(
            websocket.remote_addr or "", websocket.headers.getlist("X-Forwarded-For")
        )
        principal: Principal | None = None
        headers, cookies = websocket.headers, websocket.cookies

        def reauth() -> Principal:
            return authenticate_headers(master.db, headers, cookies)

        try:
            principal = authenticate_websocket(master)
            _authorise_admin(principal)
            rows = _size("rows", 24, MAX_ROWS)
            cols = _size("cols", 80, MAX_COLS)
            session_id = websocket.args.get("session", "")
            if session_id:
                live = relay.sessions.get(session_id)
                if live is None or live.node_id != node_id:
                    relay.get(session_id)  # 404 for an unknown id
                    raise ValidationError(f"terminal session {session_id} has ended")
            else:
                opened = await relay.open(
                    node_id, principal, ip, rows=rows, cols=cols, reauth=reauth
                )
                session_id = opened.id
        except GdosError as exc:
            record_audit(
                master.db,
                principal=principal,
                ip=ip,
                action="terminal.open",
                target=f"node:{node_id}",
                params={"session_id": websocket.args.get("session", "")},
                status=exc.status,
                message=exc.message,
            )
            return error_response(exc)  # refused before accept(): an HTTP status
        await websocket.accept()
        ws = cast(Any, websocket)._get_current_object()
        browser = Browser(send_bytes=ws.send, send_text=ws.send, close=ws.close)
        try:
            session = await relay.attach(session_id, principal, browser, reauth=reauth)
            if (rows, cols) != (session.rows, session.cols) and websocket.args.get("session"):
                await relay.resize(session_id, rows, cols)
            await _serve_browser(relay, session_id, ws, browser, session.closed)
        except GdosError as exc:
            with contextlib.suppress(Exception):
                await ws.send(json.dumps({"op": "error", "message": exc.message}))
                await ws.close(4000 + min(exc.status, 999) % 1000, exc.message[:100])
        finally:
            relay.detach(session_id, browser)
        return None

    @app.websocket("/api/v1/agent/terminal/<session_id>")
    async def terminal_stream(session_id: str) -> Any:
        from gdos_master.app import current_master

        try:
            principal = authenticate_websocket(current_master())
            if principal.kind != "node":
                raise PermissionDenied("terminal streams are for workers (node credentials)")
            token = websocket.headers.get(TERMINAL_TOKEN_HEADER, "")
            relay.check_stream(session_id, principal.node_id, token)
        except GdosError as exc:
            return error_response(exc)
        await websocket.accept()
        ws = cast(Any, websocket)._get_current_object()
        await relay.serve_stream(session_id, ws.receive, ws.send, lambda: ws.close(1000))
        return None

    return relay


async def _serve_browser(
    relay: TerminalRelay, session_id: str, ws: Any, browser: Browser, closed: asyncio.Event
) -> None:
    async def receive() -> None:
        while True:
            frame = await ws.receive()
            if isinstance(frame, bytes):
                await relay.input(session_id, frame)
                continue
            try:
                message = parse_control(frame)
            except GdosError as exc:
                await browser.send(json.dumps({"op": "error", "message": exc.message}))
                continue
            op = message["op"]
            if op == "resize":
                await relay.resize(session_id, message["rows"], message["cols"])
            elif op == "input" and isinstance(message.get("data"), str):
                await relay.input(session_id, message["data"].encode())
            elif op == "close":
                await relay.end(session_id, "closed")
                return

    tasks = [asyncio.ensure_future(c) for c in (receive(), closed.wait(), browser.gone.wait())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
    # Ending (however it began): keep the socket until the browser was told why.
    await relay.ended(session_id)
