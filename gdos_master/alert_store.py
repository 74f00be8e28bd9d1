"""Alert rules, silences, receivers and events in SQLite.

Rules and silences are stored as the JSON of their SDK models; events are rows so that the
history can be filtered and paginated in SQL. Receiver secrets are stored (the notifier
signs with them) but never leave this module except to the notifier.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import attrs

from gdos_master.db import Database
from gdos_sdk.alerts import (
    AlertEvent,
    AlertRule,
    AlertState,
    Receiver,
    ReceiverCreate,
    ReceiverPatch,
    Silence,
    SilenceCreate,
    validate_rule,
)
from gdos_sdk.codec import converter
from gdos_sdk.errors import ConflictError, NotFoundError, ValidationError
from gdos_sdk.models import Page
from gdos_sdk.redaction import keeps_url, mask_url, url_hides_something

__all__ = ["AlertStore"]


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class AlertStore:
    """Persistence for everything the alert engine needs to survive a restart."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- rules ------------------------------------------------------------------------------

    def rules(self) -> list[AlertRule]:
        rows = self.db.all("SELECT body FROM alert_rules ORDER BY name")
        return [converter.structure(json.loads(r["body"]), AlertRule) for r in rows]

    def rule(self, rule_id: str) -> AlertRule:
        row = self.db.one("SELECT body FROM alert_rules WHERE id = ?", (rule_id,))
        if row is None:
            raise NotFoundError(f"no alert rule with id {rule_id!r}")
        return converter.structure(json.loads(row["body"]), AlertRule)

    def _check_receivers(self, rule: AlertRule) -> None:
        for index, receiver_id in enumerate(rule.receivers):
            if not self.db.one("SELECT 1 FROM receivers WHERE id = ?", (receiver_id,)):
                raise ValidationError(
                    f"no receiver with id {receiver_id!r}",
                    details=[{"path": f"$.receivers[{index}]", "message": "unknown receiver"}],
                )

    def create_rule(self, body: AlertRule) -> AlertRule:
        rule = attrs.evolve(body, id=str(uuid.uuid4()))
        validate_rule(rule)
        self._check_receivers(rule)
        now = time.time()
        self.db.execute(
            "INSERT INTO alert_rules(id, name, body, created_at, updated_at) VALUES(?,?,?,?,?)",
            (rule.id, rule.name, json.dumps(converter.unstructure(rule)), now, now),
        )
        return rule

    def replace_rule(self, rule_id: str, body: AlertRule) -> AlertRule:
        self.rule(rule_id)
        rule = attrs.evolve(body, id=rule_id)
        validate_rule(rule)
        self._check_receivers(rule)
        self.db.execute(
            "UPDATE alert_rules SET name = ?, body = ?, updated_at = ? WHERE id = ?",
            (rule.name, json.dumps(converter.unstructure(rule)), time.time(), rule_id),
        )
        return rule

    def delete_rule(self, rule_id: str) -> None:
        self.rule(rule_id)
        self.db.execute("DELETE FROM alert_rules WHERE id = ?", (rule_id,))

    # --- state ------------------------------------------------------------------------------

    def states(self) -> dict[tuple[str, str], AlertState]:
        rows = self.db.all("SELECT rule_id, target, body FROM alert_state")
        return {
            (r["rule_id"], r["target"]): converter.structure(json.loads(r["body"]), AlertState)
            for r in rows
        }

    def save_state(self, rule_id: str, target: str, state: AlertState) -> None:
        self.db.execute(
            "INSERT INTO alert_state(rule_id, target, body) VALUES(?,?,?) ON CONFLICT(rule_id,"
            " target) DO UPDATE SET body = excluded.body",
            (rule_id, target, json.dumps(converter.unstructure(state))),
        )

    def drop_state(self, rule_id: str, target: str) -> None:
        self.db.execute(
            "DELETE FROM alert_state WHERE rule_id = ? AND target = ?", (rule_id, target)
        )

    # --- events -----------------------------------------------------------------------------

    def open_event(
        self,
        rule: AlertRule,
        target: str,
        target_name: str,
        labels: dict[str, str],
        value: float | None,
        started_at: float,
        silenced: bool,
    ) -> int:
        cursor = self.db.execute(
            "INSERT INTO alert_events(rule_id, rule_name, target, target_name, severity, labels,"
            " state, value, started_at, silenced) VALUES(?,?,?,?,?,?,'firing',?,?,?)",
            (
                rule.id,
                rule.name,
                target,
                target_name,
                rule.severity,
                json.dumps(labels),
                value,
                started_at,
                int(silenced),
            ),
        )
        return int(cursor.lastrowid or 0)

    def close_event(
        self, event_id: int, *, value: float | None, ended_at: float, reason: str
    ) -> None:
        self.db.execute(
            "UPDATE alert_events SET state = 'resolved', value = COALESCE(?, value),"
            " ended_at = ?, end_reason = ? WHERE id = ? AND state = 'firing'",
            (value, ended_at, reason, event_id),
        )

    def event(self, event_id: int) -> AlertEvent:
        row = self.db.one("SELECT * FROM alert_events WHERE id = ?", (event_id,))
        if row is None:
            raise NotFoundError(f"no alert event {event_id}")
        return self._event(row)

    def _event(self, row: sqlite3.Row) -> AlertEvent:
        return AlertEvent(
            id=row["id"],
            rule_id=row["rule_id"],
            rule_name=row["rule_name"],
            target=row["target"],
            target_name=row["target_name"],
            severity=row["severity"],
            state=row["state"],
            value=row["value"],
            started_at=datetime.fromtimestamp(row["started_at"], UTC),
            labels=json.loads(row["labels"]),
            ended_at=_dt(row["ended_at"]),
            end_reason=row["end_reason"],
            silenced=bool(row["silenced"]),
        )

    def events(
        self,
        *,
        limit: int,
        offset: int,
        state: str | None = None,
        rule_id: str | None = None,
        target: str | None = None,
        severity: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Page[AlertEvent]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("state", state),
            ("rule_id", rule_id),
            ("target", target),
            ("severity", severity),
        ):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("started_at >= ?")
            args.append(since)
        if until is not None:
            where.append("started_at < ?")
            args.append(until)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        total = int(self.db.scalar(f"SELECT COUNT(*) FROM alert_events {clause}", args))  # noqa: S608
        rows = self.db.all(
            f"SELECT * FROM alert_events {clause} ORDER BY id DESC LIMIT ? OFFSET ?",  # noqa: S608
            [*args, limit, offset],
        )
        return Page(items=[self._event(r) for r in rows], total=total, limit=limit, offset=offset)

    # --- silences ---------------------------------------------------------------------------

    def silences(self, *, include_expired: bool = False) -> list[Silence]:
        found = [
            converter.structure(json.loads(r["body"]), Silence)
            for r in self.db.all("SELECT body FROM silences ORDER BY created_at DESC")
        ]
        if include_expired:
            return found
        now = datetime.now(UTC)
        return [s for s in found if s.ends_at > now]

    def create_silence(self, body: SilenceCreate, created_by: str) -> Silence:
        starts = body.starts_at or datetime.now(UTC)
        if body.ends_at <= starts:
            raise ValidationError(
                "ends_at must be after starts_at",
                details=[{"path": "$.ends_at", "message": "not after start"}],
            )
        if not body.matchers:
            raise ValidationError(
                "a silence needs at least one matcher",
                details=[{"path": "$.matchers", "message": "empty"}],
            )
        for index, matcher in enumerate(body.matchers):
            if matcher.regex:
                try:
                    re.compile(matcher.value)
                except re.error as exc:
                    raise ValidationError(
                        f"invalid regular expression: {exc}",
                        details=[{"path": f"$.matchers[{index}].value", "message": str(exc)}],
                    ) from None
        silence = Silence(
            id=str(uuid.uuid4()),
            matchers=body.matchers,
            starts_at=starts,
            ends_at=body.ends_at,
            comment=body.comment,
            created_by=created_by,
        )
        self.db.execute(
            "INSERT INTO silences(id, body, created_by, created_at) VALUES(?,?,?,?)",
            (silence.id, json.dumps(converter.unstructure(silence)), created_by, time.time()),
        )
        return silence

    def expire_silence(self, silence_id: str) -> Silence:
        row = self.db.one("SELECT body FROM silences WHERE id = ?", (silence_id,))
        if row is None:
            raise NotFoundError(f"no silence with id {silence_id!r}")
        silence = converter.structure(json.loads(row["body"]), Silence)
        now = datetime.now(UTC)
        if silence.ends_at > now:
            silence = Silence(
                id=silence.id,
                matchers=silence.matchers,
                starts_at=min(silence.starts_at, now),
                ends_at=now,
                comment=silence.comment,
                created_by=silence.created_by,
            )
            self.db.execute(
                "UPDATE silences SET body = ? WHERE id = ?",
                (json.dumps(converter.unstructure(silence)), silence_id),
            )
        return silence

    # --- receivers --------------------------------------------------------------------------

    def _receiver(self, row: sqlite3.Row) -> Receiver:
        """A receiver as the API shows it: its URL is write-only (gdos_sdk.redaction)."""
        return Receiver(
            id=row["id"],
            name=row["name"],
            url=mask_url(row["url"]),
            enabled=bool(row["enabled"]),
            has_secret=bool(row["secret"]),
            created_at=datetime.fromtimestamp(row["created_at"], UTC),
            url_redacted=url_hides_something(row["url"]),
        )

    def receivers(self) -> list[Receiver]:
        return [self._receiver(r) for r in self.db.all("SELECT * FROM receivers ORDER BY name")]

    def receiver(self, receiver_id: str) -> Receiver:
        row = self.db.one("SELECT * FROM receivers WHERE id = ?", (receiver_id,))
        if row is None:
            raise NotFoundError(f"no receiver with id {receiver_id!r}")
        return self._receiver(row)

    def receiver_url(self, receiver_id: str) -> str:
        """The stored URL, for delivery only (never for an answer)."""
        return str(self.db.scalar("SELECT url FROM receivers WHERE id = ?", (receiver_id,)) or "")

    def receiver_secret(self, receiver_id: str) -> str:
        return str(
            self.db.scalar("SELECT secret FROM receivers WHERE id = ?", (receiver_id,)) or ""
        )

    def create_receiver(self, body: ReceiverCreate) -> Receiver:
        if self.db.one("SELECT 1 FROM receivers WHERE name = ?", (body.name,)):
            raise ConflictError(f"a receiver named {body.name!r} already exists")
        receiver_id = str(uuid.uuid4())
        self.db.execute(
            "INSERT INTO receivers(id, name, url, secret, enabled, created_at) VALUES(?,?,?,?,?,?)",
            (receiver_id, body.name, body.url, body.secret, int(body.enabled), time.time()),
        )
        return self.receiver(receiver_id)

    def keeps_url(self, receiver_id: str, url: str) -> bool:
        """Whether an update's ``url`` is the masked one a read showed (keep the stored one)."""
        return keeps_url(self.receiver_url(receiver_id), url)

    def patch_receiver(self, receiver_id: str, body: ReceiverPatch) -> Receiver:
        self.receiver(receiver_id)
        if body.url is not None and self.keeps_url(receiver_id, body.url):
            body = attrs.evolve(body, url=None)  # the masked URL a read showed: keep it
        if body.name is not None and self.db.one(
            "SELECT 1 FROM receivers WHERE name = ? AND id != ?", (body.name, receiver_id)
        ):
            raise ConflictError(f"a receiver named {body.name!r} already exists")
        with self.db.transaction():
            for column, value in (("name", body.name), ("url", body.url), ("secret", body.secret)):
                if value is not None:
                    self.db.execute(
                        f"UPDATE receivers SET {column} = ? WHERE id = ?",  # noqa: S608
                        (value, receiver_id),
                    )
            if body.enabled is not None:
                self.db.execute(
                    "UPDATE receivers SET enabled = ? WHERE id = ?",
                    (int(body.enabled), receiver_id),
                )
        return self.receiver(receiver_id)

    def delete_receiver(self, receiver_id: str) -> None:
        self.receiver(receiver_id)
        used = [r.name for r in self.rules() if receiver_id in r.receivers]
        if used:
            raise ConflictError(
                f"receiver is used by rule(s): {', '.join(used)}", details={"rules": used}
            )
        self.db.execute("DELETE FROM receivers WHERE id = ?", (receiver_id,))
