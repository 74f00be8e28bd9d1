"""Backups: create, list, download, upload, delete, restore in place, schedule (admins only)."""

from __future__ import annotations

from quart import Response, request, send_file

from gdos_master.api import api
from gdos_master.backups import PREFIX
from gdos_master.routing import Ctx, QueryParam
from gdos_sdk.backups import (
    BackupInfo,
    BackupKind,
    BackupRequest,
    BackupSchedule,
    RestoreResult,
    StorageSweep,
)
from gdos_sdk.constraints import Check
from gdos_sdk.errors import BackupError, ConflictError, StorageError
from gdos_sdk.models import Role

T = "backups"
A = Role.ADMIN


@api.route(
    "/backups",
    "GET",
    summary="Backups in storage, newest first",
    tag=T,
    role=A,
    response=list[BackupInfo],
    raises=(StorageError,),
)
async def list_backups(ctx: Ctx) -> list[BackupInfo]:
    found: list[BackupInfo] = await ctx.master.backups.list_backups()
    return found


@api.route(
    "/backups",
    "POST",
    summary="Make a backup now (database, optionally packages)",
    tag=T,
    role=A,
    body=BackupRequest,
    response=BackupInfo,
    status=201,
    audit="backup.create",
    raises=(StorageError,),
)
async def create_backup(ctx: Ctx, body: BackupRequest) -> BackupInfo:
    info: BackupInfo = await ctx.master.backups.create(
        include_packages=body.include_packages, kind=BackupKind.MANUAL
    )
    ctx.target = f"backup:{info.name}"
    ctx.audit_params.update(size=info.size)
    return info


@api.route(
    "/backups/schedule",
    "GET",
    summary="The backup schedule and retention",
    tag=T,
    role=A,
    response=BackupSchedule,
)
async def get_backup_schedule(ctx: Ctx) -> BackupSchedule:
    schedule: BackupSchedule = ctx.master.backups.schedule()
    return schedule


@api.route(
    "/backups/schedule",
    "PUT",
    summary="Change the backup schedule and retention",
    tag=T,
    role=A,
    body=BackupSchedule,
    response=BackupSchedule,
    audit="backup.schedule",
    target="backup:schedule",
)
async def set_backup_schedule(ctx: Ctx, body: BackupSchedule) -> BackupSchedule:
    schedule: BackupSchedule = ctx.master.backups.set_schedule(body)
    return schedule


@api.route(
    "/backups/upload",
    "POST",
    summary="Upload an archive made elsewhere (checked whole, then stored; not restored)",
    tag=T,
    role=A,
    response=BackupInfo,
    status=201,
    audit="backup.upload",
    raw_body="application/gzip",
    raises=(BackupError, StorageError),
)
async def upload_backup(ctx: Ctx) -> BackupInfo:
    info: BackupInfo = await ctx.master.backups.upload(
        request.body, content_length=request.content_length
    )
    ctx.target = f"backup:{info.name}"
    ctx.audit_params.update(size=info.size)
    return info


@api.route(
    "/backups/<name>/download",
    "GET",
    summary="Download an archive",
    tag=T,
    role=A,
    raw_response="application/gzip",
    audit="backup.download",
    target="backup:{name}",
    raises=(StorageError,),
)
async def download_backup(ctx: Ctx, name: str) -> Response:
    info = await ctx.master.backups.stat(name)
    storage = ctx.master.storage
    path = storage.local_path(PREFIX + name)
    if path is not None:
        return await send_file(
            path,
            mimetype="application/gzip",
            as_attachment=True,
            attachment_filename=name,
            conditional=False,
        )
    response = Response(storage.iter_bytes(PREFIX + name), mimetype="application/gzip")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Content-Length"] = str(info.size)
    return response


@api.route(
    "/backups/<name>/restore",
    "POST",
    summary="Restore in place: the master keeps running and serves the backup's state",
    tag=T,
    role=A,
    response=RestoreResult,
    audit="backup.restore",
    target="backup:{name}",
    raises=(BackupError, ConflictError, StorageError),
)
async def restore_backup(ctx: Ctx, name: str) -> RestoreResult:
    result: RestoreResult = await ctx.master.backups.restore(name)
    return result


@api.route(
    "/backups/<name>",
    "DELETE",
    summary="Delete an archive",
    tag=T,
    role=A,
    status=204,
    audit="backup.delete",
    target="backup:{name}",
    raises=(StorageError,),
)
async def delete_backup(ctx: Ctx, name: str) -> None:
    await ctx.master.backups.delete(name)


_MIN_AGE = QueryParam(
    "min_age",
    int,
    "only objects older than this many seconds (0: all)",
    default=3600,
    check=Check(minimum=0, maximum=10 * 365 * 86400),
)


@api.route(
    "/storage/orphans",
    "GET",
    summary="Package and recording objects no record refers to (left behind by a restore)",
    tag=T,
    role=A,
    response=StorageSweep,
    query=(_MIN_AGE,),
    raises=(StorageError,),
)
async def list_orphans(ctx: Ctx) -> StorageSweep:
    min_age: int = ctx.query["min_age"]
    sweep: StorageSweep = await ctx.master.backups.orphans(float(min_age))
    return sweep


@api.route(
    "/storage/orphans",
    "DELETE",
    summary="Delete the objects GET /storage/orphans lists",
    tag=T,
    role=A,
    response=StorageSweep,
    query=(_MIN_AGE,),
    audit="storage.sweep",
    target="storage:orphans",
    raises=(StorageError,),
)
async def remove_orphans(ctx: Ctx) -> StorageSweep:
    min_age: int = ctx.query["min_age"]
    sweep: StorageSweep = await ctx.master.backups.remove_orphans(float(min_age))
    ctx.audit_params.update(min_age=min_age, count=len(sweep.objects), bytes=sweep.total_bytes)
    return sweep
