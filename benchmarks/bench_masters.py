"""One master against two on one PostgreSQL and one NATS (part of ``nox -s bench``).

In one run, with one throw-away PostgreSQL server (a new database per step) and one NATS
server (docs/scale-out.md):

1. one master (no bus) with ``N/2`` simulated nodes, then with ``N``;
2. two masters (``-bus``) with ``N`` nodes, half connected to each. Every checked sample is
   mirrored to the other master over the bus, so each master ingests the whole fleet.

Reported side by side: nodes per master, master CPU per 1,000 connected nodes (each
master), ingest lag, the sample -> browser delay on the first master for nodes connected
to it and for nodes connected to the other one (their samples cross the bus), the NATS
server's CPU, and the bus cost per sample: the extra CPU of a master of the pair over the
lone master with the same connected nodes, divided by the samples it received over the
bus per second (it includes publishing its own samples: the whole price of the bus per
sample), next to the lone master's CPU per sample of its own nodes.

Raw baseline, in the same run: a bare ``nats-py`` publisher and subscriber in this process
passing messages the size of a master's sample messages through the same NATS server
(subscriber decodes the JSON); CPU per message of this process and of the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from bench_fleet import MasterUnderTest, finish, fleet_step  # noqa: E402
from fleet_sim import node_sample  # noqa: E402

from gdos_sdk.localnats import LocalNats  # noqa: E402
from gdos_sdk.localpg import LocalPostgres  # noqa: E402

DEFAULT_NODES = 2000


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def nats_baseline(
    url: str,
    server: psutil.Process,
    *,
    samples: int,
    messages: int = 20_000,
    rate: float | None = None,
) -> dict[str, Any]:
    """Bare publish -> subscribe of sample messages through NATS (the raw baseline).

    The message is what a master publishes for one heartbeat: ``{"node_id", "nodes":
    [samples], "instances": []}`` as compact JSON; the subscriber decodes it. As fast as
    it goes, or paced at ``rate`` messages per second (as the masters send them: each
    message then travels alone, with its own wake-ups and system calls).
    """
    import nats

    rng = random.Random(1)
    now = time.time()
    doc = {
        "node_id": str(uuid.uuid4()),
        "nodes": [json.loads(node_sample(now - i, rng)) for i in range(samples)],
        "instances": [],
    }
    payload = json.dumps(doc, separators=(",", ":")).encode()
    publisher, subscriber = await nats.connect(url), await nats.connect(url)
    received = 0
    done = asyncio.Event()

    async def on_message(msg: Any) -> None:
        nonlocal received
        json.loads(msg.data)
        received += 1
        if received == messages:
            done.set()

    try:
        await subscriber.subscribe("bench.samples.*", cb=on_message, pending_msgs_limit=messages)
        await subscriber.flush()
        me = psutil.Process()
        began, cpu, server_cpu = time.monotonic(), _cpu(me), _cpu(server)
        for i in range(messages):
            if rate is not None and (ahead := i / rate - (time.monotonic() - began)) > 0:
                await asyncio.sleep(ahead)
            await publisher.publish(f"bench.samples.{doc['node_id']}", payload)
            if rate is None and i % 500 == 499:
                await publisher.flush()
                await asyncio.sleep(0)
        await publisher.flush()
        await asyncio.wait_for(done.wait(), 60)
        elapsed = time.monotonic() - began
        return {
            "paced_per_s": rate,
            "samples_per_message": samples,
            "message_bytes": len(payload),
            "messages_per_s": round(messages / elapsed, 1),
            "client_cpu_us_per_message": round(1e6 * (_cpu(me) - cpu) / messages, 1),
            "server_cpu_us_per_message": round(1e6 * (_cpu(server) - server_cpu) / messages, 1),
        }
    finally:
        await publisher.close()
        await subscriber.close()


async def run(
    nodes: int = DEFAULT_NODES,
    *,
    hold: float = 20.0,
    settle: float = 15.0,
    watch_seconds: float = 15.0,
    profile: Path | None = None,
) -> dict[str, Any]:
    """The three steps and the baseline (see the module docstring).

    ``profile``: record the masters of the pair with py-spy into this folder, from the end
    of the settle time on (the steady state, not the connect storm).
    """
    results: dict[str, Any] = {"nodes": nodes, "load_before": list(os.getloadavg())}
    steps: list[dict[str, Any]] = []
    with (
        LocalPostgres() as pg,
        LocalNats() as bus,
        tempfile.TemporaryDirectory(prefix="gdos-masters-") as tmp,
    ):
        assert bus.pid is not None
        server = psutil.Process(bus.pid)
        for index, (count, size) in enumerate([(1, nodes // 2), (1, nodes), (2, nodes)]):
            db_url = pg.create_database(f"bench{index}")
            join_token, password = secrets.token_urlsafe(24), secrets.token_urlsafe(12)
            masters: list[MasterUnderTest] = []
            try:
                for name in "ab"[:count]:
                    masters.append(
                        MasterUnderTest.start(
                            Path(tmp, f"{index}-{name}"),
                            args=("-bus", bus.url, "-master_id", name) if count > 1 else (),
                            db_url=db_url,
                            join_token=join_token,
                            admin_password=password,
                        )
                    )
                step = await fleet_step(
                    masters,
                    size,
                    hold,
                    settle=settle,
                    watch_seconds=watch_seconds,
                    others={"nats": server} if count > 1 else None,
                    profile=profile if count > 1 else None,
                    profile_steady=True,
                )
            finally:
                for master in masters:
                    master.close()
                pg.drop_database(f"bench{index}")
            step["load1"] = os.getloadavg()[0]
            cpu = step["master_cpu_percent"]
            cpu = cpu if isinstance(cpu, list) else [cpu]
            # per 1,000 nodes connected to it, and per 1,000 of the fleet it ingests
            step["cpu_per_1000_connected"] = [round(c / (size / count / 1000), 2) for c in cpu]
            step["cpu_per_1000_ingested"] = [round(c / (size / 1000), 2) for c in cpu]
            steps.append(step)
            shown = {k: v for k, v in step.items() if k != "profile"}
            print(f"  masters {count}, {size:>5} nodes: {json.dumps(shown)}", flush=True)
        results["steps"] = steps
        pair = steps[2]
        per_heartbeat = pair["samples_per_s"] / pair["heartbeats_per_s"] if pair else 1.0
        k = max(1, round(per_heartbeat))
        results["nats_baseline"] = [
            await nats_baseline(bus.url, server, samples=1),
            await nats_baseline(bus.url, server, samples=k),
            # as the pair sends them: its heartbeat rate, for 6 s
            await nats_baseline(
                bus.url,
                server,
                samples=k,
                messages=round(6 * pair["heartbeats_per_s"]),
                rate=pair["heartbeats_per_s"],
            ),
        ]
    results["bus_cost"] = bus_cost(*steps)
    results["load_after"] = list(os.getloadavg())
    return results


def bus_cost(half: dict[str, Any], whole: dict[str, Any], pair: dict[str, Any]) -> dict[str, Any]:
    """CPU per sample: a lone master's, and what the bus adds per mirrored sample.

    Master ``i`` of the pair receives the samples of the other's nodes: its mirrored rate
    is the other master's local rate. It is compared with the lone master of the whole
    fleet (``whole``), which receives the same number of messages of the same size (the
    heartbeat budget counts every node of the cluster, so each master of the pair gets
    half the heartbeats, each as large): the difference is what mirroring costs over
    ingesting a sample from a node of one's own, publishing one's own samples included.
    Against the lone master with the same connected nodes (``half``) the difference is
    the whole cost of the mirrored samples, less the heartbeats the pair's larger push
    interval saves.
    """

    def per_sample(cpu: float, rate: float) -> float | None:
        return round(1e6 * cpu / 100 / rate, 1) if rate else None

    each = pair["samples_per_s_each"]
    mirrored = [each[1], each[0]]
    cpu = pair["master_cpu_percent"]
    return {
        "local_cpu_us_per_sample": per_sample(whole["master_cpu_percent"], whole["samples_per_s"]),
        "local_cpu_us_per_sample_half": per_sample(
            half["master_cpu_percent"], half["samples_per_s"]
        ),
        "mirrored_samples_per_s": mirrored,
        "extra_cpu_us_per_mirrored_sample": [
            per_sample(c - whole["master_cpu_percent"], m)
            for c, m in zip(cpu, mirrored, strict=True)
        ],
        "cpu_us_per_mirrored_sample_vs_half": [
            per_sample(c - half["master_cpu_percent"], m)
            for c, m in zip(cpu, mirrored, strict=True)
        ],
        "nats_cpu_us_per_sample": per_sample(pair["cpu_percent_nats"], pair["samples_per_s"]),
    }


def _delay(d: dict[str, Any] | None) -> str:
    if not d:
        return "-"
    if not d.get("samples"):
        return f"no samples {d.get('error', '')}"
    return f"p50 {d['p50_s']} s / p99 {d['p99_s']} s ({d['samples']} samples)"


def report(results: dict[str, Any]) -> None:
    print(f"one master against two on one PostgreSQL + one NATS, {results['nodes']} nodes:")
    for s in results["steps"]:
        cpu = s["master_cpu_percent"]
        print(
            f"  {s['masters']} master(s), {s['nodes']:>5} nodes: {s['nodes_per_master']} per"
            f" master, master CPU {cpu} % ({s['cpu_per_1000_connected']} % per 1,000"
            f" connected nodes, {s['cpu_per_1000_ingested']} % per 1,000 ingested),"
            f" RSS {s['master_rss_mb']} MB, samples/s {s['samples_per_s_each']} (own nodes),"
            f" max ingest lag {s['ingest_lag_max_s']} s, loop lag {s['loop_lag_max_s']} s,"
            f" disconnects {s['storm_disconnects']}+{s['disconnects']},"
            f" NATS CPU {s.get('cpu_percent_nats', '-')} %, load1 {s['load1']:.2f}, ok {s['ok']}"
        )
        own = _delay(s.get("sample_to_browser"))
        print(f"      sample -> browser on the first master, its own nodes: {own}")
        if "sample_to_browser_other" in s:
            print(
                "      sample -> browser on the first master, nodes of the other (over the"
                f" bus): {_delay(s['sample_to_browser_other'])}"
            )
    cost = results["bus_cost"]
    print(
        f"  CPU per sample (all in), lone master: {cost['local_cpu_us_per_sample']} µs with the"
        f" whole fleet, {cost['local_cpu_us_per_sample_half']} µs with half of it"
    )
    print(
        f"  bus cost per mirrored sample, each master of the pair"
        f" ({cost['mirrored_samples_per_s']} mirrored samples/s): over the lone master of"
        f" the whole fleet {cost['extra_cpu_us_per_mirrored_sample']} µs; over the lone"
        f" master of half of it {cost['cpu_us_per_mirrored_sample_vs_half']} µs;"
        f" NATS server {cost['nats_cpu_us_per_sample']} µs per sample"
    )
    for b in results["nats_baseline"]:
        print(
            f"  raw baseline, bare nats-py publish -> subscribe + json.loads,"
            f" {'paced at ' + str(b['paced_per_s']) + '/s' if b['paced_per_s'] else 'unpaced'},"
            f" {b['samples_per_message']} sample(s) per message ({b['message_bytes']} B):"
            f" {b['messages_per_s']} messages/s, client {b['client_cpu_us_per_message']} µs"
            f" and server {b['server_cpu_us_per_message']} µs CPU per message"
        )
    for s in results["steps"]:
        for path, found in (s.get("profile") or {}).items():
            print(f"  profile {path}: loop busy in {found['busy']:.0%} of samples; inclusive:")
            for name, share in found["top"]:
                print(f"    {share:6.1%}  {name}")
    print(f"  load average before {results['load_before']}, after {results['load_after']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES, help="fleet of the pair")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds observed per step")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds before observing")
    parser.add_argument("--watch", type=float, default=15.0, help="seconds of live delays")
    parser.add_argument("--profile", type=Path, help="py-spy the pair, steady state")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = asyncio.run(
        run(
            args.nodes,
            hold=args.hold,
            settle=args.settle,
            watch_seconds=args.watch,
            profile=args.profile,
        )
    )
    return finish(results, report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
