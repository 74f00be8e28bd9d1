"""An instance's log files: list, tail and follow, search, download (operators and admins).

Operators may read logs because they run and restart the services that write
them; viewers may not, since logs often carry customer data. Paths other
than the instance's own log files are refused (403) and audited.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from quart import Response

from gdos_master.api import api
from gdos_master.logview import parse_cursor
from gdos_master.routing import Ctx, QueryParam
from gdos_sdk.constraints import Check
from gdos_sdk.errors import PermissionDenied, RemoteError, TransportError
from gdos_sdk.logfiles import LogChunk, LogFile, LogSearch
from gdos_sdk.models import Role

LOG_RULE = (
    "console output and the log_paths of the package or adoption only (outside the package:"
    " set by an admin)"
)

T = "logs"
R = TypeVar("R")

_FILE = QueryParam("file", str, "a name GET /instances/{id}/logs listed", required=True)
#: The instance's worker reads the files.
_WORKER = (RemoteError, TransportError)


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
    raises=_WORKER,
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
        QueryParam(
            "lines",
            int,
            "lines to tail when no cursor is given",
            default=100,
            check=Check(minimum=0, maximum=10000),
        ),
        QueryParam(
            "cursor",
            str,
            "dev:ino:offset from a previous read: continue from there",
            check=Check(pattern=r"^[0-9]{1,20}:[0-9]{1,20}:[0-9]{1,20}$", hint="dev:ino:offset"),
        ),
        QueryParam(
            "wait",
            int,
            "with a cursor: seconds to wait for new lines",
            default=0,
            check=Check(minimum=0, maximum=25),
        ),
    ),
    raises=_WORKER,
)
async def read_log(ctx: Ctx, instance_id: str) -> LogChunk:
    file, query = ctx.query["file"], ctx.query
    cursor = parse_cursor(query["cursor"])
    call = ctx.master.logs.read(
        instance_id, file, lines=query["lines"], cursor=cursor, wait=float(query["wait"])
    )
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
        QueryParam(
            "limit",
            int,
            "most matches returned",
            default=500,
            check=Check(minimum=1, maximum=5000),
        ),
    ),
    raises=_WORKER,
)
async def search_log(ctx: Ctx, instance_id: str) -> LogSearch:
    file = ctx.query["file"]
    call = ctx.master.logs.search(instance_id, file, ctx.query["q"], ctx.query["limit"])
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
    raises=_WORKER,
)
async def download_log(ctx: Ctx, instance_id: str) -> Response:
    file = ctx.query["file"]
    chunks = await _guarded(ctx, instance_id, file, ctx.master.logs.download(instance_id, file))
    filename = file.replace("\\", "/").rsplit("/", 1)[-1].replace('"', "") or "log.txt"
    return Response(
        chunks,
        content_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
