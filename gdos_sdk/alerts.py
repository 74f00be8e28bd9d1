"""Alert rules, silences and the alert state machine (pure: the caller passes ``now``).

Each (rule, target) pair walks ``inactive -> pending -> firing -> (resolved) inactive``:

* the condition is ``value <op> threshold``; it must hold for ``for_seconds`` (the debounce)
  before the alert fires, and a pending alert whose condition lapses is dropped silently;
* a firing alert stays firing while its condition holds, and for ``keep_firing_for``
  seconds after it last held (so a flapping value does not resolve and re-fire);
* with a ``clear_threshold`` (hysteresis) a firing alert only counts as clear once the value
  crosses the clear threshold, e.g. fire above 90 %, clear below 80 %;
* no data (``None``) changes nothing: a node that stops reporting CPU keeps its CPU alert as
  it was; the ``node_offline`` rule is what reports it.

Example::

    state, change = step(rule, AlertState(), value=95.0, now=100.0)
"""

from __future__ import annotations

import enum
import re
import warnings
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

import attrs

from gdos_sdk.constraints import NOT_BLANK, Check
from gdos_sdk.display import displayed
from gdos_sdk.errors import ValidationError

__all__ = [
    "METRIC",
    "METRIC_KINDS",
    "STATUS_METRICS",
    "ActiveAlert",
    "AlertEvent",
    "AlertPhase",
    "AlertRule",
    "AlertState",
    "Change",
    "DeliveryResult",
    "EventState",
    "Matcher",
    "Receiver",
    "ReceiverCreate",
    "ReceiverPatch",
    "RuleTarget",
    "Severity",
    "Silence",
    "SilenceCreate",
    "breaching",
    "delivery_delays",
    "is_silenced",
    "matches",
    "step",
    "validate_rule",
]

Op = Literal[">", ">=", "<", "<=", "==", "!="]
Severity = Literal["info", "warning", "critical"]
#: an alert event's state: ``firing`` until it ``resolved`` (see :class:`AlertPhase` for the
#: states of a live alert, ``pending`` and ``firing``)
EventState = Literal["firing", "resolved"]

#: metric name -> which targets it applies to
METRIC_KINDS: dict[str, str] = {
    "cpu": "any",
    "mem_percent": "nodes",
    "mem_used": "nodes",
    "swap_used": "nodes",
    "disk_percent": "nodes",
    "load1": "nodes",
    "load5": "nodes",
    "load15": "nodes",
    "net_rx": "nodes",
    "net_tx": "nodes",
    "disk_read": "nodes",
    "disk_write": "nodes",
    "rss": "instances",
    "io_read": "instances",
    "io_write": "instances",
    "threads": "instances",
    "open_files": "instances",
    "restarts": "instances",
    "node_offline": "nodes",
    "instance_down": "instances",
    "instance_failed": "instances",
    "instance_unhealthy": "instances",
}
#: metrics that are 0/1 facts about status rather than samples
STATUS_METRICS = frozenset(
    {"node_offline", "instance_down", "instance_failed", "instance_unhealthy"}
)
#: A rule's metric: a name of METRIC_KINDS, optionally ``:`` and an argument (``disk_percent:/``).
METRIC = Check(
    pattern=r"^(?:" + "|".join(METRIC_KINDS) + r")(?::[\s\S]*)?$",
    hint=f"one of {', '.join(METRIC_KINDS)}, optionally followed by ':' and an argument",
)
_NOT_NEGATIVE = Check(minimum=0)
_HTTP_URL = Check(pattern=r"^https?://[^\s/]+", hint="an http:// or https:// URL")


class AlertPhase(enum.StrEnum):
    """Where a (rule, target) pair is: an active alert is ``pending`` or ``firing``."""

    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


class Change(enum.StrEnum):
    """What :func:`step` reports when the phase moved."""

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"  # pending, then the condition lapsed before ``for``


@displayed
@attrs.frozen
class RuleTarget:
    """Which targets a rule watches.

    ``kind`` ``nodes``: every node, or those in ``node_ids``, or those carrying all
    ``labels``. ``kind`` ``instances``: every instance, or those of ``system_id`` /
    ``module_id``.
    """

    kind: Literal["nodes", "instances"] = "nodes"
    node_ids: list[str] = attrs.field(factory=list)
    labels: dict[str, str] = attrs.field(factory=dict)
    system_id: str | None = None
    module_id: str | None = None


