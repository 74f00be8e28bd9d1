"""Benchmarks (``nox -s bench``): each figure is printed next to a raw baseline from the same run.

1. deploy -> running: wall time of ``POST /instances`` (deploy + start) for a small package,
   median of several runs, against the raw cost of the same work without GDOS (extract the
   zip, spawn the entrypoint).
2. worker overhead: a worker supervising 20 idle instances at 1 s sampling, CPU % of one
   core and RSS, against a bare Python process sampling the same 20 processes with psutil
   every second (the irreducible part) and a bare interpreter's RSS.
3. web terminal (``bench_terminal.py``): keystroke echo round trip through the master (p50,
   p99), and bulk output through the relay against raw PTY reads of the same command.
4. fleet scale (``bench_fleet.py``): the largest simulated fleet one master keeps, against a
   bare Hypercorn WebSocket echo; bytes per retained sample; sample-to-browser delay.
5. batch start (``bench_batch.py``): ``POST /systems/{id}/start`` of 20 instances against 20
   concurrent ``start_instance`` calls (with and without the same ``min_running`` check).
6. metrics to a DataFrame (``bench_metrics.py``): ``query_range`` of 1 h of 1 s samples for
   100 nodes to one DataFrame, against raw ``httpx.get`` + ``json.loads`` of the same answer.
7. rollout (``bench_rollout.py``): a rollout of 10 instances on 2 workers (``max_parallel``
   5, ``wait`` running) against 10 sequential restarts, and 10 restarts 5 at a time.
8. REST speed (``bench_rest.py``): ``GET /api/v1/nodes`` with an API token, against a bare
   Quart app serving the same bytes on the same Hypercorn settings.
9. heartbeat ingest (``bench_ingest.py``): the master's path for one heartbeat frame
   (parse, check, store), in process, against ``json.loads`` of the same frame.
10. several masters (``bench_masters.py``): one master against two on one PostgreSQL and
    one NATS with the same simulated fleet (CPU per 1,000 nodes, lag, delay of a node on
    the other master, the bus cost per sample), against a bare NATS publish/subscribe of
    the same messages. Needs PostgreSQL's server binaries and ``nats-server``.

The machine is shared and noisy; compare each figure with its baseline, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_batch  # noqa: E402
import bench_fleet  # noqa: E402
import bench_ingest  # noqa: E402
import bench_masters  # noqa: E402
import bench_metrics  # noqa: E402
import bench_rest  # noqa: E402
import bench_rollout  # noqa: E402
import bench_terminal  # noqa: E402

from gdos_sdk.archive import build_archive, safe_extract  # noqa: E402
from gdos_sdk.testing import LocalCluster, wait_until  # noqa: E402

SLEEPER = "#!/usr/bin/env python3\nimport time\nwhile True:\n    time.sleep(3600)\n"


def make_package(folder: Path, name: str) -> Path:
    src = folder / f"src-{name}"
    src.mkdir(parents=True)
    (src / "service.json").write_text(
        json.dumps({"name": name, "version": "1.0.0", "entrypoint": "main.py", "stop_timeout": 2})
    )
    main = src / "main.py"
    main.write_text(SLEEPER)
    main.chmod(0o755)
    out = folder / f"{name}.zip"
    build_archive(src, out)
    return out


def raw_deploy(package: Path, folder: Path) -> float:
    """Extract + spawn, nothing else: what any deployer must at least do."""
    dest = folder / f"raw-{time.monotonic_ns()}"
    began = time.perf_counter()
    safe_extract(package, dest)
    proc = subprocess.Popen(
        [str(dest / "main.py")],
        cwd=dest,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - began
    proc.kill()
    proc.wait()
    return elapsed


def cpu_percent_over(pid: int, seconds: float) -> tuple[float, int]:
    proc = psutil.Process(pid)
    t0 = proc.cpu_times()
    w0 = time.monotonic()
    time.sleep(seconds)
    t1 = proc.cpu_times()
    used = (t1.user - t0.user) + (t1.system - t0.system)
    return 100.0 * used / (time.monotonic() - w0), proc.memory_info().rss


SAMPLER = """
import sys, time, psutil
pids = [int(p) for p in sys.argv[1:]]
procs = [psutil.Process(p) for p in pids]
while True:
    for p in procs:
        with p.oneshot():
            p.cpu_percent(); p.memory_info(); p.num_threads(); p.num_fds()
            try:
                p.io_counters()
            except psutil.Error:
                pass
            p.children(recursive=True)
    time.sleep(1)
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--fleet-sizes",
        type=int,
        nargs="*",
        default=bench_fleet.DEFAULT_SIZES,
        help="simulated fleet sizes, smallest first (none: skip the fleet benchmark)",
    )
    parser.add_argument("--fleet-hold", type=float, default=30.0)
    parser.add_argument("--metrics-runs", type=int, default=7, help="0: skip the metrics bench")
    parser.add_argument(
        "--masters-nodes",
        type=int,
        default=bench_masters.DEFAULT_NODES,
        help="simulated fleet of the one-against-two-masters benchmark (0: skip it)",
    )
    args = parser.parse_args()

    results: dict[str, object] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}, {platform.platform()}",
    }
    with tempfile.TemporaryDirectory(prefix="gdos-bench-") as tmp:
        folder = Path(tmp)
        package = make_package(folder, "bench")
        raw = sorted(raw_deploy(package, folder) for _ in range(args.runs))
        with LocalCluster(folder / "cluster") as cluster:
            cluster.start_master()
            worker = cluster.start_worker()
            with cluster.client() as gdos:
                node_id = cluster.wait_worker_connected(worker)
                gdos.upload_package(package)
                system = gdos.create_system("bench")
                module = gdos.create_module(system.id, "m", "bench", "1.0.0")
                timings = []
                for _ in range(args.runs):
                    began = time.perf_counter()
                    instance = gdos.deploy(module.id, node_id, start=True)
                    elapsed = time.perf_counter() - began
                    assert instance.state.value == "running", instance
                    timings.append(elapsed)
                    gdos.destroy_instance(instance.id)
                results["deploy_to_running_median_s"] = statistics.median(timings)
                results["deploy_to_running_all_s"] = [round(t, 4) for t in timings]
                results["raw_extract_spawn_median_s"] = statistics.median(raw)

                ids = []
                for _ in range(args.instances):
                    ids.append(gdos.deploy(module.id, node_id, start=True).id)
                wait_until(
                    lambda: all(i.state.value == "running" for i in gdos.list_instances()),
                    timeout=60,
                    what="all instances running",
                )
                time.sleep(3)  # let start-up work settle
                cpu, rss = cpu_percent_over(worker.pid, args.seconds)
                results["worker_cpu_percent_20_idle"] = cpu
                results["worker_rss_mb_20_idle"] = rss / 2**20
                pids = [str(i.pid) for i in gdos.list_instances()]
                sampler = subprocess.Popen([sys.executable, "-c", SAMPLER, *pids])
                bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
                try:
                    time.sleep(3)
                    base_cpu, base_rss = cpu_percent_over(sampler.pid, args.seconds)
                    bare_rss = psutil.Process(bare.pid).memory_info().rss
                finally:
                    for proc in (sampler, bare):
                        proc.kill()
                        proc.wait()
                results["baseline_psutil_sampler_cpu_percent"] = base_cpu
                results["baseline_psutil_sampler_rss_mb"] = base_rss / 2**20
                results["baseline_bare_python_rss_mb"] = bare_rss / 2**20
                for instance_id in ids:
                    gdos.destroy_instance(instance_id)

    print()
    print(f"machine: {results['machine']}")
    print(
        f"deploy -> running, median of {args.runs}: "
        f"{results['deploy_to_running_median_s'] * 1000:.0f} ms "
        f"(raw extract+spawn {results['raw_extract_spawn_median_s'] * 1000:.1f} ms; "
        f"target < 1000 ms)"
    )
    print(
        f"worker with {args.instances} idle instances, {args.seconds:g} s: "
        f"CPU {results['worker_cpu_percent_20_idle']:.2f} % of one core, "
        f"RSS {results['worker_rss_mb_20_idle']:.1f} MB (targets < 2 %, < 80 MB)"
    )
    print(
        f"  baseline: bare psutil sampler of the same processes "
        f"{results['baseline_psutil_sampler_cpu_percent']:.2f} % / "
        f"{results['baseline_psutil_sampler_rss_mb']:.1f} MB; "
        f"bare interpreter {results['baseline_bare_python_rss_mb']:.1f} MB"
    )
    # 3. the web terminal: keystroke echo through the master, relay vs raw PTY throughput
    with tempfile.TemporaryDirectory(prefix="gdos-bench-terminal-") as tmp:
        terminal = bench_terminal.measure(Path(tmp))
    results["terminal"] = terminal
    bench_terminal.report(terminal)
    # 7. REST: GET /nodes against a bare Quart app (before the fleet run, which loads the machine)
    rest = asyncio.run(bench_rest.run())
    results["rest"] = rest
    bench_rest.report(rest)
    # 5. batch start against concurrent starts (before the fleet run, which loads the machine)
    with tempfile.TemporaryDirectory(prefix="gdos-bench-batch-") as tmp:
        batch = bench_batch.measure(Path(tmp), instances=args.instances)
    results["batch"] = batch
    bench_batch.report(batch)
    # 7. a rollout against restarts, sequential and 5 at a time
    with tempfile.TemporaryDirectory(prefix="gdos-bench-rollout-") as tmp:
        rollout = bench_rollout.measure(Path(tmp))
    results["rollout"] = rollout
    bench_rollout.report(rollout)
    # 9. heartbeat ingest per frame against json.loads (in process, before the fleet run)
    ingest = bench_ingest.measure(nodes=300, rounds=6)
    results["ingest"] = ingest
    bench_ingest.report(ingest)
    # 4. fleet scale: simulated workers over real WebSockets against one master
    if args.fleet_sizes:
        print("fleet:")
        fleet = asyncio.run(bench_fleet.run(args.fleet_sizes, args.fleet_hold))
        results["fleet"] = fleet
        bench_fleet.report(fleet)
    # 10. one master against two on one PostgreSQL and one NATS
    if args.masters_nodes:
        masters = asyncio.run(bench_masters.run(args.masters_nodes))
        results["masters"] = masters
        bench_masters.report(masters)
    # 5. metrics to a DataFrame: query_range of 100 nodes x 1 h against raw HTTP + JSON
    if args.metrics_runs:
        metrics = bench_metrics.measure(args.metrics_runs)
        results["metrics"] = metrics
        bench_metrics.report(metrics)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
