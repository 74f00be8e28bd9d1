"""Agent frame sizes of a real worker with many instances (sizes the agent frame limit).

Starts a master and a worker on loopback, deploys ``--instances`` instances of a package
that only sleeps, and reads the master's ``gdos_master_agent_frame_max_bytes``:

1. while running (1 s heartbeats: a node sample and one sample per instance);
2. the hello after a master restart (it carries the whole inventory; the master logs its
   size);
3. after a ``--outage`` second outage (the first heartbeat carries the backlog).

Usage::

    python benchmarks/agent_frames.py --instances 200

docs/security.md ("Nodes and the agent channel") quotes the figures; the limit is
``gdos_sdk.protocol.MAX_FRAME``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gdos_sdk.protocol import HEARTBEAT_FRAME, MAX_FRAME  # noqa: E402
from gdos_sdk.testing import LocalCluster  # noqa: E402


def sleeper(folder: Path) -> Path:
    path = folder / "sleepy-1.0.0.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(
            "service.json",
            json.dumps({"name": "sleepy", "version": "1.0.0", "entrypoint": "run.sh"}),
        )
        entry = zipfile.ZipInfo("run.sh")
        entry.external_attr = 0o755 << 16
        zf.writestr(entry, "#!/bin/sh\nexec sleep 100000\n")
    return path


def largest_frame(cluster: LocalCluster) -> int:
    text = httpx.get(
        f"{cluster.url}/metrics",
        headers={"Authorization": f"Bearer {cluster.admin_token()}"},
        timeout=30,
    ).text
    found = re.search(r"^gdos_master_agent_frame_max_bytes\{\} (\S+)$", text, re.MULTILINE)
    assert found is not None
    return int(float(found.group(1)))


def restart_master(cluster: LocalCluster, pause: float) -> None:
    assert cluster.master is not None
    cluster.master.terminate()
    time.sleep(pause)
    cluster.start_master()
    cluster.wait_worker_connected(cluster.workers[0], timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--outage", type=float, default=20.0, help="seconds the master is away")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="gdos-frames-") as tmp,
        LocalCluster(Path(tmp) / "cluster") as cluster,
    ):
        cluster.start_master()
        worker = cluster.start_worker()
        node_id = cluster.wait_worker_connected(worker)
        with cluster.client() as gdos:
            uploaded = gdos.upload_package(sleeper(Path(tmp)))
            system = gdos.create_system("frames")
            module = gdos.create_module(system.id, "m", uploaded.name, uploaded.version)
            for _ in range(args.instances):
                gdos.deploy(module.id, node_id, start=True)
        time.sleep(5)
        running = largest_frame(cluster)
        restart_master(cluster, 0)
        assert cluster.master is not None
        sizes = re.findall(r"connected; hello of (\d+) bytes", cluster.master.output())
        hello = int(sizes[-1])
        restart_master(cluster, args.outage)
        time.sleep(2)
        backlog = largest_frame(cluster)
    per_second = running
    print(f"worker with {args.instances} instances (largest agent frame seen by the master):")
    print(f"  1 s heartbeat:                 {running / 1000:8.1f} KB")
    print(f"  hello (inventory):             {hello / 1000:8.1f} KB")
    print(f"  heartbeat after {args.outage:g} s away:   {backlog / 1000:8.1f} KB")
    print(f"  so at a 15 s push interval:   ~{15 * per_second / 1e6:8.2f} MB")
    print(
        f"  limit {MAX_FRAME / 2**20:g} MiB per frame; the worker splits heartbeats into"
        f" {HEARTBEAT_FRAME / 2**20:g} MiB frames"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
