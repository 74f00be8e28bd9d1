"""Metrics to a DataFrame: ``query_range`` of 1 h of 1 s samples for 100 nodes.

The master runs in a child process (``--serve``): a real app served by Hypercorn on
loopback, with 100 planned nodes whose CPU series are filled **straight into its
SeriesStore** (3600 s x 100 nodes = 360,000 samples; feeding an hour through the
ingest path would take an hour). The benchmark process then times, in the same run:

* raw: ``httpx.get`` of ``/api/v1/metrics/query?target=node:*`` + ``json.loads``: the
  irreducible HTTP and JSON cost of the answer;
* SDK: ``Client.query_range(...).to_pandas()``: call to DataFrame (a UTC DatetimeIndex,
  a column per node: 3600 rows x 100 columns = 360,000 values);
* SDK long: ``.to_pandas(long=True)``: one row per point, 360,000 rows.

Targets: the SDK under 1.5x raw and under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gdos_sdk import Client  # noqa: E402
from gdos_sdk.testing import free_port, wait_until  # noqa: E402

NODES = 100
SECONDS = 3600
PASSWORD = "bench-admin-password"


def serve(folder: Path, port: int, nodes: int, seconds: int) -> None:
    """The child: a master with ``nodes`` planned nodes and an hour of CPU each."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from gdos_master.app import create_app
    from gdos_sdk.config import MasterAuth, MasterServer, MasterSettings
    from gdos_sdk.models import PlannedNodeCreate

    settings = MasterSettings(
        server=MasterServer(data_dir=str(folder / "data")),
        auth=MasterAuth(admin_password=PASSWORD, join_token="bench-join-token-000"),
    )
    app = create_app(settings)

    async def main() -> None:
        async with app.test_app():  # runs the app's startup (the master is built there)
            master = app.extensions["gdos"]
            now = int(time.time())
            rng = random.Random(1)
            for i in range(nodes):
                node = master.nodes.plan(PlannedNodeCreate(hostname=f"bench-{i:03d}"))
                series = f"node:{node.id}"
                level = rng.uniform(5, 80)
                for t in range(now - seconds, now):
                    master.fleet.store.add(series, {"cpu": level + rng.uniform(-5, 5)}, t)
            config = Config()
            config.bind = [f"127.0.0.1:{port}"]
            config.accesslog = None
            print(f"ready {now}", flush=True)
            await hypercorn_serve(app, config)  # type: ignore[arg-type]

    asyncio.run(main())


def _median(times: list[float]) -> float:
    return statistics.median(times)


def measure(runs: int = 5, nodes: int = NODES, seconds: int = SECONDS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gdos-bench-metrics-") as tmp:
        port = free_port()
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", tmp, str(port), str(nodes), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline().split()
            if not line or line[0] != "ready":
                raise RuntimeError(f"the bench master did not start: {line!r}")
            filled_until = int(line[1])
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: httpx.get(f"{url}/api/v1/health").status_code == 200, timeout=30)
            with Client(url, retries=0) as gdos:
                gdos.login("admin", PASSWORD)
                token = gdos.create_token("bench").secret
            end = filled_until
            start = end - seconds
            params = {"target": "node:*", "metric": "cpu", "start": start, "end": end}
            raw: list[float] = []
            sdk: list[float] = []
            sdk_long: list[float] = []
            size = 0
            shape: tuple[int, int] = (0, 0)
            long_rows = 0
            with (
                httpx.Client(
                    base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120
                ) as http,
                Client(url, token) as gdos,
            ):
                for _ in range(runs):  # interleaved, so load from others hits both alike
                    began = time.perf_counter()
                    response = http.get("/api/v1/metrics/query", params=params)
                    data = json.loads(response.content)
                    raw.append(time.perf_counter() - began)
                    size = len(response.content)
                    assert len(data["series"]) == nodes

                    began = time.perf_counter()
                    frame = gdos.query_range("cpu", "node:*", start=start, end=end).to_pandas()
                    sdk.append(time.perf_counter() - began)
                    shape = frame.shape

                    began = time.perf_counter()
                    long = gdos.query_range("cpu", "node:*", start=start, end=end).to_pandas(
                        long=True
                    )
                    sdk_long.append(time.perf_counter() - began)
                    long_rows = len(long)
        finally:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return {
        "nodes": nodes,
        "seconds": seconds,
        "runs": runs,
        "answer_bytes": size,
        "frame_shape": list(shape),
        "long_rows": long_rows,
        "raw_http_json_median_s": _median(raw),
        "sdk_to_dataframe_median_s": _median(sdk),
        "sdk_to_long_dataframe_median_s": _median(sdk_long),
        "raw_all_s": [round(t, 3) for t in raw],
        "sdk_all_s": [round(t, 3) for t in sdk],
    }


def report(results: dict[str, Any]) -> None:
    raw = results["raw_http_json_median_s"]
    sdk = results["sdk_to_dataframe_median_s"]
    long = results["sdk_to_long_dataframe_median_s"]
    rows, columns = results["frame_shape"]
    print(
        f"query_range {results['nodes']} nodes x {results['seconds']} s of 1 s samples"
        f" ({results['answer_bytes'] / 1e6:.1f} MB JSON), median of {results['runs']}:"
    )
    print(
        f"  SDK call -> DataFrame {rows}x{columns}: {sdk * 1000:.0f} ms"
        f" ({sdk / raw:.2f}x raw; targets < 1.5x and < 2000 ms)"
    )
    print(
        f"  SDK call -> long DataFrame ({results['long_rows']} rows): {long * 1000:.0f} ms"
        f" ({long / raw:.2f}x raw)"
    )
    print(f"  baseline: raw httpx GET + json.loads of the same answer {raw * 1000:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", nargs=4, metavar=("DIR", "PORT", "NODES", "SECONDS"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.serve:
        folder, port, nodes, seconds = args.serve
        serve(Path(folder), int(port), int(nodes), int(seconds))
        return 0
    results = measure(args.runs)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
