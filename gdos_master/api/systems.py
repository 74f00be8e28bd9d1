"""Systems, modules, instances and batch actions."""

from __future__ import annotations

from typing import Literal

from gdos_master.api import api
from gdos_master.routing import Ctx, QueryParam
from gdos_master.security import redact
from gdos_sdk.batches import BatchRequest, BatchState
from gdos_sdk.codec import unstructure
from gdos_sdk.errors import ConflictError, NotFoundError, RemoteError, TransportError
from gdos_sdk.models import (
    DeployRequest,
    Instance,
    Module,
    ModuleCreate,
    ModulePatch,
    Role,
    System,
    SystemActionResult,
    SystemCreate,
    SystemPatch,
)
from gdos_sdk.states import InstanceState

S = "systems"
#: Errors of a call that goes to the instance's worker.
_WORKER = (RemoteError, TransportError)
_OFFLINE = {202: "the node is offline: the change is recorded and applied when it reconnects"}


@api.route(
    "/systems", "GET", summary="List systems", tag=S, role=Role.VIEWER, response=list[System]
)
async def list_systems(ctx: Ctx) -> list[System]:
    return list(ctx.master.systems.list_systems())


@api.route(
    "/systems",
    "POST",
    summary="Create a system",
    tag=S,
    role=Role.OPERATOR,
    body=SystemCreate,
    response=System,
    status=201,
    audit="system.create",
    raises=(ConflictError,),
)
async def create_system(ctx: Ctx, body: SystemCreate) -> System:
    system: System = ctx.master.systems.create_system(body)
    ctx.target = f"system:{system.id}"
    return system


@api.route(
    "/systems/<system_id>", "GET", summary="Get a system", tag=S, role=Role.VIEWER, response=System
)
async def get_system(ctx: Ctx, system_id: str) -> System:
    system: System = ctx.master.systems.get_system(system_id)
    return system


@api.route(
    "/systems/<system_id>",
    "PATCH",
    summary="Rename or describe a system",
    tag=S,
    role=Role.OPERATOR,
    body=SystemPatch,
    response=System,
    audit="system.update",
    target="system:{system_id}",
    raises=(ConflictError,),
)
async def patch_system(ctx: Ctx, system_id: str, body: SystemPatch) -> System:
    system: System = ctx.master.systems.patch_system(system_id, body)
    return system


@api.route(
    "/systems/<system_id>",
    "DELETE",
    summary="Delete a system without instances",
    tag=S,
    role=Role.OPERATOR,
    status=204,
    audit="system.delete",
    target="system:{system_id}",
    raises=(ConflictError,),
)
async def delete_system(ctx: Ctx, system_id: str) -> None:
    ctx.master.systems.delete_system(system_id)


async def _batch(
    ctx: Ctx, system_id: str, action: Literal["start", "stop"]
) -> list[SystemActionResult]:
    """Run an ordered batch with the defaults and wait for its end."""
    job = ctx.master.batches.start(system_id, BatchRequest(action=action), ctx.actor, ctx.ip)
    ctx.audit_params["batch"] = job.id
    job = await ctx.master.batches.wait(job.id, None)
    return [
        SystemActionResult(
            instance_id=i.instance_id,
            ok=i.state == BatchState.DONE,
            state=i.instance_state,
            error=i.error or None,
        )
        for i in job.items
    ]


@api.route(
    "/systems/<system_id>/start",
    "POST",
    summary="Start every instance of a system, tier by tier; answers when done",
    tag=S,
    role=Role.OPERATOR,
    response=list[SystemActionResult],
    audit="system.start",
    target="system:{system_id}",
)
async def start_system(ctx: Ctx, system_id: str) -> list[SystemActionResult]:
    return await _batch(ctx, system_id, "start")


@api.route(
    "/systems/<system_id>/stop",
    "POST",
    summary="Stop every instance of a system, tiers in reverse; answers when done",
    tag=S,
    role=Role.OPERATOR,
    response=list[SystemActionResult],
    audit="system.stop",
    target="system:{system_id}",
)
async def stop_system(ctx: Ctx, system_id: str) -> list[SystemActionResult]:
    return await _batch(ctx, system_id, "stop")


M = "modules"


@api.route(
    "/systems/<system_id>/modules",
    "GET",
    summary="Modules of a system",
    tag=M,
    role=Role.VIEWER,
    response=list[Module],
    rule="secret env values read as ***, for every role",
)
async def list_modules(ctx: Ctx, system_id: str) -> list[Module]:
    return list(ctx.master.systems.list_modules(system_id))


@api.route(
    "/systems/<system_id>/modules",
    "POST",
    summary="Add a module to a system (user, group, adoption commands, cmd health checks and"
    " log paths outside the package need an admin)",
    tag=M,
    role=Role.OPERATOR,
    body=ModuleCreate,
    response=Module,
    status=201,
    audit="module.create",
    target="system:{system_id}",
    rule="admin-only settings need admin: user, group, adoption commands and log_paths, cmd"
    " health checks, log paths outside the package (also from the package's manifest)",
    raises=(ConflictError,),
)
async def create_module(ctx: Ctx, system_id: str, body: ModuleCreate) -> Module:
    module: Module = ctx.master.systems.create_module(system_id, body, admin=ctx.is_admin)
    ctx.target = f"module:{module.id}"
    return module


@api.route(
    "/modules/<module_id>",
    "GET",
    summary="Get a module",
    tag=M,
    role=Role.VIEWER,
    response=Module,
    rule="secret env values read as ***, for every role",
)
async def get_module(ctx: Ctx, module_id: str) -> Module:
    module: Module = ctx.master.systems.get_module(module_id)
    return module


