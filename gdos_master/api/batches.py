"""Ordered batch actions on a system: start them, watch their progress."""

from __future__ import annotations

from gdos_master.api import api
from gdos_master.routing import Ctx, QueryParam
from gdos_sdk.batches import BatchJob, BatchRequest
from gdos_sdk.constraints import Check
from gdos_sdk.models import Role

T = "batches"


@api.route(
    "/systems/<system_id>/batches",
    "POST",
    summary="Start or stop a system tier by tier (start_order); progress on live topic batch:<id>",
    tag=T,
    role=Role.OPERATOR,
    body=BatchRequest,
    response=BatchJob,
    status=201,
    audit="system.batch",
    target="system:{system_id}",
)
async def create_batch(ctx: Ctx, system_id: str, body: BatchRequest) -> BatchJob:
    job: BatchJob = ctx.master.batches.start(system_id, body, ctx.actor, ctx.ip)
    ctx.audit_params["batch"] = job.id
    return job


@api.route(
    "/systems/<system_id>/batches",
    "GET",
    summary="Recent batch actions of a system, newest first",
    tag=T,
    role=Role.VIEWER,
    response=list[BatchJob],
)
async def list_batches(ctx: Ctx, system_id: str) -> list[BatchJob]:
    ctx.master.systems.get_system(system_id)
    return list(ctx.master.batches.list_jobs(system_id))


@api.route(
    "/batches/<batch_id>",
    "GET",
    summary="A batch action and its progress; wait=N waits up to N s for its end",
    tag=T,
    role=Role.VIEWER,
    response=BatchJob,
    query=(
        QueryParam(
            "wait",
            int,
            "seconds to wait for the batch to end",
            default=0,
            check=Check(minimum=0, maximum=600),
        ),
    ),
)
async def get_batch(ctx: Ctx, batch_id: str) -> BatchJob:
    job: BatchJob = await ctx.master.batches.wait(batch_id, float(ctx.query["wait"]))
    return job
