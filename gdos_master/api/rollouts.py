"""Rollouts: move a module's instances to another version, watch and steer the job."""

from __future__ import annotations

from gdos_master.api import api
from gdos_master.routing import Ctx, QueryParam
from gdos_sdk.constraints import Check
from gdos_sdk.errors import ConflictError, PermissionDenied
from gdos_sdk.models import Role
from gdos_sdk.rollouts import RollbackRequest, Rollout, RolloutRequest

T = "rollouts"
_PRIVILEGED = (
    "below admin, the target version must not need admin-only settings (as for a module's"
    " own settings)"
)


@api.route(
    "/modules/<module_id>/rollouts",
    "POST",
    summary="Move every instance of a module to another version, a few at a time (a rollout);"
    " progress on live topic rollout:<id>",
    tag=T,
    role=Role.OPERATOR,
    body=RolloutRequest,
    response=Rollout,
    status=201,
    audit="module.rollout",
    target="module:{module_id}",
    rule=_PRIVILEGED,
    raises=(ConflictError, PermissionDenied),
)
async def create_rollout(ctx: Ctx, module_id: str, body: RolloutRequest) -> Rollout:
    rollout: Rollout = ctx.master.rollouts.start(module_id, body, ctx.actor, ctx.ip)
    ctx.audit_params["rollout"] = rollout.id
    return rollout


@api.route(
    "/modules/<module_id>/rollback",
    "POST",
    summary="Move a module back to the version it had before (or to a stored version): a"
    " rollout like any other",
    tag=T,
    role=Role.OPERATOR,
    body=RollbackRequest,
    response=Rollout,
    status=201,
    audit="module.rollback",
    target="module:{module_id}",
    rule=_PRIVILEGED,
    raises=(ConflictError, PermissionDenied),
)
async def rollback_module(ctx: Ctx, module_id: str, body: RollbackRequest) -> Rollout:
    rollout: Rollout = ctx.master.rollouts.rollback(module_id, body, ctx.actor, ctx.ip)
    ctx.audit_params.update(rollout=rollout.id, version=rollout.to_version)
    return rollout


@api.route(
    "/rollouts",
    "GET",
    summary="Rollouts, newest first (a module's history with module_id)",
    tag=T,
    role=Role.VIEWER,
    response=list[Rollout],
    query=(
        QueryParam("module_id", str, "only this module's"),
        QueryParam("system_id", str, "only this system's modules'"),
    ),
)
async def list_rollouts(ctx: Ctx) -> list[Rollout]:
    return list(ctx.master.rollouts.list_rollouts(**ctx.query))


@api.route(
    "/rollouts/<rollout_id>",
    "GET",
    summary="A rollout and its progress; wait=N waits up to N s for its end, or with after=R"
    " for a revision newer than R",
    tag=T,
    role=Role.VIEWER,
    response=Rollout,
    query=(
        QueryParam(
            "wait",
            int,
            "seconds to wait for a change",
            default=0,
            check=Check(minimum=0, maximum=600),
        ),
        QueryParam(
            "after",
            int,
            "answer once the rollout's revision is past this (default: once it ended)",
            check=Check(minimum=0),
        ),
    ),
)
async def get_rollout(ctx: Ctx, rollout_id: str) -> Rollout:
    rollout: Rollout = await ctx.master.rollouts.wait(
        rollout_id, float(ctx.query["wait"]), ctx.query["after"]
    )
    return rollout


@api.route(
    "/rollouts/<rollout_id>/pause",
    "POST",
    summary="Pause a rollout: no further instance begins (those under way finish)",
    tag=T,
    role=Role.OPERATOR,
    response=Rollout,
    audit="rollout.pause",
    target="rollout:{rollout_id}",
    raises=(ConflictError,),
)
async def pause_rollout(ctx: Ctx, rollout_id: str) -> Rollout:
    rollout: Rollout = ctx.master.rollouts.pause(rollout_id)
    return rollout


@api.route(
    "/rollouts/<rollout_id>/resume",
    "POST",
    summary="Resume a paused rollout",
    tag=T,
    role=Role.OPERATOR,
    response=Rollout,
    audit="rollout.resume",
    target="rollout:{rollout_id}",
    raises=(ConflictError,),
)
async def resume_rollout(ctx: Ctx, rollout_id: str) -> Rollout:
    rollout: Rollout = ctx.master.rollouts.resume(rollout_id)
    return rollout


@api.route(
    "/rollouts/<rollout_id>/promote",
    "POST",
    summary="Go on past the canaries of a rollout awaiting promotion",
    tag=T,
    role=Role.OPERATOR,
    response=Rollout,
    audit="rollout.promote",
    target="rollout:{rollout_id}",
    raises=(ConflictError,),
)
async def promote_rollout(ctx: Ctx, rollout_id: str) -> Rollout:
    rollout: Rollout = ctx.master.rollouts.promote(rollout_id)
    return rollout


@api.route(
    "/rollouts/<rollout_id>/abort",
    "POST",
    summary="Stop a rollout; revert=true moves the instances it moved back (default: its"
    " auto_revert)",
    tag=T,
    role=Role.OPERATOR,
    response=Rollout,
    audit="rollout.abort",
    target="rollout:{rollout_id}",
    query=(QueryParam("revert", bool, "move what it moved back (default: auto_revert)"),),
    raises=(ConflictError,),
)
async def abort_rollout(ctx: Ctx, rollout_id: str) -> Rollout:
    rollout: Rollout = ctx.master.rollouts.abort(rollout_id, ctx.actor, ctx.query["revert"])
    return rollout
