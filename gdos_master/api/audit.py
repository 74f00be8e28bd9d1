"""The audit log, newest first, filtered and paginated on the server."""

from __future__ import annotations

from gdos_master.api import api
from gdos_master.audit import list_audit
from gdos_master.routing import PAGE, Ctx, Instant, QueryParam
from gdos_sdk.models import AuditEntry, Page, Role


@api.route(
    "/audit",
    "GET",
    summary="Audit entries, newest first",
    tag="audit",
    role=Role.ADMIN,
    response=Page[AuditEntry],
    query=(
        QueryParam("actor", str, "exact actor (user name, 'node:<id>')"),
        QueryParam("action", str, "action prefix, e.g. 'instance.'"),
        QueryParam("target", str, "target prefix, e.g. 'system:'"),
        QueryParam("since", Instant, "ISO 8601 time or Unix seconds (inclusive)"),
        QueryParam("until", Instant, "ISO 8601 time or Unix seconds (exclusive)"),
        *PAGE,
    ),
)
async def list_audit_entries(ctx: Ctx) -> Page[AuditEntry]:
    return list_audit(ctx.master.db, **ctx.query)
