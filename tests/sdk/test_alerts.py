"""The alert state machine with a fake clock: debounce, hysteresis, keep_firing_for, silences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest

from gdos_sdk.alerts import (
    AlertPhase,
    AlertRule,
    AlertState,
    Change,
    Matcher,
    RuleTarget,
    Silence,
    delivery_delays,
    is_silenced,
    step,
    validate_rule,
)
from gdos_sdk.codec import converter
from gdos_sdk.errors import ValidationError

CPU = AlertRule(name="cpu high", metric="cpu", op=">", threshold=90, id="r1")


def run(
    rule: AlertRule, values: list[float | None], start: float = 0.0, state: AlertState | None = None
) -> tuple[AlertState, list[tuple[float, Change]]]:
    """Feed one value per second; return the final state and (time, change) pairs."""
    state = state or AlertState()
    changes = []
    for i, value in enumerate(values):
        now = start + i
        state, change = step(rule, state, value, now)
        if change is not None:
            changes.append((now, change))
    return state, changes


def test_fires_at_once_without_for() -> None:
    state, changes = run(CPU, [10, 95, 95])
    assert changes == [(1, Change.FIRING)] and state.phase == AlertPhase.FIRING


def test_debounce_needs_the_full_for_period() -> None:
    rule = attrs.evolve(CPU, for_seconds=5)
    _, changes = run(rule, [95, 95, 95, 95, 10, 95, 95, 95, 95, 95, 95])
    # pending at 0, cancelled at 4 (only 4 s), pending again at 5, firing 5 s later at 10
    assert changes == [
        (0, Change.PENDING),
        (4, Change.CANCELLED),
        (5, Change.PENDING),
        (10, Change.FIRING),
    ]


def test_hysteresis_absorbs_flapping_around_the_threshold() -> None:
    rule = attrs.evolve(CPU, clear_threshold=80)
    flapping = [95, 89, 91, 85, 92, 88, 81, 79, 85, 95]
    _, changes = run(rule, flapping)
    assert changes == [(0, Change.FIRING), (7, Change.RESOLVED), (9, Change.FIRING)]
    _, without = run(CPU, flapping)  # the same input without hysteresis flaps
    assert len(without) == 7


def test_keep_firing_for_holds_through_a_dip() -> None:
    rule = attrs.evolve(CPU, keep_firing_for=3)
    _, changes = run(rule, [95, 50, 50, 95, 50, 50, 50, 50])
    assert changes == [(0, Change.FIRING), (6, Change.RESOLVED)]  # 3 s after it last held


def test_no_data_changes_nothing() -> None:
    state, changes = run(CPU, [95, None, None, None])
    assert changes == [(0, Change.FIRING)] and state.phase == AlertPhase.FIRING
    assert state.value == 95


def test_state_survives_a_restart_through_the_codec() -> None:
    rule = attrs.evolve(CPU, for_seconds=10)
    state, changes = run(rule, [95] * 6)
    assert changes == [(0, Change.PENDING)]
    saved = converter.unstructure(state)
    restored = converter.structure(saved, AlertState)
    _, after = run(rule, [95] * 6, start=6, state=restored)
    assert after == [(10, Change.FIRING)]  # the debounce continued, not restarted
    firing, _ = run(rule, [95] * 12)
    again, none = run(
        rule,
        [95, 95],
        start=20,
        state=converter.structure(converter.unstructure(firing), AlertState),
    )
    assert none == [] and again.phase == AlertPhase.FIRING  # no duplicate firing


def test_less_than_rules_and_status_metrics() -> None:
    free = AlertRule(
        id="r", name="low", metric="mem_percent", op="<", threshold=10, clear_threshold=20
    )
    _, changes = run(free, [50, 5, 15, 25])
    assert changes == [(1, Change.FIRING), (3, Change.RESOLVED)]
    offline = AlertRule(id="o", name="offline", metric="node_offline", op="==", threshold=1)
    _, changes = run(offline, [0, 1, 1, 0])
    assert changes == [(1, Change.FIRING), (3, Change.RESOLVED)]


def test_silences_match_by_labels_and_time() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    silence = Silence(
        id="s",
        matchers=[Matcher("alertname", "cpu high"), Matcher("hostname", "web-.*", regex=True)],
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
    )
    labels = {"alertname": "cpu high", "hostname": "web-3", "severity": "warning"}
    assert is_silenced(labels, [silence], now)
    assert not is_silenced({**labels, "hostname": "db-1"}, [silence], now)
    assert not is_silenced(labels, [silence], now + timedelta(hours=2))
    assert not is_silenced(labels, [attrs.evolve(silence, matchers=[])], now)


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"metric": "nope"}, "$.metric"),
        ({"metric": "rss"}, "$.target.kind"),
        ({"for_seconds": -1}, "$.for_seconds"),
        ({"clear_threshold": 95}, "$.clear_threshold"),
        ({"name": " "}, "$.name"),
        ({"target": RuleTarget(kind="nodes", system_id="x")}, "$.target"),
    ],
)
def test_rule_validation_names_the_field(changes: dict, path: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_rule(attrs.evolve(CPU, **changes))
    assert path in [p["path"] for p in caught.value.details]


def test_delivery_backoff() -> None:
    assert delivery_delays(5, 1.0) == [1, 2, 4, 8]
