"""Per-second metrics end to end: worker samples -> master series -> API and /metrics."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gdos_sdk import NotFoundError
from gdos_sdk.models import MetricSeries
from gdos_sdk.testing import LocalCluster, wait_until

from ..master.test_prometheus import promtool_check
from .test_lifecycle import setup_module_instance

pytestmark = pytest.mark.e2e


def test_series_latest_and_prometheus(running: LocalCluster, pack: Callable[..., Path]) -> None:
    with running.client() as gdos:
        node_id = running.wait_worker_connected(running.workers[0])
        instance = setup_module_instance(gdos, node_id, pack("sleeper", stop_timeout=1), start=True)
        began = time.time()
        time.sleep(4.5)

        def query(target: str, metric: str) -> MetricSeries:
            found = gdos.query_range(metric, target, start=began, end=time.time() + 1)
            assert [s.target for s in found.series] == [target]
            return found.series[0]

        cpu = query(f"node:{node_id}", "cpu").points()
        assert len(cpu) >= 3
        stamps = [ts for ts, _ in cpu]
        assert all(b - a >= 1 for a, b in itertools.pairwise(stamps))
        assert all(0 <= v <= 100 for _, v in cpu)
        rss = query(f"instance:{instance.id}", "rss").points()
        assert len(rss) >= 3 and all(v > 1_000_000 for _, v in rss)
        latest = gdos.latest(f"node:{node_id}")
        assert {"cpu", "mem_percent", "load1", "net_rx", "disk_percent:/"} <= set(latest.values)

        token = running.admin_token()
        text = httpx.get(
            f"{running.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=5
        ).text
        assert f'gdos_node_up{{node_id="{node_id}"' in text
        assert "# TYPE gdos_instance_resident_memory_bytes gauge" in text
        assert "# TYPE gdos_instance_restarts_total counter" in text
        # Every instance family says which version the instance runs.
        rows = [line for line in text.splitlines() if f'instance_id="{instance.id}"' in line]
        assert any(line.startswith("gdos_instance_resident_memory_bytes{") for line in rows)
        assert all('version="1.0.0"' in line for line in rows), rows
        assert "gdos_master_heartbeats_total" in text
        promtool_check(text)  # a real worker's samples, as Prometheus' own linter sees them
        assert httpx.get(f"{running.url}/metrics", timeout=5).status_code == 401

        gdos.destroy_instance(instance.id)
        with pytest.raises(NotFoundError):
            query(f"instance:{instance.id}", "rss")


def test_unwatched_node_of_a_large_fleet_pushes_in_batches(cluster: LocalCluster) -> None:
    # A budget of 0.25 heartbeats/s makes even one unwatched node push every 4 s.
    cluster.start_master(env={"OPS_MASTER_FLEET_HEARTBEAT_BUDGET": "0.25"})
    worker = cluster.start_worker()
    with cluster.client() as gdos:
        node_id = cluster.wait_worker_connected(worker)
        time.sleep(9)
        assert gdos.get_node(node_id).status.value == "online"  # no flapping at 4 s pushes
        text = httpx.get(
            f"{cluster.url}/metrics", headers={"Authorization": f"Bearer {cluster.admin_token()}"}
        ).text
        beats = next(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("gdos_master_heartbeats_total")
        )
        assert beats <= 5  # about one per 4 s, not one per second
        # ...but every second's sample still arrives, in batches.
        points = gdos.query_range("cpu", f"node:{node_id}").series[0].points()
        assert len(points) >= 7
        wait_until(lambda: gdos.get_node(node_id).status.value == "online", what="online")