@api.route(
    "/modules/<module_id>",
    "PATCH",
    summary="Change a module's env, args, account, health check or order (a privileged module:"
    " admins only, but for its order); secret env values are kept unless named; its version"
    " changes through a rollout (409 here)",
    tag=M,
    role=Role.OPERATOR,
    body=ModulePatch,
    response=Module,
    audit="module.update",
    target="module:{module_id}",
    rule="admin to add admin-only settings or to change a module that has them (start_order"
    " excepted); write-only env values are kept unless named",
    raises=(ConflictError,),
)
async def patch_module(ctx: Ctx, module_id: str, body: ModulePatch) -> Module:
    # The audit entry masks the variables the module already keeps secret, too.
    stored = ctx.master.systems.get_module(module_id).secret_env
    given = {k: v for k, v in unstructure(body).items() if v is not None}
    ctx.audit_params["body"] = redact(given, secret_env=stored)
    module: Module = ctx.master.systems.patch_module(module_id, body, admin=ctx.is_admin)
    return module


@api.route(
    "/modules/<module_id>",
    "DELETE",
    summary="Delete a module without instances",
    tag=M,
    role=Role.OPERATOR,
    status=204,
    audit="module.delete",
    target="module:{module_id}",
    raises=(ConflictError,),
)
async def delete_module(ctx: Ctx, module_id: str) -> None:
    ctx.master.systems.delete_module(module_id)


I = "instances"  # noqa: E741


@api.route(
    "/instances",
    "GET",
    summary="List instances",
    tag=I,
    role=Role.VIEWER,
    response=list[Instance],
    query=(
        QueryParam("system_id", str, "only this system's"),
        QueryParam("module_id", str, "only this module's"),
        QueryParam("node_id", str, "only this node's"),
        QueryParam("state", InstanceState, "only instances in this state"),
    ),
)
async def list_instances(ctx: Ctx) -> list[Instance]:
    return list(ctx.master.orchestrator.list_instances(**ctx.query))


@api.route(
    "/instances",
    "POST",
    summary="Deploy a module onto a node (202: node offline, or no answer in time; the record"
    " is kept and settled by the worker)",
    tag=I,
    role=Role.OPERATOR,
    body=DeployRequest,
    response=Instance,
    status=201,
    statuses={
        202: "the node is offline, or its worker did not answer in time: recorded, and"
        " applied when the worker can"
    },
    audit="instance.deploy",
    rule="runs what the module says: an operator may deploy a module an admin set up with"
    " admin-only settings",
    raises=(NotFoundError, ConflictError, *_WORKER),
)
async def deploy_instance(ctx: Ctx, body: DeployRequest) -> tuple[Instance, int]:
    ctx.target = f"module:{body.module_id}"
    instance, applied = await ctx.master.orchestrator.deploy(body)
    ctx.target = f"instance:{instance.id}"
    ctx.audit_params.update(node_id=body.node_id, version=instance.version)
    return instance, 201 if applied else 202


@api.route(
    "/instances/<instance_id>",
    "GET",
    summary="Get an instance",
    tag=I,
    role=Role.VIEWER,
    response=Instance,
)
async def get_instance(ctx: Ctx, instance_id: str) -> Instance:
    instance: Instance = ctx.master.orchestrator.get(instance_id)
    return instance


async def _action(ctx: Ctx, instance_id: str, name: str) -> tuple[Instance, int]:
    instance, applied = await getattr(ctx.master.orchestrator, name)(instance_id)
    return instance, 200 if applied else 202


@api.route(
    "/instances/<instance_id>/start",
    "POST",
    summary="Start (desired state: running)",
    tag=I,
    role=Role.OPERATOR,
    response=Instance,
    statuses=_OFFLINE,
    audit="instance.start",
    target="instance:{instance_id}",
    raises=_WORKER,
)
async def start_instance(ctx: Ctx, instance_id: str) -> tuple[Instance, int]:
    return await _action(ctx, instance_id, "start")


@api.route(
    "/instances/<instance_id>/stop",
    "POST",
    summary="Stop (desired state: stopped)",
    tag=I,
    role=Role.OPERATOR,
    response=Instance,
    statuses=_OFFLINE,
    audit="instance.stop",
    target="instance:{instance_id}",
    raises=_WORKER,
)
async def stop_instance(ctx: Ctx, instance_id: str) -> tuple[Instance, int]:
    return await _action(ctx, instance_id, "stop")


@api.route(
    "/instances/<instance_id>/restart",
    "POST",
    summary="Stop then start (202 when the node is offline: queued for its return)",
    tag=I,
    role=Role.OPERATOR,
    response=Instance,
    statuses=_OFFLINE,
    audit="instance.restart",
    target="instance:{instance_id}",
    raises=_WORKER,
)
async def restart_instance(ctx: Ctx, instance_id: str) -> tuple[Instance, int]:
    return await _action(ctx, instance_id, "restart")


@api.route(
    "/instances/<instance_id>",
    "DELETE",
    summary="Destroy: stop every process, remove the files and the record",
    tag=I,
    role=Role.OPERATOR,
    status=204,
    audit="instance.destroy",
    target="instance:{instance_id}",
    raises=_WORKER,
)
async def destroy_instance(ctx: Ctx, instance_id: str) -> None:
    applied = await ctx.master.orchestrator.destroy(instance_id)
    ctx.audit_params["applied"] = applied
