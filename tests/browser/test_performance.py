"""The console stays fast: 5,000 nodes render and scroll smoothly; the login page is small.

Figures are printed (run with ``-s`` or see the summary) and recorded in docs/benchmarks.md.
The assertions allow twice the targets (first render 1 s, no long task over 100 ms while
scrolling) so a busy CI machine does not fail them; the printed figures are what count.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, Response

from gdos_master.db import Database
from gdos_master.fleet import Fleet
from gdos_master.nodes import Nodes
from gdos_sdk.models import PlannedNodeCreate
from gdos_sdk.testing import LocalCluster, wait_until

from .conftest import login

NODES = 5_000
# The live test's fleet: 1,000 simulated nodes in the suite (a loaded 2-core CI machine
# timed the 5,000-node run out); ``nox -s bench`` runs it with GDOS_LIVE_NODES=5000.
LIVE_NODES = int(os.environ.get("GDOS_LIVE_NODES", "1000"))
FLEET_SIM = Path(__file__).resolve().parents[2] / "tools" / "fleet_sim.py"

# Long tasks (main-thread work over 50 ms) are collected from the first byte of the page on.
OBSERVE_LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longTasks.push([e.startTime, e.duration]);
}).observe({ type: 'longtask', buffered: true });
"""

# Scroll the node table from top to bottom one screen-ish per frame, then jump back up in
# big steps, recording every frame's duration.
SCROLL = """
async () => {
  const body = document.querySelector('[data-test=vt-body]');
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  const start = performance.now();
  const frames = [];
  let last = performance.now();
  const step = async (top) => {
    body.scrollTop = top;
    await frame();
    const now = performance.now();
    frames.push(now - last);
    last = now;
  };
  const height = body.scrollHeight;
  for (let top = 0; top < height; top += 700) await step(top);
  for (let top = height; top > 0; top -= 15000) await step(top);
  await step(0);
  frames.sort((a, b) => a - b);
  return {
    start,
    ms: performance.now() - start,
    frames: frames.length,
    p95: frames[Math.floor(frames.length * 0.95)],
    worst: frames[frames.length - 1],
  };
}
"""


def seed_planned_nodes(data_dir: Path, count: int) -> None:
    """Register ``count`` planned nodes in the master's database before it starts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database.open(sqlite_path=data_dir / "ops.db")
    try:
        nodes = Nodes(db, Fleet(heartbeat_interval=1, offline_grace=5), require_approval=False)
        with db.transaction():
            for i in range(count):
                nodes.plan(
                    PlannedNodeCreate(
                        hostname=f"rack{i // 40:03d}-node{i % 40:02d}.dc1.example",
                        alias=f"web-{i:04d}" if i % 3 == 0 else "",
                        addresses=[f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}"],
                        labels={"rack": f"r{i // 40:03d}"},
                    )
                )
    finally:
        db.close()


@pytest.fixture(scope="module")
def big_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("fleet") / "cluster")
    try:
        seed_planned_nodes(local.root / "master", NODES)
        local.start_master()
        yield local
    finally:
        local.close()


def test_five_thousand_nodes_render_and_scroll(
    page: Page, big_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    login(page, big_cluster.url, big_cluster.admin_password)
    page.add_init_script(OBSERVE_LONG_TASKS)

    started = time.perf_counter()
    page.goto(f"{big_cluster.url}/nodes")
    page.wait_for_function("() => performance.getEntriesByName('gdos:nodes-rendered').length > 0")
    wall = (time.perf_counter() - started) * 1000
    first_render = page.evaluate("performance.getEntriesByName('gdos:nodes-rendered')[0].startTime")
    shown = page.inner_text("[data-test=nodes-shown]")
    assert shown.replace(" ", "").endswith(f"{NODES}"), shown
    rows = page.locator("[data-test=vt-body] [data-row]").count()
    assert 10 < rows < 80, f"{rows} rows in the DOM: the table is not virtualised"

    load_tasks = page.evaluate("window.__longTasks")
    scroll = page.evaluate(SCROLL)
    scroll_tasks = [d for s, d in page.evaluate("window.__longTasks") if s >= scroll["start"]]

    # Sorting all rows by name and filtering them stay interactive too.
    sort_started = page.evaluate("performance.now()")
    page.click("[data-test=th-name]")
    page.wait_for_function("() => document.querySelector('[data-test=th-name] .on') !== null")
    sort_ms = (
        page.evaluate("new Promise((r) => requestAnimationFrame(() => r(performance.now())))")
        - sort_started
    )
    page.fill("[data-test=nodes-search]", "rack042")
    page.wait_for_function(
        "() => document.querySelector('[data-test=nodes-shown]').innerText.startsWith('40 ')"
    )

    figures = {
        "first_render_ms": round(first_render),
        "wall_ms": round(wall),
        "load_long_tasks_ms": [round(d) for _, d in load_tasks],
        "scroll_ms": round(scroll["ms"]),
        "scroll_frames": scroll["frames"],
        "scroll_frame_p95_ms": round(scroll["p95"], 1),
        "scroll_frame_worst_ms": round(scroll["worst"], 1),
        "scroll_long_tasks_ms": [round(d) for d in scroll_tasks],
        "sort_ms": round(sort_ms),
    }
    with capsys.disabled():
        print(f"\n5,000-node table: {figures}")
    assert first_render < 2000
    assert max(scroll_tasks, default=0) < 200


@pytest.fixture(scope="module")
def live_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A master with LIVE_NODES online nodes: the fleet simulator in its own process."""
    local = LocalCluster(tmp_path_factory.mktemp("live-fleet") / "cluster")
    sim: subprocess.Popen[bytes] | None = None
    try:
        # This test is about the table under a live stream, not about offline detection
        # (tests/master/test_fleet.py and the fleet benchmark cover that): on a loaded CI machine
        # the simulator, the master and Chromium share two cores and a simulated node's heartbeat
        # can be late by more than the default 5 s grace, so the grace is wide here.
        local.start_master(
            env={"OPS_MASTER_LOG_LEVEL": "warning", "OPS_MASTER_FLEET_OFFLINE_GRACE": "60"}
        )
        sim = subprocess.Popen(
            [
                *(sys.executable, str(FLEET_SIM), "--master", local.url),
                # (joined with '=': a random token may start with '-', which argparse
                # would take for a flag)
                *(f"--join-token={local.join_token}", "--nodes", str(LIVE_NODES)),
            ],
            stdout=subprocess.DEVNULL,
        )
        with httpx.Client(
            base_url=local.url, headers={"Authorization": f"Bearer {local.admin_token()}"}
        ) as http:

            def all_online() -> bool:
                assert sim is not None and sim.poll() is None, "the fleet simulator exited"
                status = http.get("/api/v1/metrics/ingest").json()
                return bool(status["nodes_online"] == LIVE_NODES)

            wait_until(all_online, timeout=240, interval=1.0, what=f"{LIVE_NODES} simulated nodes")
        yield local
    finally:
        if sim is not None:
            sim.terminate()
            try:
                sim.wait(20)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
        local.close()


