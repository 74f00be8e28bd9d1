"""Heartbeat ingest on the master, in one process: the cost per heartbeat against ``json.loads``.

What the master's event loop does for each heartbeat frame of a worker (the bulk of a
large fleet's traffic), without the network: ``parse_heartbeat`` (orjson and the shape
check ``read_batch``, gdos_master/ingest.py) and ``Fleet.ingest`` (liveness, time window,
storage of every metric in the :class:`~gdos_sdk.metrics.series.SeriesStore`, the rate
totals, the latest sample). The frames are those ``tools/fleet_sim.py`` sends: at 10,000
nodes and the default heartbeat budget (500 frames/s) an unwatched node pushes every 20 s
a batch of 20 one-second samples. The raw baseline, timed in the same run on the same
frames, is ``json.loads`` alone: the irreducible cost of reading the frame with Python's
own parser.

Each round feeds one heartbeat of each of ``--nodes`` nodes, 20 s further on each time,
so minutes close (and their aggregates are computed) as in the real run. Printed: the
time per heartbeat of each step, and what 500 heartbeats/s (10,000 nodes) cost in share
of one core.

The last row runs the whole path in two threads, half the heartbeats each: what a thread
pool off the event loop would gain on two cores (the work holds the GIL).

Each step runs ``--repeat`` times (fresh store and fleet each time); the best time counts.

Alone: ``python benchmarks/bench_ingest.py [--nodes 1000] [--rounds 6] [--repeat 3] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gdos_master.fleet import Fleet  # noqa: E402
from gdos_master.ingest import node_columns, parse_heartbeat, read_batch  # noqa: E402
from gdos_sdk.codec import parse_json  # noqa: E402
from gdos_sdk.metrics.series import SeriesStore  # noqa: E402
from tools.fleet_sim import node_sample  # noqa: E402

T0 = 1_800_000_000.0
BATCH = 20  # samples per heartbeat at 10,000 nodes (ceil(10,000 / 500) s)
RATE = 500  # heartbeats/s: the default fleet.heartbeat_budget


def frames(nodes: int, rounds: int) -> list[list[str]]:
    """``rounds`` lists of one heartbeat frame per node, each round ``BATCH`` s later."""
    rng = random.Random(15)
    out = []
    for r in range(rounds):
        start = T0 + r * BATCH
        texts = []
        for _ in range(nodes):
            samples = ",".join(node_sample(start + i + 0.25, rng) for i in range(BATCH))
            texts.append(
                f'{{"type":"heartbeat","ts":{start + BATCH:.3f},'
                f'"node_samples":[{samples}],"instance_samples":[]}}'
            )
        out.append(texts)
    return out


def _fleet(nodes: int, now: list[float]) -> Fleet:
    fleet = Fleet(
        heartbeat_interval=1,
        offline_grace=5,
        store=SeriesStore(),
        wall_clock=lambda: now[0],
    )
    for i in range(nodes):
        fleet.runtime(f"n{i}").approved = True
    return fleet


def measure(nodes: int, rounds: int, repeat: int = 3) -> dict[str, Any]:
    data = frames(nodes, rounds)
    count = nodes * rounds
    now = [T0]
    parsed = [[read_batch(parse_json(text, max_depth=None)) for text in texts] for texts in data]
    assert all(batch is not None for batches in parsed for batch in batches)
    last: dict[str, Any] = {}

    def raw() -> None:
        for texts in data:
            for text in texts:
                json.loads(text)

    def read_json() -> None:
        for texts in data:
            for text in texts:
                read_batch(parse_json(text, max_depth=None))

    def read() -> None:
        for texts in data:
            for text in texts:
                parse_heartbeat(text)

    def columns() -> None:
        for batches in parsed:
            for batch in batches:
                node_columns(batch.nodes)

    def add() -> None:
        store = SeriesStore()
        for batches in parsed:
            for i, batch in enumerate(batches):
                store.add_columns(f"node:n{i}", node_columns(batch.nodes))

    def ingest() -> None:
        fleet = _fleet(nodes, now)
        for r, batches in enumerate(parsed):
            now[0] = T0 + (r + 1) * BATCH + 0.5
            for i, batch in enumerate(batches):
                fleet.ingest(f"n{i}", batch)

    def whole() -> None:
        fleet = last["fleet"] = _fleet(nodes, now)
        for r, texts in enumerate(data):
            now[0] = T0 + (r + 1) * BATCH + 0.5
            for i, text in enumerate(texts):
                batch = parse_heartbeat(text)
                assert batch is not None
                fleet.ingest(f"n{i}", batch)

    def threads() -> None:
        # The same work split between two threads (half the nodes each, a fleet each):
        # what moving ingest off the event loop into a thread pool could gain.
        fleets = [_fleet(nodes, now), _fleet(nodes, now)]

        def half(part: int) -> None:
            for r, texts in enumerate(data):
                now[0] = T0 + (r + 1) * BATCH + 0.5
                for i in range(part, len(texts), 2):
                    batch = parse_heartbeat(texts[i])
                    assert batch is not None
                    fleets[part].ingest(f"n{i}", batch)

        workers = [threading.Thread(target=half, args=(part,)) for part in (0, 1)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    steps = {
        "json.loads (raw)": raw,
        "json.loads + read_batch": read_json,
        "parse_heartbeat (orjson + read_batch)": read,
        "node_columns": columns,
        "node_columns + SeriesStore.add_columns": add,
        "Fleet.ingest": ingest,
        "whole path (read + ingest)": whole,
        "whole path in 2 threads": threads,
    }
    # Best of ``repeat`` rounds of every step in turn: the machine is shared, and the
    # fastest round is the one least disturbed.
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeat):
        for name, step in steps.items():
            gc.collect()
            started = time.perf_counter()
            step()
            best[name] = min(best[name], (time.perf_counter() - started) / count * 1e6)
    assert last["fleet"].stats.node_samples == count * BATCH, last["fleet"].stats
    return {
        "nodes": nodes,
        "rounds": rounds,
        "samples_per_heartbeat": BATCH,
        "frame_bytes": len(data[0][0]),
        "us_per_heartbeat": best,
    }


def report(results: dict[str, Any]) -> None:
    timings = results["us_per_heartbeat"]
    raw = timings["json.loads (raw)"]
    print(
        f"heartbeat ingest: {results['nodes']} nodes x {results['rounds']} rounds, "
        f"{results['samples_per_heartbeat']} samples per heartbeat, "
        f"{results['frame_bytes']} bytes per frame"
    )
    print(f"{'step':42} {'us/heartbeat':>13} {'x raw':>7} {'core at 500/s':>14}")
    for name, us in timings.items():
        print(f"{name:42} {us:13.1f} {us / raw:7.2f} {us * RATE / 1e6:13.1%}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = measure(args.nodes, args.rounds, args.repeat)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
