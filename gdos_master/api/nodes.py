"""Nodes: list, get, rename/relabel, plan ahead, approve, delete, adoption candidates."""

from __future__ import annotations

from quart import Response

from gdos_master.api import api
from gdos_master.routing import Ctx, QueryParam
from gdos_sdk.adoption import AdoptionSpec, ProcessCandidate
from gdos_sdk.errors import ConflictError, RemoteError, TransportError
from gdos_sdk.models import Node, NodePatch, NodeStatus, PlannedNodeCreate, Role

T = "nodes"


@api.route(
    "/nodes",
    "GET",
    summary="List nodes with status and latest sample",
    tag=T,
    role=Role.VIEWER,
    response=list[Node],
    query=(
        QueryParam("status", NodeStatus, "only nodes in this status"),
        QueryParam("search", str, "substring of hostname, alias, id or address"),
    ),
)
async def list_nodes(ctx: Ctx) -> Response:
    status = ctx.query["status"]
    text = ctx.master.nodes.list_json(
        status=None if status is None else NodeStatus(status).value, search=ctx.query["search"]
    )
    return Response(text, content_type="application/json")


@api.route("/nodes/<node_id>", "GET", summary="Get a node", tag=T, role=Role.VIEWER, response=Node)
async def get_node(ctx: Ctx, node_id: str) -> Node:
    node: Node = ctx.master.nodes.get(node_id)
    return node


@api.route(
    "/nodes/<node_id>",
    "PATCH",
    summary="Rename (alias) or relabel a node",
    tag=T,
    role=Role.ADMIN,
    body=NodePatch,
    response=Node,
    audit="node.update",
    target="node:{node_id}",
)
async def patch_node(ctx: Ctx, node_id: str, body: NodePatch) -> Node:
    node: Node = ctx.master.nodes.patch(node_id, body)
    return node


@api.route(
    "/nodes",
    "POST",
    summary="Register a planned node before its worker joins; the answer carries its"
    " one-time claim token (shown once)",
    tag=T,
    role=Role.ADMIN,
    body=PlannedNodeCreate,
    response=Node,
    status=201,
    audit="node.plan",
    rule="the answer carries the node's one-time claim token",
    raises=(ConflictError,),
)
async def plan_node(ctx: Ctx, body: PlannedNodeCreate) -> Node:
    node: Node = ctx.master.nodes.plan(body)
    ctx.target = f"node:{node.id}"
    return node


@api.route(
    "/nodes/<node_id>/claim-token",
    "POST",
    summary="Issue a new claim token for a planned node (the old one stops working)",
    tag=T,
    role=Role.ADMIN,
    response=Node,
    audit="node.claim_token",
    target="node:{node_id}",
    rule="the answer carries the new claim token; the old one stops working",
    raises=(ConflictError,),
)
async def new_claim_token(ctx: Ctx, node_id: str) -> Node:
    node: Node = ctx.master.nodes.new_claim_token(node_id)
    return node


@api.route(
    "/nodes/<node_id>/approve",
    "POST",
    summary="Approve a pending node (one that matched a planned node takes it over)",
    tag=T,
    role=Role.ADMIN,
    response=Node,
    audit="node.approve",
    target="node:{node_id}",
    rule="a pending node that matched a planned node takes it over (its instances)",
    raises=(ConflictError,),
)
async def approve_node(ctx: Ctx, node_id: str) -> Node:
    node: Node = await ctx.master.nodes.approve(node_id)
    ctx.master.spawn_reconcile(node_id)
    return node


@api.route(
    "/nodes/<node_id>",
    "DELETE",
    summary="Delete a node and revoke its credential",
    tag=T,
    role=Role.ADMIN,
    status=204,
    audit="node.delete",
    target="node:{node_id}",
    query=(QueryParam("force", bool, "also drop the node's instance records", default=False),),
    raises=(ConflictError,),
)
async def delete_node(ctx: Ctx, node_id: str) -> None:
    dropped = await ctx.master.nodes.delete(node_id, force=ctx.query["force"])
    ctx.audit_params["instances_dropped"] = dropped


@api.route(
    "/nodes/<node_id>/candidates",
    "POST",
    summary="List the processes on a node that an adoption spec would adopt",
    tag=T,
    role=Role.OPERATOR,
    body=AdoptionSpec,
    response=list[ProcessCandidate],
    audit="node.candidates",
    target="node:{node_id}",
    rule="shows the matching processes' command lines, working folders and users",
    raises=(ConflictError, RemoteError, TransportError),
)
async def adoption_candidates(ctx: Ctx, node_id: str, body: AdoptionSpec) -> list[ProcessCandidate]:
    found: list[ProcessCandidate] = await ctx.master.orchestrator.candidates(node_id, body)
    return found
