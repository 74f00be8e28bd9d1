"""A rollout against plain restarts (part of ``nox -s bench``; also runnable alone).

One master, two workers, a module of N (10) instances of an idle service, 5 per node.
In the same run, median of a few rounds each:

(a) a rollout of all N to the other version (1.0.0 <-> 2.0.0 in turn), ``max_parallel`` 5,
    ``wait`` running: each instance is stopped, switched to the new version's folder and
    started again (the first round downloads and extracts the new version on every
    instance; later rounds find it still on disk);
(b) N sequential ``restart_instance`` calls: the same stop and start, one at a time,
    without a version change: what an operator scripting restarts gets;
(c) N ``restart_instance`` calls, 5 at a time (the raw peer of (a)'s parallelism).

Issue 13 asks for (a) next to (b); (a) against (c) shows what the rollout machinery (the
job, the switch, its checks) costs over bare restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gdos_sdk import AsyncClient, Client  # noqa: E402
from gdos_sdk.archive import build_archive  # noqa: E402
from gdos_sdk.testing import LocalCluster  # noqa: E402

SLEEPER = "import time\nwhile True:\n    time.sleep(3600)\n"
PARALLEL = 5


def _package(folder: Path, version: str) -> Path:
    src = folder / f"src-rollout-{version}"
    src.mkdir(parents=True)
    manifest = {
        "name": "rolloutbench",
        "version": version,
        "entrypoint": sys.executable,  # not a #! line: version-manager shims fork helpers
        "args": ["main.py"],
        "stop_timeout": 2,
    }
    (src / "service.json").write_text(json.dumps(manifest))
    (src / "main.py").write_text(SLEEPER)
    out = folder / f"rolloutbench-{version}.zip"
    build_archive(src, out)
    return out


def _rollout(gdos: Client, module_id: str, version: str) -> float:
    began = time.perf_counter()
    job = gdos.rollout(module_id, version, max_parallel=PARALLEL, wait="running")
    job = gdos.get_rollout(job.id, wait=300)
    elapsed = time.perf_counter() - began
    assert job.state.value == "done", job
    return elapsed


def _sequential(gdos: Client, ids: list[str]) -> float:
    began = time.perf_counter()
    for instance_id in ids:
        restarted = gdos.restart_instance(instance_id)
        assert restarted.state.value == "running", restarted
    return time.perf_counter() - began


async def _parallel(url: str, token: str, ids: list[str]) -> float:
    async with AsyncClient(url, token=token, timeout=120) as gdos:
        places = asyncio.Semaphore(PARALLEL)

        async def one(instance_id: str) -> None:
            async with places:
                restarted = await gdos.restart_instance(instance_id)
                assert restarted.state.value == "running", restarted

        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in ids))
        return time.perf_counter() - began


def measure(folder: Path, *, instances: int = 10, rounds: int = 3) -> dict[str, Any]:
    results: dict[str, Any] = {"instances": instances, "rounds": rounds, "parallel": PARALLEL}
    times: dict[str, list[float]] = {k: [] for k in ("rollout", "sequential", "parallel")}
    with LocalCluster(folder / "rollout-cluster") as cluster:
        cluster.start_master()
        workers = [cluster.start_worker(), cluster.start_worker()]
        nodes = [cluster.wait_worker_connected(w) for w in workers]
        token = cluster.admin_token()
        with cluster.client() as gdos:
            for version in ("1.0.0", "2.0.0"):
                gdos.upload_package(_package(folder, version))
            system = gdos.create_system("rolloutbench")
            module = gdos.create_module(system.id, "idle", "rolloutbench", "1.0.0")
            ids = [gdos.deploy(module.id, nodes[n % 2]).id for n in range(instances)]
            for n in range(rounds):
                times["rollout"].append(_rollout(gdos, module.id, ("2.0.0", "1.0.0")[n % 2]))
                times["sequential"].append(_sequential(gdos, ids))
                times["parallel"].append(asyncio.run(_parallel(cluster.url, token, ids)))
    for name, values in times.items():
        results[f"{name}_median_s"] = statistics.median(values)
        results[f"{name}_all_s"] = [round(v, 3) for v in values]
    results["rollout_vs_sequential"] = results["rollout_median_s"] / results["sequential_median_s"]
    results["rollout_vs_parallel"] = results["rollout_median_s"] / results["parallel_median_s"]
    return results


def report(results: dict[str, Any]) -> None:
    n, p = results["instances"], results["parallel"]
    print(
        f"rollout of {n} instances on 2 workers (max_parallel {p}, wait running), median of"
        f" {results['rounds']}: {results['rollout_median_s']:.2f} s"
        f" (rounds {results['rollout_all_s']}; the first downloads the new version) vs"
        f" {n} sequential restarts {results['sequential_median_s']:.2f} s ="
        f" {results['rollout_vs_sequential']:.2f}x"
    )
    print(
        f"  {n} restarts {p} at a time {results['parallel_median_s']:.2f} s: the rollout costs"
        f" {results['rollout_vs_parallel']:.2f}x bare restarts of the same parallelism"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gdos-bench-rollout-") as tmp:
        results = measure(Path(tmp), instances=args.instances, rounds=args.rounds)
    report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