@displayed
@attrs.frozen
class AlertRule:
    """A threshold on a metric of a set of targets (``id`` is set by the master)."""

    name: str = attrs.field(validator=Check(pattern=NOT_BLANK))
    metric: str = attrs.field(validator=METRIC)
    op: Op = ">"
    threshold: float = 0.0
    target: RuleTarget = attrs.field(factory=RuleTarget)
    for_seconds: float = attrs.field(default=0.0, validator=_NOT_NEGATIVE)
    keep_firing_for: float = attrs.field(default=0.0, validator=_NOT_NEGATIVE)
    clear_threshold: float | None = None
    severity: Severity = "warning"
    labels: dict[str, str] = attrs.field(factory=dict)
    receivers: list[str] = attrs.field(factory=list)  # empty: every enabled receiver
    enabled: bool = True
    description: str = ""
    id: str = ""


@attrs.define
class AlertState:
    """The state of one (rule, target) pair; persisted on every change."""

    phase: AlertPhase = AlertPhase.INACTIVE
    active_since: float | None = None  # condition first held (pending start)
    firing_since: float | None = None
    last_true: float | None = None  # condition last held
    value: float | None = None
    event_id: int | None = None  # the persisted firing event


def _compare(op: str, value: float, threshold: float) -> bool:
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    if op == "==":
        return value == threshold
    return value != threshold


def breaching(rule: AlertRule, value: float, *, firing: bool) -> bool:
    """Whether ``value`` breaches the rule; a firing alert uses the clear threshold."""
    if firing and rule.clear_threshold is not None and rule.op in (">", ">=", "<", "<="):
        # Still bad until the value crosses the clear threshold the other way.
        if rule.op in (">", ">="):
            return value > rule.clear_threshold
        return value < rule.clear_threshold
    return _compare(rule.op, value, rule.threshold)


def step(
    rule: AlertRule, state: AlertState, value: float | None, now: float
) -> tuple[AlertState, Change | None]:
    """Advance one (rule, target) by one evaluation; return the new state and any change."""
    new = attrs.evolve(state, value=value if value is not None else state.value)
    if value is None:
        return new, None  # no data: nothing to decide
    holds = breaching(rule, value, firing=state.phase == AlertPhase.FIRING)
    if holds:
        new.last_true = now
    if state.phase == AlertPhase.INACTIVE:
        if not holds:
            return new, None
        new.active_since = now
        if rule.for_seconds <= 0:
            new.phase, new.firing_since = AlertPhase.FIRING, now  # INACTIVE -> FIRING
            return new, Change.FIRING
        new.phase = AlertPhase.PENDING  # INACTIVE -> PENDING
        return new, Change.PENDING
    if state.phase == AlertPhase.PENDING:
        if not holds:
            return AlertState(value=value), Change.CANCELLED  # PENDING -> INACTIVE
        since = state.active_since if state.active_since is not None else now
        if now - since >= rule.for_seconds:
            new.phase, new.firing_since = AlertPhase.FIRING, now  # PENDING -> FIRING
            return new, Change.FIRING
        return new, None
    # FIRING
    if holds:
        return new, None
    last_true = state.last_true if state.last_true is not None else now
    if now - last_true >= rule.keep_firing_for:
        return AlertState(value=value), Change.RESOLVED  # FIRING -> INACTIVE
    return new, None


# --- silences -------------------------------------------------------------------------------


@displayed
@attrs.frozen
class Matcher:
    """``label`` equals ``value`` (or matches it as a full regular expression)."""

    label: str
    value: str
    regex: bool = False


@displayed
@attrs.frozen
class Silence:
    id: str
    matchers: list[Matcher]
    starts_at: datetime
    ends_at: datetime
    comment: str = ""
    created_by: str = ""


