"""The audit log, newest first, filtered and paginated on the server."""

from __future__ import annotations

from datetime import UTC, datetime

from quart import request

from gdos_master.api import api
from gdos_master.audit import list_audit
from gdos_master.routing import Ctx, QueryParam
from gdos_sdk.errors import ValidationError
from gdos_sdk.models import AuditEntry, Page, Role


def _time(name: str) -> float | None:
    """A query time as Unix seconds; accepts Unix seconds or ISO 8601."""
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"query parameter {name!r} must be an ISO 8601 time or Unix seconds",
            details=[{"path": f"query.{name}", "message": "invalid time"}],
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


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
        QueryParam("since", str, "ISO 8601 time or Unix seconds (inclusive)"),
        QueryParam("until", str, "ISO 8601 time or Unix seconds (exclusive)"),
        QueryParam("limit", int, "page size, 1-1000 (default 100)"),
        QueryParam("offset", int, "entries to skip"),
    ),
)
async def list_audit_entries(ctx: Ctx) -> Page[AuditEntry]:
    limit, offset = ctx.page()
    return list_audit(
        ctx.master.db,
        limit=limit,
        offset=offset,
        actor=request.args.get("actor"),
        action=request.args.get("action"),
        target=request.args.get("target"),
        since=_time("since"),
        until=_time("until"),
    )
