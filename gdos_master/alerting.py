"""The alert engine: evaluate every rule against its targets each second, persist, notify.

State changes are written to SQLite as they happen (never per evaluation), so a restarted
master carries on where it stopped: a pending alert keeps its debounce start, a firing
alert keeps its event (no duplicate), and alerts whose rule or target vanished while the
master was down are resolved at start. Notifications go to webhook receivers with retries
and exponential backoff, signed with HMAC-SHA256 when the receiver has a secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import httpx

from gdos_master.alert_store import AlertStore
from gdos_master.db import Database
from gdos_master.destinations import DestinationDenied, DestinationPolicy
from gdos_master.fleet import Fleet
from gdos_sdk.alerts import (
    STATUS_METRICS,
    ActiveAlert,
    AlertPhase,
    AlertRule,
    AlertState,
    Change,
    DeliveryResult,
    Silence,
    delivery_delays,
    is_silenced,
    step,
)

__all__ = ["TARGET_REFRESH", "UNREACHABLE", "AlertEngine", "Notifier", "Target"]

TARGET_REFRESH = 2.0  # seconds

#: The one error of a delivery that got no HTTP answer, whatever the cause (refused,
#: reset, timed out, not HTTP, no such name): the answer must not map the network.
UNREACHABLE = "the receiver could not be reached (no HTTP answer)"

log = logging.getLogger("gdos.master.alerts")


@attrs.frozen
class Target:
    """Something a rule can watch, with what its value is computed from."""

    key: str  # node:<id> or instance:<id>
    name: str
    labels: dict[str, str]
    node_id: str
    node_labels: dict[str, str] = attrs.field(factory=dict)
    system_id: str = ""
    module_id: str = ""
    row: dict[str, Any] = attrs.field(factory=dict)


class Notifier:
    """Deliver alert payloads to webhook receivers."""

    def __init__(
        self,
        store: AlertStore,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        attempts: int = 5,
        initial_delay: float = 1.0,
        timeout: float = 10.0,
        policy: DestinationPolicy | None = None,
    ) -> None:
        self.store = store
        self.transport = transport
        self.policy = policy if policy is not None else DestinationPolicy()
        self.attempts = attempts
        self.initial_delay = initial_delay
        self.timeout = timeout
        self.tasks: set[asyncio.Task[Any]] = set()

    def _headers(self, receiver_id: str, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "gdos-alerts/1"}
        secret = self.store.receiver_secret(receiver_id)
        if secret:
            digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-GDOS-Signature"] = f"sha256={digest}"
        return headers

    async def _post(
        self, http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        """POST to the address the policy checked, never to a fresh resolution of the name."""
        target = await self.policy.resolve(url)
        extensions = {"sni_hostname": target.host} if url.startswith("https:") else {}
        port = httpx.URL(url).port
        host_header = target.host if port is None else f"{target.host}:{port}"
        if ":" in target.host:
            host_header = f"[{target.host}]" + ("" if port is None else f":{port}")
        return await http.post(
            target.url,
            content=body,
            headers={**headers, "Host": host_header},
            extensions=extensions,
        )

    async def check_destination(self, url: str) -> None:
        """Refuse (422 naming ``$.url``) a receiver URL the destination policy denies.

        The name is resolved too when it can be; one that does not resolve now is
        accepted and judged again at every delivery.
        """
        try:
            await self.policy.resolve(url)
        except OSError:
            pass

    async def deliver(
        self, receiver_id: str, payload: dict[str, Any], *, retries: bool = True
    ) -> DeliveryResult:
        """POST ``payload``; retry failures (5xx, network) with backoff unless told not to.

        The destination policy is applied before every attempt, after DNS. A failure to
        connect or to get an HTTP answer reads the same whatever its cause, so the test
        call cannot tell an open port from a closed one (the log has the detail).
        """
        receiver = self.store.receiver(receiver_id)
        url = self.store.receiver_url(receiver_id)
        body = json.dumps(payload, default=str).encode()
        delays = delivery_delays(self.attempts, self.initial_delay) if retries else []
        result = DeliveryResult(ok=False, error="not attempted", attempts=0)
        async with httpx.AsyncClient(
            timeout=self.timeout, transport=self.transport, follow_redirects=False
        ) as http:
            for attempt in range(len(delays) + 1):
                try:
                    response = await self._post(http, url, body, self._headers(receiver_id, body))
                    result = DeliveryResult(
                        ok=response.is_success,
                        status=response.status_code,
                        error="" if response.is_success else f"HTTP {response.status_code}",
                        attempts=attempt + 1,
                    )
                    if response.is_success or response.status_code < 500:
                        break  # success, or a client error that retrying will not fix
                except DestinationDenied as exc:
                    result = DeliveryResult(ok=False, error=exc.message, attempts=attempt + 1)
                    break  # the policy will not change between attempts
                except (httpx.HTTPError, OSError) as exc:
                    log.info("delivery to %s: %s", receiver.name, str(exc) or type(exc).__name__)
                    result = DeliveryResult(ok=False, error=UNREACHABLE, attempts=attempt + 1)
                if attempt < len(delays):
                    await asyncio.sleep(delays[attempt])
        if not result.ok:
            log.warning(
                "alert delivery to %s failed after %d attempt(s): %s",
                receiver.name,
                result.attempts,
                result.error,
            )
        return result

    def send(self, receiver_ids: list[str], payload: dict[str, Any]) -> None:
        for receiver_id in receiver_ids:
            task = asyncio.get_running_loop().create_task(self.deliver(receiver_id, payload))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


class AlertEngine:
    """Evaluates rules every second and turns changes into events and notifications."""

    def __init__(
        self,
        store: AlertStore,
        db: Database,
        fleet: Fleet,
        notifier: Notifier,
        *,
        startup_grace: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.db = db
        self.fleet = fleet
        self.notifier = notifier
        self.startup_grace = startup_grace
        self.clock = clock
        self.started = clock()
        self.rules: list[AlertRule] = []
        self.silences: list[Silence] = []
        self.states: dict[tuple[str, str], AlertState] = {}
        self.meta: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}  # name, labels
        self.on_change: list[Callable[[str, ActiveAlert], None]] = []
        self._targets_cache: dict[str, list[Target]] | None = None
        self._targets_at = 0.0

    # --- loading ----------------------------------------------------------------------------

    def load(self) -> None:
        """Read rules, silences and saved states; resolve what lost its rule while down."""
        self.reload()
        self.states = self.store.states()
        known = {r.id for r in self.rules if r.enabled}
        for (rule_id, target), state in list(self.states.items()):
            if rule_id not in known:
                self._end(rule_id, target, state, reason="rule deleted or disabled", notify=False)

    def reload(self) -> None:
        self.rules = self.store.rules()
        self.silences = self.store.silences()
        self._targets_cache = None

    # --- targets and values -----------------------------------------------------------------

    def _targets(self) -> dict[str, list[Target]]:
        nodes: list[Target] = []
        node_rows = {
            r["id"]: r
            for r in self.db.all(
                "SELECT id, hostname, alias, labels, approved, planned, credential_hash FROM nodes"
            )
        }
        for row in node_rows.values():
            if row["planned"] or not row["approved"] or not row["credential_hash"]:
                continue
            name = row["alias"] or row["hostname"]
            node_labels = json.loads(row["labels"])
            nodes.append(
                Target(
                    key=f"node:{row['id']}",
                    name=name,
                    node_id=row["id"],
                    node_labels=node_labels,
                    labels={
                        "node_id": row["id"],
                        "hostname": row["hostname"],
                        "node": name,
                        **{f"label_{k}": v for k, v in node_labels.items()},
                    },
                )
            )
        instances: list[Target] = []
        if any(r.target.kind == "instances" for r in self.rules):
            rows = self.db.all(
                "SELECT i.*, m.name AS module_name FROM instances i"
                " JOIN modules m ON m.id = i.module_id"
            )
            for row in rows:
                node = node_rows.get(row["node_id"])
                hostname = node["hostname"] if node is not None else ""
                name = f"{row['module_name']}@{hostname}"
                instances.append(
                    Target(
                        key=f"instance:{row['id']}",
                        name=name,
                        node_id=row["node_id"],
                        system_id=row["system_id"],
                        module_id=row["module_id"],
                        row=dict(row),
                        labels={
                            "instance_id": row["id"],
                            "module": row["module_name"],
                            "system_id": row["system_id"],
                            "package": row["package"],
                            "node_id": row["node_id"],
                            "hostname": hostname,
                        },
                    )
                )
        return {"nodes": nodes, "instances": instances}

    def _cached_targets(self, now: float) -> dict[str, list[Target]]:
        """Target lists, re-read at most every few seconds (a big fleet is a big query)."""
        if self._targets_cache is None or now - self._targets_at >= TARGET_REFRESH:
            self._targets_cache = self._targets()
            self._targets_at = now
        return self._targets_cache

    @staticmethod
    def _selected(rule: AlertRule, targets: dict[str, list[Target]]) -> list[Target]:
        sel = rule.target
        found = []
        for target in targets[sel.kind]:
            if sel.kind == "nodes":
                if sel.node_ids and target.node_id not in sel.node_ids:
                    continue
                if any(target.node_labels.get(k) != v for k, v in sel.labels.items()):
                    continue
            else:
                if sel.system_id and target.system_id != sel.system_id:
                    continue
                if sel.module_id and target.module_id != sel.module_id:
                    continue
            found.append(target)
        return found

    def _value(self, rule: AlertRule, target: Target, now: float) -> float | None:
        metric = rule.metric
        online = self.fleet.connection(target.node_id) is not None
        if metric == "node_offline":
            if now - self.started < self.startup_grace:
                return None  # workers are still reconnecting to a restarted master
            return 0.0 if self.fleet.is_online(target.node_id) else 1.0
        if not online:
            return None  # no fresh data; node_offline is the rule that reports this
        if metric in STATUS_METRICS or metric == "restarts":
            row = target.row  # read this tick with the target list
            if not row:
                return None
            if metric == "restarts":
                return float(row["restarts"])
            if metric == "instance_failed":
                return 1.0 if row["state"] == "failed" else 0.0
            if metric == "instance_unhealthy":
                return 1.0 if row["health"] == "unhealthy" else 0.0
            # instance_down: not running although it should be. A deliberate stop sets the
            # desired state to stopped, so it never counts.
            down = row["desired_state"] == "running" and row["state"] in (
                "backoff",
                "failed",
                "stopped",
            )
            return 1.0 if down else 0.0
        if target.row and target.row.get("state") != "running":
            return 0.0  # a stopped instance uses no CPU, memory or IO
        latest = self.fleet.store.latest(target.key)
        if metric == "disk_percent":
            disks = [v for name, (_, v) in latest.items() if name.startswith("disk_percent:")]
            return max(disks) if disks else None
        found = latest.get(metric)
        return None if found is None else found[1]

    # --- evaluation -------------------------------------------------------------------------

    def evaluate(self, now: float | None = None) -> None:
        """One pass over every enabled rule."""
        now = self.clock() if now is None else now
        if not self.states and not any(r.enabled for r in self.rules):
            return  # nothing to watch: do not scan the fleet every second
        targets = self._cached_targets(now)
        live: set[tuple[str, str]] = set()
        for rule in self.rules:
            if not rule.enabled:
                continue
            for target in self._selected(rule, targets):
                key = (rule.id, target.key)
                live.add(key)
                labels = {
                    "alertname": rule.name,
                    "severity": rule.severity,
                    "rule_id": rule.id,
                    "target": target.key,
                    **target.labels,
                    **rule.labels,
                }
                self.meta[key] = (target.name, labels)
                state = self.states.get(key, AlertState())
                value = self._value(rule, target, now)
                new, change = step(rule, state, value, now)
                self.states[key] = new
                if change is not None:
                    self._apply(rule, target.key, target.name, labels, state, new, change, now)
        for key in [k for k in self.states if k not in live]:
            rule_id, gone = key
            still = any(r.id == rule_id and r.enabled for r in self.rules)
            reason = "target removed" if still else "rule deleted or disabled"
            self._end(rule_id, gone, self.states[key], reason=reason, notify=True)

    def _apply(
        self,
        rule: AlertRule,
        target: str,
        name: str,
        labels: dict[str, str],
        old: AlertState,
        new: AlertState,
        change: Change,
        now: float,
    ) -> None:
        silenced = is_silenced(labels, self.silences, datetime.fromtimestamp(now, UTC))
        if change == Change.PENDING:
            self.store.save_state(rule.id, target, new)
        elif change == Change.CANCELLED:
            self.store.drop_state(rule.id, target)
            self.states.pop((rule.id, target), None)
        elif change == Change.FIRING:
            new.event_id = self.store.open_event(
                rule, target, name, labels, new.value, new.firing_since or now, silenced
            )
            self.store.save_state(rule.id, target, new)
            log.warning("alert firing: %s on %s (value %s)", rule.name, name, new.value)
            if not silenced:
                self.notifier.send(
                    self._receivers(rule),
                    self._payload("firing", rule, target, name, labels, new, now),
                )
        elif change == Change.RESOLVED:
            if old.event_id is not None:
                self.store.close_event(
                    old.event_id, value=new.value, ended_at=now, reason="condition cleared"
                )
            self.store.drop_state(rule.id, target)
            self.states.pop((rule.id, target), None)
            log.info("alert resolved: %s on %s", rule.name, name)
            if not silenced:
                payload = self._payload("resolved", rule, target, name, labels, old, now)
                payload["value"] = new.value
                self.notifier.send(self._receivers(rule), payload)
        self._emit(
            rule, target, name, labels, new if change != Change.RESOLVED else old, change, silenced
        )

    def _end(
        self, rule_id: str, target: str, state: AlertState, *, reason: str, notify: bool
    ) -> None:
        """Resolve an alert whose rule or target is gone (never leave it firing)."""
        now = self.clock()
        if state.event_id is not None:
            self.store.close_event(state.event_id, value=None, ended_at=now, reason=reason)
        self.store.drop_state(rule_id, target)
        self.states.pop((rule_id, target), None)
        name, labels = self.meta.pop((rule_id, target), (target, {}))
        rule = next((r for r in self.rules if r.id == rule_id), None)
        if notify and rule is not None and state.phase == AlertPhase.FIRING:
            payload = self._payload("resolved", rule, target, name, labels, state, now)
            payload["end_reason"] = reason
            self.notifier.send(self._receivers(rule), payload)
        if rule is not None and state.phase != AlertPhase.INACTIVE:
            # Tell the live channel too, so no page keeps showing it.
            change = Change.RESOLVED if state.phase == AlertPhase.FIRING else Change.CANCELLED
            self._emit(rule, target, name, labels, state, change, silenced=False)

    def forget_rule(self, rule_id: str) -> None:
        """Called when a rule is deleted: resolve everything it had open."""
        for key, state in list(self.states.items()):
            if key[0] == rule_id:
                self._end(rule_id, key[1], state, reason="rule deleted", notify=True)
        self.reload()

    def _receivers(self, rule: AlertRule) -> list[str]:
        enabled = [r.id for r in self.store.receivers() if r.enabled]
        return [r for r in rule.receivers if r in enabled] if rule.receivers else enabled

    @staticmethod
    def _payload(
        status: str,
        rule: AlertRule,
        target: str,
        name: str,
        labels: dict[str, str],
        state: AlertState,
        now: float,
    ) -> dict[str, Any]:
        started = state.firing_since or now
        value = state.value
        shown = "no data" if value is None else f"{value:.4g}"
        return {
            "version": 1,
            "status": status,
            "event_id": state.event_id,
            "rule": {
                "id": rule.id,
                "name": rule.name,
                "metric": rule.metric,
                "op": rule.op,
                "threshold": rule.threshold,
                "severity": rule.severity,
            },
            "target": target,
            "target_name": name,
            "labels": labels,
            "value": value,
            "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
            "ended_at": datetime.fromtimestamp(now, UTC).isoformat()
            if status == "resolved"
            else None,
            "summary": f"{rule.name} on {name}: {rule.metric} {shown} {rule.op} {rule.threshold:g}"
            if status == "firing"
            else f"{rule.name} on {name} resolved",
        }

    def _emit(
        self,
        rule: AlertRule,
        target: str,
        name: str,
        labels: dict[str, str],
        state: AlertState,
        change: Change,
        silenced: bool,
    ) -> None:
        if not self.on_change:
            return
        since = state.firing_since or state.active_since or self.clock()
        alert = ActiveAlert(
            rule_id=rule.id,
            rule_name=rule.name,
            target=target,
            target_name=name,
            severity=rule.severity,
            state=state.phase,
            value=state.value,
            since=datetime.fromtimestamp(since, UTC),
            labels=labels,
            silenced=silenced,
            event_id=state.event_id,
        )
        for callback in self.on_change:
            callback(change.value, alert)

    def active(self) -> list[ActiveAlert]:
        """Pending and firing alerts, firing first."""
        found = []
        now = datetime.now(UTC)
        rules = {r.id: r for r in self.rules}
        for (rule_id, target), state in self.states.items():
            if state.phase == AlertPhase.INACTIVE or rule_id not in rules:
                continue
            rule = rules[rule_id]
            name, labels = self.meta.get((rule_id, target), (target, {}))
            since = state.firing_since or state.active_since or time.time()
            found.append(
                ActiveAlert(
                    rule_id=rule_id,
                    rule_name=rule.name,
                    target=target,
                    target_name=name,
                    severity=rule.severity,
                    state=state.phase,
                    value=state.value,
                    since=datetime.fromtimestamp(since, UTC),
                    labels=labels,
                    silenced=is_silenced(labels, self.silences, now),
                    event_id=state.event_id,
                )
            )
        return sorted(found, key=lambda a: (a.state != AlertPhase.FIRING, a.since))

    def firing_count(self) -> int:
        return sum(1 for s in self.states.values() if s.phase == AlertPhase.FIRING)

    async def run(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.evaluate()
            except Exception:
                log.exception("alert evaluation failed")
