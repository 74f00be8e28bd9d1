"""Metrics and alerts through the SDK against a real app; unknown filter values fail loudly."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import attrs
import httpx
import pandas as pd
import pytest
from quart import Quart

from gdos_master.app import Master
from gdos_sdk import ValidationError
from gdos_sdk.alerts import AlertPhase, AlertRule, RuleTarget
from gdos_sdk.client import AsyncClient
from gdos_sdk.config import MasterAlerts, MasterSettings
from gdos_sdk.display import ModelList
from gdos_sdk.models import MetricRange, Node
from tests.master.test_live import online_node


@pytest.fixture
def settings(settings: MasterSettings) -> MasterSettings:
    # The receiver under test is on loopback, which the destination policy refuses unless
    # allowed (docs/security.md, "Webhook destinations").
    return attrs.evolve(settings, alerts=MasterAlerts(webhook_allow="127.0.0.1/32"))


pytestmark = pytest.mark.anyio


async def _nodes(admin: AsyncClient, count: int) -> list[Node]:
    return [await admin.plan_node(f"host-{i:02d}", alias=f"web-{i:02d}") for i in range(count)]


async def test_query_range_returns_a_series_per_target_and_a_frame(
    admin: AsyncClient, master: Master
) -> None:
    nodes = await _nodes(admin, 3)
    now = int(time.time())
    for i, node in enumerate(nodes):
        for t in range(now - 120, now):
            if i == 2 and t % 10 == 0:
                continue  # gaps: missing seconds are missing, not zero
            master.fleet.store.add(f"node:{node.id}", {"cpu": 10.0 * (i + 1)}, t)

    one = await admin.query_range("cpu", f"node:{nodes[0].id}", start=now - 60, end=now)
    assert isinstance(one, MetricRange) and len(one.series) == 1
    assert one.series[0].name == "web-00" and len(one.series[0].values) == 60
    assert list(one.series[0].ts) == list(range(now - 60, now))
    assert all(v is not None and abs(v - 10.0) < 0.01 for v in one.series[0].values)

    # A start relative to the client's clock, which may have crossed a second since ``now``.
    recent = await admin.query_range("cpu", f"node:{nodes[0].id}", start=timedelta(seconds=30))
    assert 29 <= len(recent.series[0].values) <= 31
    every = await admin.query_range("cpu", "node:*", start=now - 60, end=now)
    assert sorted(s.target for s in every.series) == sorted(f"node:{n.id}" for n in nodes)
    frame = every.to_pandas()
    assert isinstance(frame.index, pd.DatetimeIndex) and str(frame.index.tz) == "UTC"
    assert frame.shape == (60, 3) and frame.index.is_monotonic_increasing
    assert frame.index[0] == pd.Timestamp(now - 60, unit="s", tz="UTC")
    gappy = frame[f"node:{nodes[2].id}"]
    assert gappy.isna().sum() == 6 and abs(gappy.dropna().mean() - 30.0) < 0.05
    named = every.to_pandas(label="name")
    assert sorted(named.columns) == ["web-00", "web-01", "web-02"]
    long = every.to_pandas(long=True)
    assert list(long.columns) == ["time", "series", "name", "value"]
    assert len(long) == 60 + 60 + 54
    assert str(long["time"].dtype) == "datetime64[ns, UTC]" or "UTC" in str(long["time"].dtype)

    stepped = await admin.query_range(
        "cpu",
        [f"node:{nodes[0].id}", f"node:{nodes[1].id}"],
        start=now - 60,
        end=now,
        step=10,
        agg="max",
    )
    assert [(s.step, len(s.values)) for s in stepped.series] == [(10, 6), (10, 6)]
    assert stepped[f"node:{nodes[1].id}"].values[0] == pytest.approx(20.0, rel=1e-3)
    gaps = every[f"node:{nodes[2].id}"]
    # Steps before the first value are left out: when now - 60 is itself a gap, the
    # series starts a second later.
    assert len(gaps.points()) == 54 and gaps.values.count(None) == len(gaps.values) - 54
    assert gaps.values[0] is not None and 5 <= gaps.values.count(None) <= 6

    latest = await admin.latest(f"node:{nodes[1].id}")
    assert latest.values["cpu"].value == pytest.approx(20.0, rel=1e-3)
    latest_frame = latest.to_pandas()
    assert list(latest_frame.index) == ["cpu"] and "UTC" in str(latest_frame["time"].dtype)
    status = await admin.ingest_status()
    assert status.series >= 3


async def test_unknown_filter_values_fail_in_the_sdk_before_sending() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    async with AsyncClient(
        "http://master.test", token="t", transport=httpx.MockTransport(handler), retries=0
    ) as gdos:
        cases = [
            (gdos.list_nodes(status="bogus"), "status", "online"),
            (gdos.list_instances(state="runing"), "state", "running"),
            (gdos.alert_history(state="open"), "state", "resolved"),
            (gdos.alert_history(severity="fatal"), "severity", "critical"),
            (gdos.query_range("cpux", "node:n1"), "metric", "mem_percent"),
            (gdos.query_range("rss", "node:n1"), "metric", "load1"),
            (gdos.query_range("cpu", "node:n1", agg="median"), "agg", "last"),  # type: ignore[arg-type]
        ]
        for coro, field, one_allowed in cases:
            with pytest.raises(ValidationError) as caught:
                await coro
            detail = caught.value.details[0]
            assert detail["path"] == f"query.{field}"
            assert one_allowed in detail["allowed"] and one_allowed in caught.value.message
        with pytest.raises(ValidationError) as caught:
            await gdos.create_alert_rule("r", "cpu", severity="fatal")  # type: ignore[arg-type]
        assert "critical" in caught.value.message
        with pytest.raises(ValidationError, match="metric 'nope' is invalid: one of cpu"):
            await gdos.create_alert_rule("r", "nope")
    assert sent == []


@pytest.mark.parametrize(
    ("path", "field", "allowed"),
    [
        ("/nodes?status=bogus", "status", "planned"),
        ("/instances?state=runing", "state", "backoff"),
        ("/alerts/events?state=open", "state", "resolved"),
        ("/alerts/events?severity=fatal", "severity", "warning"),
        ("/metrics/query?target=node:*&metric=cpu&agg=median", "agg", "last"),
        ("/metrics/query?target=node:*&metric=bogus", "metric", "uptime"),
    ],
)
async def test_unknown_filter_values_get_a_422_naming_the_allowed_values(
    admin: AsyncClient, app: Quart, path: str, field: str, allowed: str
) -> None:
    await admin.plan_node("host-x")
    token = (await admin.create_token("raw")).secret
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://master.test/api/v1") as raw:
        response = await raw.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["path"] == f"query.{field}"
    assert allowed in error["details"][0]["allowed"] and allowed in error["message"]


async def test_known_filter_values_still_filter(admin: AsyncClient) -> None:
    await admin.plan_node("host-a")
    assert [n.hostname for n in await admin.list_nodes(status="planned")] == ["host-a"]
    assert await admin.list_nodes(status="online") == []
    assert await admin.list_instances(state="running") == []


async def test_alerts_in_python(admin: AsyncClient, master: Master) -> None:
    node_id = await online_node(master)  # its heartbeat says cpu 12.5
    receiver = await admin.create_receiver("ops", "http://127.0.0.1:9/hook", secret="s3cret")
    assert receiver.has_secret and isinstance(await admin.list_receivers(), ModelList)
    renamed = await admin.update_receiver(receiver.id, name="ops-2", enabled=False)
    assert renamed.name == "ops-2" and not renamed.enabled
    result = await admin.test_receiver(receiver.id)
    assert not result.ok and result.error  # nothing listens on port 9

    rule = await admin.create_alert_rule(
        "CPU busy",
        "cpu",
        ">",
        50,
        target=RuleTarget(kind="nodes", node_ids=[node_id]),
        severity="critical",
        receivers=[receiver.id],
    )
    assert rule.id and (await admin.get_alert_rule(rule.id)).threshold == 50
    replaced = await admin.replace_alert_rule(rule.id, attrs.evolve(rule, threshold=5))
    assert replaced.threshold == 5 and replaced.id == rule.id
    assert [r.name for r in await admin.list_alert_rules()] == ["CPU busy"]

    master.alerts.evaluate()
    active = await admin.active_alerts()
    assert len(active) == 1 and active[0].state == AlertPhase.FIRING
    with pytest.warns(DeprecationWarning):
        assert active[0].phase == AlertPhase.FIRING
    history = await admin.alert_history(state="firing", severity="critical")
    assert history.total == 1 and history.items[0].state == "firing"
    assert history.items.to_pandas()["state"].tolist() == ["firing"]

    silence = await admin.create_silence({"alertname": "CPU busy"}, timedelta(hours=1))
    assert [s.id for s in await admin.list_silences()] == [silence.id]
    expired = await admin.expire_silence(silence.id)
    assert expired.ends_at <= datetime.now(UTC)
    assert await admin.list_silences() == [] and len(await admin.list_silences(expired=True)) == 1

    await admin.delete_alert_rule(rule.id)
    assert await admin.active_alerts() == []
    resolved = await admin.alert_history(state="resolved")
    assert resolved.total == 1 and resolved.items[0].end_reason == "rule deleted"
    await admin.delete_receiver(receiver.id)
    assert await admin.list_receivers() == []


async def test_active_alert_json_says_state_not_phase(admin: AsyncClient, master: Master) -> None:
    await online_node(master)
    await admin.create_alert_rule("busy", "cpu", ">", 1.0)
    master.alerts.evaluate()
    raw = await admin.send(admin_call_json("/alerts/active"))
    assert raw[0]["state"] == "firing" and "phase" not in raw[0]


def admin_call_json(path: str):  # type: ignore[no-untyped-def]
    from gdos_sdk.client import Call

    return Call("GET", path, lambda r: r.json())


def test_alert_rule_model_round_trips_through_the_sdk_validation() -> None:
    rule = AlertRule(name="x", metric="cpu")
    assert rule.target.kind == "nodes"
