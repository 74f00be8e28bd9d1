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
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import pyspy  # noqa: E402
from fleet_sim import FleetSim  # noqa: E402
from websockets.exceptions import WebSocketException  # noqa: E402

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


def start_server(argv: list[str], cwd: str) -> subprocess.Popen[bytes]:
    """A server process in a session of its own, so :func:`stop_server` ends all of it."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Kill the server's whole process group (Hypercorn's workers too) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


async def echo_rate(seconds: float, clients: int = 8) -> float:
    """Round trips per second through a bare Hypercorn WebSocket echo (the raw baseline)."""
    from websockets.asyncio.client import connect

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "echo_app.py").write_text(ECHO_APP)
        port = free_port()
        # --workers 0: serve in the process itself, as gdos-master does (one worker process
        # would be a child the old kill() of the parent left running).
        proc = start_server(
            [
                sys.executable,
                "-m",
                "hypercorn",
                "--workers",
                "0",
                "--bind",
                f"127.0.0.1:{port}",
                "echo_app:app",
            ],
            tmp,
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
            stop_server(proc)


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
    master: MasterUnderTest,
    sim: FleetSim,
    token: str,
    *,
    watch: int = 5,
    seconds: float = 30.0,
    dialing: int | None = None,
) -> dict[str, Any]:
    """Delay from a simulated worker's sample to a live-channel subscriber, as a browser sees it.

    Subscribes to ``node:<id>`` for a few nodes (which makes them watched: 1 s pushes) and,
    for every sample taken after the subscription settled, records arrival time minus the
    sample's own timestamp (both from this machine's clock). ``dialing``: watch only nodes
    connected to that master (node ``i`` dials master ``i % masters``); with another
    master than ``master``, their samples cross the bus.
    """
    from websockets.asyncio.client import connect

    url = "ws" + master.url[len("http") :] + "/api/v1/live"
    spread = len(sim.ws_urls)
    pool = [n for n in sim.nodes if dialing is None or n.index % spread == dialing]
    chosen = [n.node_id for n in pool[:: max(1, len(pool) // watch)][:watch]]
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


@attrs.define
class MasterUnderTest:
    """One master of the run: its cluster folder, its process and its CPU counter."""

    cluster: LocalCluster
    process: psutil.Process
    _cpu: float = 0.0

    @classmethod
    def start(
        cls,
        root: Path,
        env: dict[str, str] | None = None,
        *,
        args: tuple[str, ...] = (),
        db_url: str = "",
        join_token: str | None = None,
        admin_password: str | None = None,
    ) -> MasterUnderTest:
        """Start a master; ``args`` on its command line (``-bus`` ...), on ``db_url`` if given.

        Masters of one cluster share ``join_token`` and ``admin_password``.
        """
        cluster = LocalCluster(root, db_url=db_url, admin_password=admin_password)
        if join_token is not None:
            cluster.join_token = join_token
        try:
            cluster.start_master(*args, env={"OPS_MASTER_LOG_LEVEL": "warning", **(env or {})})
        except BaseException:
            cluster.close()
            raise
        assert cluster.master is not None
        return cls(cluster, psutil.Process(cluster.master.pid))

    @property
    def url(self) -> str:
        return self.cluster.url

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def close(self) -> None:
        self.cluster.close()


class Watch:
    """CPU seconds of several processes over a stretch of wall time."""

    def __init__(self, processes: list[psutil.Process]) -> None:
        self.processes = processes
        self.began = time.monotonic()
        self.cpu = [self._cpu(p) for p in processes]

    @staticmethod
    def _cpu(process: psutil.Process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    def percent(self) -> list[float]:
        """Each process's CPU over the stretch, in % of one core."""
        elapsed = time.monotonic() - self.began
        return [
            round(100 * (self._cpu(p) - c) / elapsed, 1)
            for p, c in zip(self.processes, self.cpu, strict=True)
        ]


