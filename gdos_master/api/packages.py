"""Packages: streaming upload, versions, manifest, download, delete."""

from __future__ import annotations

from typing import Any

from quart import Response, request, send_file

from gdos_master.api import api
from gdos_master.routing import Ctx, QueryParam
from gdos_sdk.errors import ConflictError, StorageError
from gdos_sdk.models import Package, PackageSummary, Role

T = "packages"


@api.route(
    "/packages",
    "POST",
    summary="Upload a package zip (the request body is the zip)",
    tag=T,
    role=Role.OPERATOR,
    response=Package,
    status=201,
    statuses={200: "this version was uploaded before with the same bytes: nothing changed"},
    audit="package.upload",
    rule="force-replacing a version a module runs needs admin if that module would then have"
    " admin-only settings (or has them)",
    raw_body="application/zip",
    query=(
        QueryParam(
            "force",
            bool,
            "replace an existing version with other bytes (admins only when a module that"
            " runs it would then need an admin)",
            default=False,
        ),
    ),
    raises=(ConflictError, StorageError),
)
async def upload_package(ctx: Ctx) -> tuple[Package, int]:
    length = request.content_length
    package, created = await ctx.master.packages.upload(
        request.body,
        content_length=length,
        force=ctx.query["force"],
        uploaded_by=ctx.actor.label,
        on_replace=None if ctx.is_admin else ctx.master.systems.check_package_replacement,
    )
    ctx.target = f"package:{package.name}@{package.version}"
    ctx.audit_params.update(sha256=package.sha256, size=package.size, created=created)
    return package, 201 if created else 200


@api.route(
    "/packages",
    "GET",
    summary="Package names with their versions, newest first",
    tag=T,
    role=Role.VIEWER,
    response=list[PackageSummary],
    query=(QueryParam("search", str, "substring of the name"),),
)
async def list_packages(ctx: Ctx) -> list[PackageSummary]:
    return list(ctx.master.packages.summaries(ctx.query["search"]))


@api.route(
    "/packages/<name>",
    "GET",
    summary="Every version of a package, newest first",
    tag=T,
    role=Role.VIEWER,
    response=list[Package],
)
async def package_versions(ctx: Ctx, name: str) -> list[Package]:
    return list(ctx.master.packages.versions(name))


@api.route(
    "/packages/<name>/<version>",
    "GET",
    summary="One version with its manifest",
    tag=T,
    role=Role.VIEWER,
    response=Package,
)
async def get_package(ctx: Ctx, name: str, version: str) -> Package:
    package: Package = ctx.master.packages.get(name, version)
    return package


@api.route(
    "/packages/<name>/<version>/manifest",
    "GET",
    summary="The version's service.json",
    tag=T,
    role=Role.VIEWER,
    response=dict[str, Any],
)
async def get_manifest(ctx: Ctx, name: str, version: str) -> dict[str, Any]:
    manifest: dict[str, Any] = ctx.master.packages.get(name, version).manifest
    return manifest


@api.route(
    "/packages/<name>/<version>/download",
    "GET",
    summary="Download the zip",
    tag=T,
    role=Role.VIEWER,
    raw_response="application/zip",
    raises=(StorageError,),
)
async def download_package(ctx: Ctx, name: str, version: str) -> Response:
    key = ctx.master.packages.storage_key(name, version)
    return await stream_object(ctx, key, f"{name}-{version}.zip")


@api.route(
    "/packages/<name>/<version>",
    "DELETE",
    summary="Delete a version not in use",
    tag=T,
    role=Role.OPERATOR,
    status=204,
    audit="package.delete",
    target="package:{name}@{version}",
    raises=(ConflictError, StorageError),
)
async def delete_package(ctx: Ctx, name: str, version: str) -> None:
    await ctx.master.packages.delete(name, version)


@api.route(
    "/agent/packages/<sha256>",
    "GET",
    summary="Workers fetch a package by digest",
    tag="agent",
    role=None,
    agent=True,
    raw_response="application/zip",
    raises=(StorageError,),
)
async def agent_download(ctx: Ctx, sha256: str) -> Response:
    package = ctx.master.packages.by_sha256(sha256)
    key = ctx.master.packages.storage_key(package.name, package.version)
    return await stream_object(ctx, key, f"{package.name}-{package.version}.zip")


async def stream_object(ctx: Ctx, key: str, filename: str) -> Response:
    storage = ctx.master.storage
    info = await storage.stat(key)
    path = storage.local_path(key)
    if path is not None:
        response = await send_file(
            path,
            mimetype="application/zip",
            as_attachment=True,
            attachment_filename=filename,
            conditional=False,
        )
    else:
        response = Response(storage.iter_bytes(key), mimetype="application/zip")
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        response.headers["Content-Length"] = str(info.size)
    return response
