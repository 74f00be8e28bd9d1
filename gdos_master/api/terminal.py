"""Web terminal sessions and their recordings (admins only).

The terminal itself is a WebSocket (``/api/v1/terminal/<node id>``, see
:mod:`gdos_master.terminal_ws`); these routes list sessions, serve their
asciicast v2 recordings and end a live session.
"""

from __future__ import annotations

from quart import Response

from gdos_master.api import api
from gdos_master.routing import PAGE, Ctx, QueryParam
from gdos_sdk.errors import ConflictError, StorageError
from gdos_sdk.models import Page, Role
from gdos_sdk.terminal import TerminalSession

T = "terminal"


@api.route(
    "/terminal/sessions",
    "GET",
    summary="Terminal sessions, newest first",
    tag=T,
    role=Role.ADMIN,
    response=Page[TerminalSession],
    query=(
        QueryParam("node_id", str, "only this node's sessions"),
        QueryParam("live", bool, "only sessions that have not ended", default=False),
        *PAGE,
    ),
)
async def list_terminal_sessions(ctx: Ctx) -> Page[TerminalSession]:
    return ctx.master.terminals.list_sessions(**ctx.query)  # type: ignore[no-any-return]


@api.route(
    "/terminal/sessions/<session_id>",
    "GET",
    summary="One terminal session",
    tag=T,
    role=Role.ADMIN,
    response=TerminalSession,
)
async def get_terminal_session(ctx: Ctx, session_id: str) -> TerminalSession:
    return ctx.master.terminals.get(session_id)  # type: ignore[no-any-return]


@api.route(
    "/terminal/sessions/<session_id>/recording",
    "GET",
    summary="The session's recording (asciicast v2; what was relayed so far while live)",
    tag=T,
    role=Role.ADMIN,
    raw_response="application/x-asciicast",
    raises=(StorageError,),
)
async def get_terminal_recording(ctx: Ctx, session_id: str) -> Response:
    body = await ctx.master.terminals.recording(session_id)
    response = Response(body, content_type="application/x-asciicast")
    response.headers["Content-Disposition"] = f'attachment; filename="{session_id}.cast"'
    return response


@api.route(
    "/terminal/sessions/<session_id>",
    "DELETE",
    summary="End a live terminal session",
    tag=T,
    role=Role.ADMIN,
    status=204,
    audit="terminal.close",
    target="terminal:{session_id}",
    raises=(ConflictError,),
)
async def close_terminal_session(ctx: Ctx, session_id: str) -> None:
    await ctx.master.terminals.close_session(session_id)
