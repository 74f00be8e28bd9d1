"""Findings 1 and 10: anonymous logins must not stall the master nor grow its memory.

A real master process at the production hash cost (scrypt N=2^17, 128 MiB per hash) takes
40 parallel logins with random user names, each from its own loopback address (so the
per-address limit does not hide the problem), while an admin keeps reading ``GET /nodes``.
Before the fix the unknown-user dummy hash ran on the event loop and up to 40 hashes ran at
once in the default thread pool: ``GET /nodes`` took seconds and memory grew by hundreds of
MiB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from gdos_sdk.config import MasterAuth
from gdos_sdk.testing import LocalCluster

pytestmark = pytest.mark.e2e

FLOOD = 40
MiB = 1024 * 1024
HASH_MEMORY = 128 * MiB  # scrypt N=2^17, r=8
WORKERS = 2  # auth.hash_workers: hashes computed at once
QUEUE = 32  # auth.hash_queue: logins that may wait for one


@pytest.fixture
def master(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path / "cluster", password_cost=None)  # the production cost
    try:
        cluster.start_master()
        yield cluster
    finally:
        cluster.close()


def _loop_lag(cluster: LocalCluster, token: str) -> float:
    text = httpx.get(
        f"{cluster.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).text
    for line in text.splitlines():
        if line.startswith("gdos_master_event_loop_lag_max_seconds"):
            return float(line.split()[-1])
    raise AssertionError("no loop-lag metric in /metrics")


@pytest.fixture
def flood(master: LocalCluster) -> Iterator[subprocess.Popen[str]]:
    """The flood's clients in their own process, connected and waiting for the signal."""
    script = Path(__file__).with_name("flood_client.py")
    with subprocess.Popen(
        [sys.executable, str(script), master.url, str(FLOOD)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            yield proc
        finally:
            proc.kill()


def _answers(proc: subprocess.Popen[str]) -> list[tuple[int, float, str | None]]:
    """The flood's answers so far (reads until the process has said all, or 10 s)."""
    assert proc.stdout is not None
    answers: list[tuple[int, float, str | None]] = []
    reader = threading.Thread(
        target=lambda: answers.extend(tuple(json.loads(line)) for line in proc.stdout or ()),
        daemon=True,
    )
    reader.start()
    reader.join(10)
    return list(answers)


def test_parallel_anonymous_logins_leave_the_master_responsive(
    master: LocalCluster, flood: subprocess.Popen[str]
) -> None:
    token = master.admin_token()
    assert master.master is not None
    process = psutil.Process(master.master.pid)
    admin = httpx.Client(
        base_url=f"{master.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    with admin:
        for _ in range(3):
            admin.get("/nodes").raise_for_status()  # warm
        time.sleep(1.0)
        baseline_rss = process.memory_info().rss
        lag_before = _loop_lag(master, token)
        assert lag_before < 0.25, f"the master's loop lagged {lag_before:.3f} s before the flood"

        assert flood.stdin is not None
        flood.stdin.write("go\n")
        flood.stdin.flush()
        latencies: list[float] = []
        peak_rss = baseline_rss
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            began = time.monotonic()
            admin.get("/nodes").raise_for_status()
            latencies.append(time.monotonic() - began)
            peak_rss = max(peak_rss, process.memory_info().rss)
            time.sleep(0.1)
        lag = _loop_lag(master, token)  # the largest lag of the last 10-20 s: the flood's
        peak_rss = max(peak_rss, process.memory_info().rss)
    master.master.kill()  # the flood's queued logins would hold a graceful stop for seconds
    answers = _answers(flood)

    assert max(latencies) < 0.5, f"GET /nodes took up to {max(latencies):.3f} s: {latencies}"
    assert lag < 0.25, f"the master's event loop lagged {lag:.3f} s during the flood"
    # At most WORKERS hashes hold their 128 MiB at once; the rest of the flood costs little.
    grown = (peak_rss - baseline_rss) / MiB
    assert grown < WORKERS * HASH_MEMORY / MiB + 48, f"the master grew by {grown:.0f} MiB"
    # More logins than can run or wait are refused at once, with Retry-After.
    refused = [a for a in answers if a[0] == 429]
    assert len(refused) >= FLOOD - WORKERS - QUEUE, answers
    assert all(seconds < 2.0 and retry for _, seconds, retry in refused), refused
    assert (MasterAuth().hash_workers, MasterAuth().hash_queue) == (WORKERS, QUEUE)
    # Every login that was answered failed as it should (no 5xx); 0: cut by the kill.
    assert {status for status, _, _ in answers} <= {0, 401, 429}, answers
