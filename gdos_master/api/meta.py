"""Health, the OpenAPI document, and cluster settings."""

from __future__ import annotations

from typing import Any

import attrs

from gdos_master.api import api
from gdos_master.routing import Ctx
from gdos_sdk.errors import ConflictError
from gdos_sdk.models import JoinToken, Role, Settings


@attrs.frozen
class Health:
    status: str
    version: str
    nodes_online: int


@api.route(
    "/health", "GET", summary="Liveness; no authentication", tag="meta", role=None, response=Health
)
async def health(ctx: Ctx) -> Health:
    from gdos_master import __version__

    ctx.master.db.scalar("SELECT 1")  # the database answers
    return Health(status="ok", version=__version__, nodes_online=ctx.master.fleet.online_count())


@api.route(
    "/openapi.json",
    "GET",
    summary="This API as an OpenAPI 3.1 document",
    tag="meta",
    role=Role.VIEWER,
    response=dict[str, Any],
)
async def openapi(ctx: Ctx) -> dict[str, Any]:
    from gdos_master.openapi import build_openapi

    return build_openapi(api)


@api.route(
    "/settings",
    "GET",
    summary="Cluster settings (the join token is not shown: rotate it to see a new one)",
    tag="meta",
    role=Role.ADMIN,
    response=Settings,
)
async def get_settings(ctx: Ctx) -> Settings:
    settings: Settings = ctx.master.cluster_settings()
    return settings


@api.route(
    "/settings/join-token",
    "POST",
    summary="Rotate the cluster join token and show the new one, this once (joined nodes"
    " keep their credentials; 409 when it is set in the configuration)",
    tag="meta",
    role=Role.ADMIN,
    response=JoinToken,
    audit="settings.rotate_join_token",
    target="settings:join_token",
    raises=(ConflictError,),
)
async def rotate_join_token(ctx: Ctx) -> JoinToken:
    token: JoinToken = ctx.master.rotate_join_token()
    return token