def test_simulated_nodes_update_live(
    page: Page, live_fleet: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Online nodes pushing samples: the table shows them all and its bars move."""
    login(page, live_fleet.url, live_fleet.admin_password)
    page.add_init_script(OBSERVE_LONG_TASKS)
    page.goto(f"{live_fleet.url}/nodes")
    page.wait_for_function("() => performance.getEntriesByName('gdos:nodes-rendered').length > 0")
    first_render = page.evaluate("performance.getEntriesByName('gdos:nodes-rendered')[0].startTime")
    assert page.inner_text("[data-test=nodes-shown]").replace(" ", "").endswith(f"{LIVE_NODES}")
    # The header counts the fleet; on a loaded CI machine a simulated node may be between a
    # dropped connection and its reconnect, so all but a handful must be online.
    header = page.get_by_text(re.compile(rf"\d+ of {LIVE_NODES} nodes online"))
    header.wait_for()
    assert int(header.inner_text().split()[0]) >= LIVE_NODES * 0.99, header.inner_text()
    online = page.locator("[data-test=vt-body] [data-row] [data-state=online]").count()
    assert online > 10, f"only {online} visible rows are online"

    # Every visible row has live CPU/memory bars, and they change as batches arrive (an
    # unwatched node of a 5,000-node fleet pushes every 10 s).
    cells = "[data-test=vt-body] [data-row] .pct"
    page.wait_for_function(
        f"() => document.querySelectorAll('{cells}').length > 20", timeout=30_000
    )
    before = page.locator(cells).all_inner_texts()
    page.wait_for_function(
        "() => JSON.stringify("
        f"Array.from(document.querySelectorAll('{cells}'), (e) => e.innerText))"
        f" !== {json_literal(before)}",
        timeout=30_000,
    )

    # Scrolling while updates stream in.
    scroll = page.evaluate(SCROLL)
    scroll_tasks = [d for s, d in page.evaluate("window.__longTasks") if s >= scroll["start"]]
    figures = {
        "first_render_ms": round(first_render),
        "scroll_frame_p95_ms": round(scroll["p95"], 1),
        "scroll_frame_worst_ms": round(scroll["worst"], 1),
        "scroll_long_tasks_ms": [round(d) for d in scroll_tasks],
    }
    with capsys.disabled():
        print(f"\n{LIVE_NODES:,} live simulated nodes: {figures}")
    # The targets are held by the static test above; here the browser shares two cores with
    # the master (answering the node list while taking ~500 heartbeats a second) and a
    # simulator driving 5,000 WebSockets, and a loaded CI machine stretched first render past
    # 3 s. These bounds catch a table that hangs or re-renders everything per update, not
    # scheduling noise; docs/benchmarks.md has the figures.
    assert first_render < 8000
    assert max(scroll_tasks, default=0) < 1000


def json_literal(value: object) -> str:
    """``value`` as JSON, as a JavaScript string literal."""
    return json.dumps(json.dumps(value))


def test_login_page_javascript_is_small(
    page: Page, cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    scripts: list[Response] = []

    def record(response: Response) -> None:
        if response.request.resource_type == "script":
            scripts.append(response)

    page.on("response", record)
    page.goto(f"{cluster.url}/login")
    page.wait_for_load_state("networkidle")
    assert scripts, "the login page loaded no JavaScript?"
    transferred = raw = 0
    codings = set()
    for response in scripts:
        # What went over the wire (compressed body + headers), as Chromium counted it.
        sizes = response.request.sizes()
        transferred += sizes["responseBodySize"] + sizes["responseHeadersSize"]
        body = len(response.body())  # decoded
        raw += body
        coding = response.headers.get("content-encoding", "identity")
        codings.add(coding)
        # The build compresses every file of 1 KiB or more (web/precompress.js).
        assert coding in {"gzip", "br"} or body < 1024, f"{response.url} came uncompressed"
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert "expires" not in response.headers
    with capsys.disabled():
        print(
            f"\nlogin page: {len(scripts)} scripts, {transferred / 1024:.0f} KiB transferred"
            f" ({'/'.join(sorted(codings))}; {raw / 1024:.0f} KiB uncompressed)"
        )
    assert transferred < raw / 2
    assert transferred < 500 * 1024
    # Logging in from here loads the rest on demand.
    login(page, cluster.url, cluster.admin_password)
