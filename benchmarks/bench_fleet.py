"""Fleet-scale benchmarks (part of ``nox -s bench``).

(a) the largest simulated fleet one master keeps with no node flapping offline and an ingest
    lag under 2 s, with the master's CPU and RSS at each size;
(b) a bare Hypercorn WebSocket echo measured in the same run, and the master's ingest rate as
    a ratio of it;
(c) bytes of master memory per retained sample (whole-heap accounting of the series store
    filled with realistic node samples);
(d) p99 delay from a worker's sample to a browser-side live subscriber (when the live channel
    is available).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from fleet_sim import FleetSim  # noqa: E402

from gdos_sdk.metrics.names import node_values  # noqa: E402
from gdos_sdk.metrics.series import SeriesStore  # noqa: E402
from gdos_sdk.models import DiskUsage, NetRate, NodeSample  # noqa: E402
from gdos_sdk.testing import LocalCluster, free_port  # noqa: E402

ECHO_APP = textwrap.dedent("""
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert scope["type"] == "websocket"
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            await send({"type": "websocket.send", "text": message.get("text")})
""")


async def echo_rate(seconds: float, clients: int = 8) -> float:
    """Round trips per second through a bare Hypercorn WebSocket echo (the raw baseline)."""
    from websockets.asyncio.client import connect

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "echo_app.py").write_text(ECHO_APP)
        port = free_port()
        proc = subprocess.Popen(  # noqa: ASYNC220 - a one-off start, before any measurement
            [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "echo_app:app"],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    async with connect(f"ws://127.0.0.1:{port}/"):
                        break
                except OSError:
                    await asyncio.sleep(0.1)
            count = 0
            deadline = time.monotonic() + seconds
            payload = "x" * 900  # about one heartbeat frame

            async def client() -> None:
                nonlocal count
                async with connect(f"ws://127.0.0.1:{port}/") as ws:
                    while time.monotonic() < deadline:
                        await ws.send(payload)
                        await ws.recv()
                        count += 1

            await asyncio.gather(*(client() for _ in range(clients)))
            return count / seconds
        finally:
            proc.kill()
            proc.wait()


DEFAULT_SIZES = [500, 1000, 2000, 3000, 5000]


def bytes_per_sample(nodes: int = 200, seconds: int = 3600) -> tuple[float, int]:
    """Whole-heap bytes per retained 1 s sample for realistic node samples."""
    rng = random.Random(1)
    store = SeriesStore(window=seconds)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        t0 = 1_700_000_000
        for second in range(seconds):
            for n in range(nodes):
                sample = NodeSample(
                    ts=t0 + second,
                    cpu_percent=rng.uniform(0, 100),
                    load1=1.0,
                    load5=1.0,
                    load15=1.0,
                    mem_total=2**34,
                    mem_used=2**33,
                    mem_percent=50.0,
                    swap_total=0,
                    swap_used=0,
                    disk_read_bps=rng.uniform(0, 1e6),
                    disk_write_bps=rng.uniform(0, 1e6),
                    uptime_seconds=second,
                    disks=[DiskUsage("/", 2**37, 2**36, 50.0)],
                    net=[NetRate("eth0", rng.uniform(0, 1e6), rng.uniform(0, 1e6))],
                )
                store.add(f"node:{n}", node_values(sample), sample.ts)
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    samples = store.sample_count()
    return used / samples, samples


async def sample_to_browser(
    cluster: LocalCluster, sim: FleetSim, token: str, *, watch: int = 5, seconds: float = 30.0
) -> dict[str, Any]:
    """Delay from a simulated worker's sample to a live-channel subscriber, as a browser sees it.

    Subscribes to ``node:<id>`` for a few nodes (which makes them watched: 1 s pushes) and,
    for every sample taken after the subscription settled, records arrival time minus the
    sample's own timestamp (both from this machine's clock).
    """
    from websockets.asyncio.client import connect

    url = "ws" + cluster.url[len("http") :] + "/api/v1/live"
    chosen = [n.node_id for n in sim.nodes[:: max(1, len(sim.nodes) // watch)][:watch]]
    delays: list[float] = []
    async with connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=2**24
    ) as ws:
        for node_id in chosen:
            await ws.send(f'{{"op": "subscribe", "topic": "node:{node_id}"}}')
        settled = time.time() + 3  # the Configure round trip and the snapshot
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                text = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            now = time.time()
            message = json.loads(text)
            data = message.get("data") or {}
            if data.get("snapshot"):
                continue
            for sample in data.get("samples", ()):
                if sample["ts"] >= settled:
                    delays.append(now - sample["ts"])
    delays.sort()
    if not delays:
        return {"samples": 0}
    return {
        "samples": len(delays),
        "p50_s": round(delays[len(delays) // 2], 3),
        "p99_s": round(delays[min(len(delays) - 1, int(len(delays) * 0.99))], 3),
        "max_s": round(delays[-1], 3),
    }


async def fleet_step(cluster: LocalCluster, size: int, hold: float) -> dict[str, Any]:
    assert cluster.master is not None
    master = psutil.Process(cluster.master.pid)
    sim = FleetSim(cluster.url, cluster.join_token, nodes=size, ramp_per_second=400)
    token = cluster.admin_token()
    headers = {"Authorization": f"Bearer {token}"}
    result: dict[str, Any] = {"nodes": size}
    try:
        result["connect_seconds"] = round(await sim.start(wait=300), 1)
        # Let push intervals settle (rebalance runs every 5 s) and the join storm drain out of
        # the lag window (the master reports the largest lag of the last 10-20 s).
        await asyncio.sleep(45)
        before = sim.disconnects()
        cpu0 = master.cpu_times()
        t0 = time.monotonic()
        lags: list[float] = []
        online_min = size
        ingest_url = f"{cluster.url}/api/v1/metrics/ingest"
        async with httpx.AsyncClient(headers=headers, timeout=30) as http:
            beats0 = (await http.get(ingest_url)).json()["heartbeats"]
            while time.monotonic() - t0 < hold:
                await asyncio.sleep(2)
                status = (await http.get(ingest_url)).json()
                lags.append(status["recent_max_lag"])
                online_min = min(online_min, status["nodes_online"])
            beats1 = (await http.get(ingest_url)).json()["heartbeats"]
        elapsed = time.monotonic() - t0
        cpu1 = master.cpu_times()
        result.update(
            master_cpu_percent=round(
                100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / elapsed, 1
            ),
            master_rss_mb=round(master.memory_info().rss / 2**20, 1),
            heartbeats_per_s=round((beats1 - beats0) / elapsed, 1),
            ingest_lag_max_s=round(max(lags), 3) if lags else None,
            min_nodes_online=online_min,
            disconnects=sim.disconnects() - before,
        )
        result["ok"] = (
            result["disconnects"] == 0
            and online_min >= size
            and (result["ingest_lag_max_s"] or 0) < 2.0
        )
        result["sample_to_browser"] = await sample_to_browser(cluster, sim, token)
        return result
    finally:
        await sim.stop()


async def run(sizes: list[int], hold: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    results["echo_roundtrips_per_s"] = round(await echo_rate(5), 1)
    per_sample, samples = bytes_per_sample()
    results["bytes_per_retained_sample"] = round(per_sample, 2)
    results["bytes_sample_count"] = samples
    steps = []
    largest = 0
    for size in sizes:
        with (
            tempfile.TemporaryDirectory(prefix="gdos-fleet-") as tmp,
            LocalCluster(Path(tmp)) as cluster,
        ):
            cluster.start_master(env={"OPS_MASTER_LOG_LEVEL": "warning"})
            step = await fleet_step(cluster, size, hold)
        steps.append(step)
        print(f"  fleet {size:>5}: {step}", flush=True)
        if step["ok"]:
            largest = size
        else:
            break
    results["fleet_steps"] = steps
    results["largest_fleet_ok"] = largest
    if steps:
        best = max((s for s in steps if s["ok"]), key=lambda s: s["nodes"], default=steps[0])
        results["ingest_vs_echo_ratio"] = round(
            best["heartbeats_per_s"] / results["echo_roundtrips_per_s"], 3
        )
    return results


def report(results: dict[str, Any]) -> None:
    print(
        f"(a) largest fleet with no flapping and ingest lag < 2 s: "
        f"{results['largest_fleet_ok']} simulated nodes (target 5000)"
    )
    for step in results["fleet_steps"]:
        print(
            f"    {step['nodes']:>5} nodes: master CPU {step['master_cpu_percent']} %, "
            f"RSS {step['master_rss_mb']} MB, {step['heartbeats_per_s']} heartbeats/s, "
            f"max lag {step['ingest_lag_max_s']} s, disconnects {step['disconnects']}"
        )
    for step in results["fleet_steps"]:
        delay = step.get("sample_to_browser") or {}
        print(
            f"(d) {step['nodes']:>5} nodes, 5 watched: sample -> live subscriber p50 "
            f"{delay.get('p50_s')} s, p99 {delay.get('p99_s')} s, max {delay.get('max_s')} s"
            f" over {delay.get('samples')} samples (target p99 < 1.5 s)"
        )
    print(
        f"(b) bare Hypercorn WebSocket echo: {results['echo_roundtrips_per_s']} round trips/s;"
        f" master ingest / echo = {results.get('ingest_vs_echo_ratio')}"
    )
    print(
        f"(c) master memory per retained sample: {results['bytes_per_retained_sample']} bytes"
        f" (target <= 4)"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES)
    parser.add_argument("--hold", type=float, default=30.0, help="seconds to observe each size")
    args = parser.parse_args()
    results = asyncio.run(run(args.sizes, args.hold))
    print()
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
