"""/metrics: Prometheus naming, HELP and TYPE everywhere, counters, OpenMetrics, promtool."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from quart import Quart

from gdos_master.app import Master
from gdos_master.prometheus import Family, RateTotals, collect, render
from gdos_sdk.client import AsyncClient
from gdos_sdk.models import InstanceSample

from .test_live import online_node, sample

pytestmark = pytest.mark.anyio

UNITS = ("bytes", "seconds", "ratio")


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:  # CI installs Debian's prometheus package (.ci/run)
        pytest.fail("promtool is missing: apt-get install prometheus")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.fixture
async def fleet_master(master: Master, admin: AsyncClient, make_zip: object) -> Master:
    """One online node and one instance (on a planned node), each with 3 s of samples."""
    node_id = await online_node(master)
    start = master.fleet.nodes[node_id].latest_ts  # online_node's first sample
    for i in (1, 2, 3):
        master.fleet.heartbeat(node_id, [sample(start + i)], [])
    await admin.upload_package(make_zip())  # type: ignore[operator]
    system = await admin.create_system("shop")
    module = await admin.create_module(system.id, "web", "demo", "1.0.0")
    planned = await admin.plan_node("later-1")
    instance = await admin.deploy(module.id, planned.id, start=False, wait="started")
    batch = [
        InstanceSample(start + i, instance.id, 50.0, 4096, 1000.0, 10.0, 3, 7, 2) for i in (1, 2, 3)
    ]
    master.fleet.heartbeat(planned.id, [], batch)
    return master


def values(families: list[Family], name: str) -> list[float]:
    (family,) = [f for f in families if f.name == name]
    return [v for _, v in family.rows]


async def test_every_family_follows_the_naming_conventions(fleet_master: Master) -> None:
    families = collect(fleet_master)
    names = [f.name for f in families]
    assert len(names) == len(set(names))
    for family in families:
        assert re.fullmatch(r"gdos_[a-z0-9_]+", family.name), family.name
        assert family.help and family.kind in {"gauge", "counter"}
        assert family.name.endswith("_total") == (family.kind == "counter"), family.name
        base = family.name.removesuffix("_total")
        if family.unit:
            assert family.unit in UNITS and base.endswith(f"_{family.unit}"), family.name
        for unit in UNITS:  # a unit in the name is declared (OpenMetrics # UNIT)
            if base.endswith(f"_{unit}"):
                assert family.unit == unit, family.name
        for old in ("mem_used", "rss", "disk_read", "net_rx", "io_read", "uptime"):
            assert not family.name.endswith(old), family.name


async def test_values_are_in_base_units_and_counters_add_up(fleet_master: Master) -> None:
    families = collect(fleet_master)
    assert values(families, "gdos_node_up") == [1.0]
    assert values(families, "gdos_node_cpu_usage_ratio") == [0.125]  # 12.5 %
    assert values(families, "gdos_node_memory_usage_ratio") == [0.25]
    assert values(families, "gdos_node_memory_used_bytes") == [2_000_000_000]
    # 100 B/s read and 200 B/s written over the 3 s after the first sample.
    assert values(families, "gdos_node_disk_read_bytes_total") == [300.0]
    assert values(families, "gdos_node_disk_written_bytes_total") == [600.0]
    (boot,) = values(families, "gdos_node_boot_time_seconds")
    assert abs(boot - (time.time() + 3 - 1000)) < 5
    # The instance (no earlier sample): 50 % of a core for 2 s, 1000 B/s read.
    assert values(families, "gdos_instance_cpu_seconds_total") == [1.0]
    assert values(families, "gdos_instance_read_bytes_total") == [2000.0]
    assert values(families, "gdos_instance_written_bytes_total") == [20.0]
    assert values(families, "gdos_instance_restarts_total") == [0.0]
    (build,) = [f for f in families if f.name == "gdos_build_info"]
    assert build.rows[0][0]["version"]
    # Every instance family names the version the instance runs (it changes with a rollout).
    instance_families = [f for f in families if f.name.startswith("gdos_instance_")]
    with_rows = {f.name for f in instance_families if f.rows}
    assert {
        "gdos_instance_running",
        "gdos_instance_restarts_total",
        "gdos_instance_cpu_seconds_total",
        "gdos_instance_read_bytes_total",
        "gdos_instance_written_bytes_total",
    } <= with_rows
    for family in instance_families:
        for labels, _ in family.rows:
            assert labels["version"] == "1.0.0" and labels["package"] == "demo", family.name


async def test_promtool_accepts_the_text_format(fleet_master: Master) -> None:
    text = render(collect(fleet_master))
    assert "# TYPE gdos_instance_restarts_total counter" in text
    assert "# TYPE gdos_node_memory_used_bytes gauge" in text
    promtool_check(text)


async def test_openmetrics_parses_strictly(fleet_master: Master) -> None:
    text = render(collect(fleet_master), openmetrics=True)
    assert text.endswith("\n# EOF\n")
    assert "# TYPE gdos_node_disk_read_bytes counter" in text
    assert "# UNIT gdos_node_disk_read_bytes bytes" in text
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert parsed["gdos_node_disk_read_bytes"].type == "counter"
    assert parsed["gdos_node_disk_read_bytes"].unit == "bytes"
    (read,) = parsed["gdos_node_disk_read_bytes"].samples
    assert read.name == "gdos_node_disk_read_bytes_total" and read.value == 300.0
    assert parsed["gdos_node_cpu_usage_ratio"].samples[0].value == 0.125


async def test_the_scraper_chooses_the_format(
    fleet_master: Master, app: Quart, admin: AsyncClient
) -> None:
    token = (await admin.create_token("prometheus")).secret
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    plain = await client.get("/metrics", headers=auth)
    assert plain.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# EOF" not in (await plain.get_data()).decode()
    # What Prometheus 2.x sends.
    accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1"
        ";q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    om = await client.get("/metrics", headers={**auth, "Accept": accept})
    assert om.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = (await om.get_data()).decode()
    assert text.endswith("# EOF\n")
    assert {f.name for f in text_string_to_metric_families(text)} >= {"gdos_node_up"}
    refused = await client.get("/metrics")
    assert refused.status_code == 401


def test_rate_totals_integrate_and_skip_gaps_and_repeats() -> None:
    totals = RateTotals(max_gap=60)
    names = ("rx",)
    totals.add("n", 100.0, {"rx": 50.0}, names)  # the first sample only starts the clock
    assert totals.get("n") == {}
    totals.add("n", 101.0, {"rx": 10.0}, names)
    totals.add("n", 101.0, {"rx": 10.0}, names)  # a repeat adds nothing
    totals.add("n", 100.5, {"rx": 10.0}, names)  # nor a late one
    totals.add("n", 103.0, {"rx": 5.0}, names)
    assert totals.get("n") == {"rx": 20.0}
    totals.add("n", 500.0, {"rx": 1000.0}, names)  # after an outage: not filled in
    totals.add("n", 501.0, {"rx": 1.0, "other": 9.0}, names)
    totals.add("n", 502.0, {"rx": math.nan}, names)
    assert totals.get("n") == {"rx": 21.0}
    totals.drop("n")
    assert totals.get("n") == {}


def test_rate_totals_add_many_is_add_sample_by_sample() -> None:
    # Batches with repeats, late samples, a gap past max_gap, zeros, NaN and infinity:
    # the column-at-a-time sums are the per-sample sums, to the last bit.
    times = [100.0, 101.0, 101.0, 100.5, 103.5, 104.25, 300.0, 301.0, 302.0, 303.0, 304.0]
    rx = [5.0, 10.0, 99.0, 7.0, 0.1, 0.0, 1e3, 3.3, math.nan, math.inf, 2.5]
    tx = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, -8.0, 9.0, 10.0, 11.0]
    one, many = RateTotals(max_gap=60), RateTotals(max_gap=60)
    for i, ts in enumerate(times):
        one.add("n", ts, {"rx": rx[i], "tx": tx[i]}, ("rx", "tx"))
    for start in (0, 3, 6, 9):
        stop = start + 3
        many.add_many("n", times[start:stop], {"rx": rx[start:stop], "tx": tx[start:stop]})
    assert many.get("n") == one.get("n")
    assert many.get("n")["rx"] > 0
    fresh = RateTotals()
    fresh.add_many("m", [5.0], {"rx": [1.0]})  # one sample only starts the clock
    assert fresh.get("m") == {}
