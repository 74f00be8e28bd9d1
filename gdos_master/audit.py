"""The audit trail: who did what, to what, from where, with what result.

Entries are written once and never updated. Parameters are stored with
secret-looking values redacted (see :func:`gdos_master.security.redact`), so
the trail can be shown to any admin without leaking a password or a token.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gdos_master.security import redact
from gdos_sdk.models import AuditEntry, Page

if TYPE_CHECKING:
    from gdos_master.auth import Principal
    from gdos_master.db import Database

__all__ = ["list_audit", "record_audit"]


def record_audit(
    db: Database,
    *,
    principal: Principal | None,
    ip: str,
    action: str,
    target: str,
    params: dict[str, Any],
    status: int,
    message: str = "",
    actor_kind: str | None = None,
    actor: str | None = None,
) -> None:
    """Append one entry; ``status`` < 400 is recorded as ``ok``, else ``error``."""
    if principal is not None:
        kind = actor_kind or principal.kind
        who = actor or principal.label
    else:
        kind = actor_kind or "anonymous"
        who = actor or ""
    db.execute(
        "INSERT INTO audit(ts, actor_kind, actor, ip, action, target, params, result, status,"
        " message) VALUES(?,?,?,?,?,?,?,?,?,?)",
        (
            time.time(),
            kind,
            who,
            ip,
            action,
            target,
            json.dumps(redact(params), default=str, ensure_ascii=False),
            "ok" if status < 400 else "error",
            status,
            message[:1000],
        ),
    )


def list_audit(
    db: Database,
    *,
    limit: int,
    offset: int,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> Page[AuditEntry]:
    """Newest first, filtered; ``action`` and ``target`` match as prefixes, in any case."""
    where: list[str] = []
    args: list[Any] = []
    if actor:
        where.append("actor = ?")
        args.append(actor)
    if action:
        where.append("lower(action) LIKE lower(?) ESCAPE '\\'")
        args.append(_like_prefix(action))
    if target:
        where.append("lower(target) LIKE lower(?) ESCAPE '\\'")
        args.append(_like_prefix(target))
    if since is not None:
        where.append("ts >= ?")
        args.append(since)
    if until is not None:
        where.append("ts < ?")
        args.append(until)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    total = int(db.scalar(f"SELECT COUNT(*) FROM audit {clause}", args))  # noqa: S608
    rows = db.all(
        f"SELECT * FROM audit {clause} ORDER BY id DESC LIMIT ? OFFSET ?",  # noqa: S608
        [*args, limit, offset],
    )
    items = [
        AuditEntry(
            id=row["id"],
            ts=datetime.fromtimestamp(row["ts"], UTC),
            actor_kind=row["actor_kind"],
            actor=row["actor"],
            ip=row["ip"],
            action=row["action"],
            target=row["target"],
            params=json.loads(row["params"]),
            result=row["result"],
            status=row["status"],
            message=row["message"],
        )
        for row in rows
    ]
    return Page(items=items, total=total, limit=limit, offset=offset)


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