async def _ingest(http: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    """The master's ingest status, or None when it did not answer (within the timeout)."""
    try:
        response = await http.get(f"{url}/api/v1/metrics/ingest")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    data["at"] = time.monotonic()
    return data


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _rate(probes: list[dict[str, Any]], key: str) -> float:
    """Per-second growth of a counter between the first and the last answered probe."""
    if len(probes) < 2 or probes[-1]["at"] <= probes[0]["at"]:
        return 0.0
    return (probes[-1][key] - probes[0][key]) / (probes[-1]["at"] - probes[0]["at"])


async def fleet_step(
    masters: list[MasterUnderTest],
    size: int,
    hold: float,
    *,
    settle: float = 45.0,
    profile: Path | None = None,
    watch_seconds: float = 30.0,
    others: dict[str, psutil.Process] | None = None,
    profile_steady: bool = False,
) -> dict[str, Any]:
    """Connect ``size`` simulated nodes spread over ``masters``, let them settle, observe.

    ``profile``: py-spy each master into this folder, from the start (the connect storm
    included), or with ``profile_steady`` from the end of the settle time on (the steady
    state alone).

    Every disconnect and refused hello counts, from the first connection on: a node that
    the master drops during the connect storm or the settle time is flapping too.
    ``others``: more processes (the NATS server ...) whose CPU over the observed stretch
    is reported under ``cpu_percent_<name>``. With several masters, the sample delay is
    measured on the first master both for nodes connected to it and for nodes connected
    to the second (``sample_to_browser_other``: their samples cross the bus).
    """
    extra = others or {}
    sim = FleetSim(
        [m.url for m in masters], masters[0].cluster.join_token, nodes=size, ramp_per_second=400
    )
    token = masters[0].cluster.admin_token()
    headers = {"Authorization": f"Bearer {token}"}
    result: dict[str, Any] = {"nodes": size, "masters": len(masters)}
    bench = psutil.Process()
    whole = Watch([m.process for m in masters] + [bench])
    profiles = [
        pyspy.Profile(m.process.pid, profile / f"master{i}-{size}.raw")
        if profile is not None
        else contextlib.nullcontext()
        for i, m in enumerate(masters)
    ]
    try:
        with contextlib.ExitStack() as stack:
            if not profile_steady:
                for one in profiles:
                    stack.enter_context(one)
            try:
                result["connect_seconds"] = round(await sim.start(wait=300), 1)
            except TimeoutError:
                result["connect_seconds"] = None
            result["connected_after_start"] = sim.connected()
            result["connect_cpu_percent"] = whole.percent()[:-1]
            # Let push intervals settle (rebalance runs every 5 s) and the join storm drain
            # out of the lag window (the master reports the largest lag of the last 10-20 s).
            await asyncio.sleep(settle)
            if profile_steady:
                for one in profiles:
                    stack.enter_context(one)
            result["storm_disconnects"] = sim.disconnects()
            before = sim.disconnects()
            hold_watch = Watch([m.process for m in masters] + [bench, *extra.values()])
            probes: list[list[dict[str, Any]]] = [[] for _ in masters]
            failures = 0
            online_min = size
            async with httpx.AsyncClient(headers=headers, timeout=10) as http:
                t0 = time.monotonic()
                while True:
                    online = 0
                    for m, answered in zip(masters, probes, strict=True):
                        status = await _ingest(http, m.url)
                        if status is None:
                            failures += 1
                            continue
                        answered.append(status)
                        online += status["nodes_online"]
                    online_min = min(online_min, online)
                    if time.monotonic() - t0 >= hold:
                        break
                    await asyncio.sleep(2)
            cpu = hold_watch.percent()
            master_cpu = cpu[: len(masters)]
            for name, percent in zip(extra, cpu[len(masters) + 1 :], strict=True):
                result[f"cpu_percent_{name}"] = percent
            seen = [status for answered in probes for status in answered]
            result.update(
                master_cpu_percent=master_cpu[0] if len(masters) == 1 else master_cpu,
                bench_cpu_percent=cpu[len(masters)],
                master_rss_mb=[round(m.process.memory_info().rss / 2**20, 1) for m in masters],
                heartbeats_per_s=round(sum(_rate(a, "heartbeats") for a in probes), 1),
                samples_per_s=round(sum(_rate(a, "node_samples") for a in probes), 1),
                samples_per_s_each=[round(_rate(a, "node_samples"), 1) for a in probes],
                ingest_lag_max_s=_round(max((s["recent_max_lag"] for s in seen), default=None)),
                loop_lag_max_s=_round(max((s["loop_lag_max"] for s in seen), default=None)),
                gc_full_collections=sum(a[-1]["gc_full_collections"] for a in probes if a),
                gc_last_full_pause_s=max(
                    (a[-1]["gc_last_full_pause"] for a in probes if a), default=None
                ),
                min_nodes_online=online_min,
                probe_failures=failures,
                disconnects=sim.disconnects() - before,
                refusals=sim.refusals(),
                last_refusal=sim.last_refusal[:200],
            )
            result["nodes_per_master"] = size // len(masters)
            result["master_cpu_per_1000_nodes"] = round(
                sum(master_cpu) / len(masters) / (size / len(masters) / 1000), 2
            )
            lag = result["ingest_lag_max_s"]
            result["ok"] = (
                result["storm_disconnects"] == 0
                and result["disconnects"] == 0
                and failures == 0
                and online_min >= size
                and lag is not None
                and lag < 2.0
            )
            watching = [
                sample_to_browser(
                    masters[0],
                    sim,
                    token,
                    seconds=watch_seconds,
                    dialing=None if len(masters) == 1 else dialing,
                )
                for dialing in range(min(2, len(masters)))
            ]
            measured = await asyncio.gather(*watching, return_exceptions=True)
            found: list[dict[str, Any]] = []
            for delays in measured:
                if isinstance(delays, (OSError, TimeoutError, WebSocketException)):
                    found.append({"samples": 0, "error": repr(delays)})
                elif isinstance(delays, BaseException):
                    raise delays
                else:
                    found.append(delays)
            result["sample_to_browser"] = found[0]
            if len(found) > 1:
                result["sample_to_browser_other"] = found[1]
            result["meets_targets"] = result["ok"] and all(
                (d.get("p99_s") or 99) < 1.5 for d in found
            )
        if profile is not None:
            result["profile"] = {
                str(one.out): {
                    "busy": round(one.busy(), 3),
                    "top": [(name, round(share, 3)) for name, share in one.top(30)],
                }
                for one in profiles
                if isinstance(one, pyspy.Profile)
            }
        return result
    finally:
        await sim.stop()


async def run(
    sizes: list[int],
    hold: float,
    *,
    settle: float = 45.0,
    profile: Path | None = None,
    master_env: dict[str, str] | None = None,
    memory: bool = True,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    results["echo_roundtrips_per_s"] = round(await echo_rate(5), 1)
    if memory:
        per_sample, samples = bytes_per_sample()
        results["bytes_per_retained_sample"] = round(per_sample, 2)
        results["bytes_sample_count"] = samples
    steps = []
    largest = 0
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="gdos-fleet-") as tmp:
            master = MasterUnderTest.start(Path(tmp), master_env)
            try:
                step = await fleet_step([master], size, hold, settle=settle, profile=profile)
            finally:
                master.close()
        steps.append(step)
        print(
            f"  fleet {size:>5}: {json.dumps({k: v for k, v in step.items() if k != 'profile'})}",
            flush=True,
        )
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
        f"{results['largest_fleet_ok']} simulated nodes on one master (target 10000)"
    )
    for step in results["fleet_steps"]:
        print(
            f"    {step['nodes']:>5} nodes ({step['nodes_per_master']} per master): connect "
            f"{step['connect_seconds']} s, master CPU {step['master_cpu_percent']} % "
            f"({step['master_cpu_per_1000_nodes']} % per 1,000 nodes), "
            f"RSS {step['master_rss_mb']} MB, {step['heartbeats_per_s']} heartbeats/s, "
            f"{step['samples_per_s']} samples/s, max lag {step['ingest_lag_max_s']} s, "
            f"loop lag {step['loop_lag_max_s']} s, disconnects {step['storm_disconnects']} "
            f"during connect+settle / {step['disconnects']} after, refused hellos "
            f"{step['refusals']}, unanswered probes {step['probe_failures']}, "
            f"simulator CPU {step['bench_cpu_percent']} %"
        )
        for path, found in (step.get("profile") or {}).items():
            print(
                f"    profile {path}: loop busy in {found['busy']:.0%} of samples;"
                " share of the busy samples (inclusive):"
            )
            for name, share in found["top"]:
                print(f"      {share:6.1%}  {name}")
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
    if "bytes_per_retained_sample" in results:
        print(
            f"(c) master memory per retained sample: {results['bytes_per_retained_sample']}"
            " bytes (target <= 4)"
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES)
    parser.add_argument("--hold", type=float, default=30.0, help="seconds to observe each size")
    parser.add_argument(
        "--settle", type=float, default=45.0, help="seconds between connecting and observing"
    )
    parser.add_argument(
        "--profile", type=Path, help="record each master with py-spy into this folder"
    )
    parser.add_argument(
        "--master-code",
        type=Path,
        help="run the master from this checkout (PYTHONPATH), e.g. an older commit to compare",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--no-memory", action="store_true", help="skip (c), the bytes per retained sample"
    )
    args = parser.parse_args()
    env = {"PYTHONPATH": str(args.master_code.absolute())} if args.master_code else None
    results = asyncio.run(
        run(
            args.sizes,
            args.hold,
            settle=args.settle,
            profile=args.profile,
            master_env=env,
            memory=not args.no_memory,
        )
    )
    return finish(results, report, args.json)


def finish(
    results: dict[str, Any], show: Callable[[dict[str, Any]], None], json_path: Path | None
) -> int:
    """The end of ``main()`` here and in bench_masters.py: the figures to ``--json`` (when
    given), then the machine and ``show(results)``, the benchmark's report; exit status 0."""
    if json_path:
        json_path.write_text(json.dumps(results, indent=2))
    print()
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    show(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
