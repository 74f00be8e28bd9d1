"""An instance's log files: list, tail and follow, search, download (operators and admins).

Operators may read logs because they run and restart the services that write
them; viewers may not, since logs often carry customer data. Paths other
than the instance's own log files are refused (403) and audited.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from quart import Response, request

from gdos_master.api import api
from gdos_master.logview import parse_cursor
from gdos_master.routing import Ctx, QueryParam, query_int
from gdos_sdk.errors import PermissionDenied, ValidationError
from gdos_sdk.logfiles import LogChunk, LogFile, LogSearch
from gdos_sdk.models import Role

LOG_RULE = (
    "console output and the log_paths of the package or adoption only (outside the package:"
    " set by an admin)"
)

T = "logs"
R = TypeVar("R")

_FILE = QueryParam("file", str, "a name GET /instances/{id}/logs listed", required=True)


def _file() -> str:
    name = request.args.get("file", "")
    if not name:
        raise ValidationError(
            "query parameter 'file' is required",
            details=[{"path": "query.file", "message": "missing"}],
        )
    return name


async def _guarded(ctx: Ctx, instance_id: str, file: str, call: Awaitable[R]) -> R:
    try:
        return await call
    except PermissionDenied as exc:
        ctx.master.logs.refused(ctx.principal, ctx.ip, instance_id, file, exc)
        raise


@api.route(
    "/instances/<instance_id>/logs",
    "GET",
    summary="List an instance's log files (console output and the manifest's log_paths)",
    tag=T,
    role=Role.OPERATOR,
    rule=LOG_RULE,
    response=list[LogFile],
)
async def list_log_files(ctx: Ctx, instance_id: str) -> list[LogFile]:
    files: list[LogFile] = await ctx.master.logs.list_files(instance_id)
    return files


@api.route(
    "/instances/<instance_id>/logs/read",
    "GET",
    summary="Tail a log file (last N lines), or follow it from a cursor (long poll)",
    tag=T,
    role=Role.OPERATOR,
    rule=LOG_RULE,
    response=LogChunk,
    query=(
        _FILE,
        QueryParam("lines", int, "lines to tail when no cursor is given (0-10000, default 100)"),
        QueryParam("cursor", str, "dev:ino:offset from a previous read: continue from there"),
        QueryParam("wait", int, "with a cursor: seconds to wait for new lines (0-25)"),
    ),
)
async def read_log(ctx: Ctx, instance_id: str) -> LogChunk:
    file = _file()
    lines = query_int("lines", 100, minimum=0, maximum=10000)
    wait = query_int("wait", 0, minimum=0, maximum=25)
    cursor = parse_cursor(request.args.get("cursor"))
    call = ctx.master.logs.read(instance_id, file, lines=lines, cursor=cursor, wait=float(wait))
    return await _guarded(ctx, instance_id, file, call)


@api.route(
    "/instances/<instance_id>/logs/search",
    "GET",
    summary="The last lines of a log file that contain a text (any case)",
    tag=T,
    role=Role.OPERATOR,
    rule=LOG_RULE,
    response=LogSearch,
    query=(
        _FILE,
        QueryParam("q", str, "text to look for", required=True),
        QueryParam("limit", int, "most matches returned (1-5000, default 500)"),
    ),
)
async def search_log(ctx: Ctx, instance_id: str) -> LogSearch:
    file = _file()
    query = request.args.get("q", "")
    if not query:
        raise ValidationError(
            "query parameter 'q' is required", details=[{"path": "query.q", "message": "missing"}]
        )
    limit = query_int("limit", 500, minimum=1, maximum=5000)
    call = ctx.master.logs.search(instance_id, file, query, limit)
    return await _guarded(ctx, instance_id, file, call)


@api.route(
    "/instances/<instance_id>/logs/download",
    "GET",
    summary="Download a whole log file",
    tag=T,
    role=Role.OPERATOR,
    rule=LOG_RULE,
    query=(_FILE,),
    raw_response="text/plain",
)
async def download_log(ctx: Ctx, instance_id: str) -> Response:
    file = _file()
    chunks = await _guarded(ctx, instance_id, file, ctx.master.logs.download(instance_id, file))
    filename = file.replace("\\", "/").rsplit("/", 1)[-1].replace('"', "") or "log.txt"
    return Response(
        chunks,
        content_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
