"""Fleet commands: run shell text on chosen nodes (admins only)."""

from __future__ import annotations

from gdos_master.api import api
from gdos_master.commands import redact_command
from gdos_master.routing import Ctx, QueryParam
from gdos_sdk.codec import unstructure
from gdos_sdk.commands import CommandRequest, CommandRun
from gdos_sdk.constraints import Check
from gdos_sdk.errors import NotFoundError
from gdos_sdk.models import Role

T = "commands"


@api.route(
    "/commands",
    "POST",
    summary="Run a command on nodes; output streams on the live topic command:<id>",
    tag=T,
    role=Role.ADMIN,
    body=CommandRequest,
    response=CommandRun,
    status=201,
    audit="command.run",
    raises=(NotFoundError,),
)
async def run_command(ctx: Ctx, body: CommandRequest) -> CommandRun:
    # The audit keeps the command text with secret-looking values masked.
    ctx.audit_params["body"] = {
        **unstructure(body),
        "command": redact_command(body.command),
    }
    run: CommandRun = ctx.master.commands.start(body, ctx.actor, ctx.ip)
    ctx.target = f"command:{run.id}"
    return run


@api.route(
    "/commands",
    "GET",
    summary="Recent command runs, newest first (without output)",
    tag=T,
    role=Role.ADMIN,
    response=list[CommandRun],
)
async def list_commands(ctx: Ctx) -> list[CommandRun]:
    return list(ctx.master.commands.list_runs())


@api.route(
    "/commands/<run_id>",
    "GET",
    summary="A command run with every node's output; wait=N waits up to N s for the end",
    tag=T,
    role=Role.ADMIN,
    response=CommandRun,
    query=(
        QueryParam(
            "wait",
            int,
            "seconds to wait for the run to finish",
            default=0,
            check=Check(minimum=0, maximum=60),
        ),
    ),
)
async def get_command(ctx: Ctx, run_id: str) -> CommandRun:
    run: CommandRun = await ctx.master.commands.wait(run_id, float(ctx.query["wait"]))
    return run