def matches(matchers: list[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches ``labels`` (an empty list matches nothing)."""
    if not matchers:
        return False
    for m in matchers:
        actual = labels.get(m.label, "")
        if m.regex:
            if re.fullmatch(m.value, actual) is None:
                return False
        elif actual != m.value:
            return False
    return True


def is_silenced(labels: Mapping[str, str], silences: list[Silence], now: datetime) -> bool:
    return any(s.starts_at <= now < s.ends_at and matches(s.matchers, labels) for s in silences)


# --- validation and delivery ----------------------------------------------------------------


def validate_rule(rule: AlertRule) -> None:
    """Raise ValidationError naming each field that makes no sense."""
    problems: list[dict[str, str]] = []

    def bad(path: str, message: str) -> None:
        problems.append({"path": path, "message": message})

    # Single fields (name, metric, for_seconds ...) are checked by the model's own Checks.
    kind = METRIC_KINDS[rule.metric.split(":", 1)[0]]
    if kind != "any" and kind != rule.target.kind:
        bad("$.target.kind", f"metric {rule.metric!r} applies to {kind}, not {rule.target.kind}")
    if rule.clear_threshold is not None:
        if rule.op in (">", ">=") and rule.clear_threshold > rule.threshold:
            bad("$.clear_threshold", "must not be above the threshold for a '>' rule")
        if rule.op in ("<", "<=") and rule.clear_threshold < rule.threshold:
            bad("$.clear_threshold", "must not be below the threshold for a '<' rule")
        if rule.op in ("==", "!="):
            bad("$.clear_threshold", "hysteresis needs a <, <=, > or >= rule")
    if rule.target.kind == "nodes" and (rule.target.system_id or rule.target.module_id):
        bad("$.target", "system_id/module_id select instances, not nodes")
    if rule.target.kind == "instances" and (rule.target.node_ids or rule.target.labels):
        bad("$.target", "node_ids/labels select nodes, not instances")
    if problems:
        summary = "; ".join(f"{p['message']} @ {p['path']}" for p in problems)
        raise ValidationError(f"invalid alert rule: {summary}", details=problems)


def delivery_delays(attempts: int = 5, initial: float = 1.0) -> list[float]:
    """Waits before each retry of a failed webhook delivery: 1, 2, 4, 8 ... seconds."""
    return [initial * 2**i for i in range(max(0, attempts - 1))]


# --- API shapes -----------------------------------------------------------------------------


@displayed
@attrs.frozen
class AlertEvent:
    """A firing (or since resolved) alert, as persisted."""

    id: int
    rule_id: str
    rule_name: str
    target: str
    target_name: str
    severity: str
    state: EventState
    value: float | None
    started_at: datetime
    labels: dict[str, str] = attrs.field(factory=dict)
    ended_at: datetime | None = None
    end_reason: str = ""
    silenced: bool = False


@displayed
@attrs.frozen
class ActiveAlert:
    """A (rule, target) pair whose ``state`` is ``pending`` or ``firing`` right now.

    ``state`` is named as in the history (:class:`AlertEvent`) and in the
    ``/alerts/events?state=`` filter; it was called ``phase`` before 0.2.
    """

    rule_id: str
    rule_name: str
    target: str
    target_name: str
    severity: str
    state: AlertPhase
    value: float | None
    since: datetime
    labels: dict[str, str] = attrs.field(factory=dict)
    silenced: bool = False
    event_id: int | None = None

    @property
    def phase(self) -> AlertPhase:
        """Deprecated: the old name of :attr:`state` (removed in 0.3)."""
        warnings.warn(
            "ActiveAlert.phase is deprecated: use ActiveAlert.state", DeprecationWarning, 2
        )
        return self.state


@displayed
@attrs.frozen
class SilenceCreate:
    matchers: list[Matcher] = attrs.field(validator=Check(min_items=1))
    ends_at: datetime
    starts_at: datetime | None = None
    comment: str = ""


@displayed
@attrs.frozen
class Receiver:
    """A webhook; its secret (for the HMAC signature header) is never shown.

    ``url`` shows scheme, host and port only when the rest may hold a credential
    (``url_redacted``): the stored URL is write-only (see :func:`gdos_sdk.redaction.mask_url`).
    """

    id: str
    name: str
    url: str
    enabled: bool
    has_secret: bool
    created_at: datetime
    url_redacted: bool = False


@displayed
@attrs.frozen
class ReceiverCreate:
    name: str = attrs.field(validator=Check(pattern=NOT_BLANK))
    url: str = attrs.field(validator=_HTTP_URL)
    secret: str = ""
    enabled: bool = True


@displayed
@attrs.frozen
class ReceiverPatch:
    """Fields left ``None`` stay as they are; a ``url`` equal to the shown (masked) one too."""

    name: str | None = attrs.field(default=None, validator=Check(pattern=NOT_BLANK))
    url: str | None = attrs.field(default=None, validator=_HTTP_URL)
    secret: str | None = None
    enabled: bool | None = None


@displayed
@attrs.frozen
class DeliveryResult:
    ok: bool
    status: int | None = None
    error: str = ""
    attempts: int = 1
