"""Simulate a fleet of workers in one process over real WebSocket connections.

Each simulated node speaks the agent protocol like a real worker: it joins with the cluster
join token (then uses its node credential), sends ``hello`` with a fingerprint and its
inventory, pushes 1 s samples in heartbeat batches at the interval the master asks for
(``configure``), and answers commands. Frames are built from templates rather than through
the codec, so one core can drive thousands of nodes.

Usage::

    python tools/fleet_sim.py --master http://127.0.0.1:8080 --join-token T --nodes 1000

or from Python (benchmarks, UI tests)::

    sim = FleetSim(master_url, join_token, nodes=1000)
    await sim.start(); ...; await sim.stop()
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

PROTOCOL_VERSION = 1

FINGERPRINT = {
    "os": "linux",
    "os_version": "Debian GNU/Linux 12",
    "kernel": "6.1.0-sim",
    "arch": "x86_64",
    "cpu_model": "Simulated CPU",
    "cpu_cores": 8,
    "cpu_physical_cores": 4,
    "memory_bytes": 16 * 2**30,
    "disks": [
        {"device": "/dev/sda1", "mountpoint": "/", "fstype": "ext4", "total_bytes": 200 * 2**30}
    ],
    "macs": ["02:00:00:00:00:01"],
    "machine_id": None,
    "boot_time": 0.0,
    "python": "3.11",
}


def node_sample(ts: float, rng: random.Random) -> str:
    """One NodeSample as JSON text (hand-written for speed; same shape as the codec's)."""
    cpu = rng.uniform(2, 60)
    return (
        f'{{"ts":{ts:.3f},"cpu_percent":{cpu:.2f},"load1":{cpu / 25:.2f},'
        f'"load5":{cpu / 30:.2f},"load15":{cpu / 35:.2f},"mem_total":17179869184,'
        f'"mem_used":{int(8e9 + cpu * 1e7)},"mem_percent":{46 + cpu / 10:.2f},'
        f'"swap_total":0,"swap_used":0,"disk_read_bps":{rng.uniform(0, 5e5):.1f},'
        f'"disk_write_bps":{rng.uniform(0, 2e6):.1f},"uptime_seconds":{ts % 1e6:.0f},'
        f'"disks":[{{"mountpoint":"/","total_bytes":214748364800,"used_bytes":107374182400,'
        f'"percent":50.0}}],"net":[{{"interface":"eth0","rx_bps":{rng.uniform(0, 1e6):.1f},'
        f'"tx_bps":{rng.uniform(0, 1e6):.1f}}}]}}'
    )


class SimNode:
    """One simulated worker."""

    def __init__(self, sim: FleetSim, index: int) -> None:
        self.sim = sim
        self.index = index
        self.node_id = str(uuid.uuid4())
        self.hostname = f"sim-{index:05d}"
        self.credential = ""
        self.push_interval = 1.0
        self.connected = asyncio.Event()
        self.disconnects = 0
        self.refusals = 0  # hellos the master answered with an error instead of a welcome
        self.ws_url = sim.ws_urls[index % len(sim.ws_urls)]
        self.rng = random.Random(index)
        self.task: asyncio.Task[None] | None = None
        self.pusher: asyncio.Task[None] | None = None
        self.last_sample = 0.0

    def _hello(self) -> str:
        return json.dumps(
            {
                "type": "hello",
                "protocol": PROTOCOL_VERSION,
                "node_id": self.node_id,
                "hostname": self.hostname,
                "agent_version": "sim",
                "fingerprint": FINGERPRINT,
                "addresses": [
                    f"10.{self.index // 65536 % 256}.{self.index // 256 % 256}.{self.index % 256}"
                ],
                "instances": [],
            }
        )

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._session()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except (OSError, WebSocketException, TimeoutError, ValueError):
                pass
            if self.connected.is_set():
                self.disconnects += 1
            self.connected.clear()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 30.0)

    async def _session(self) -> None:
        secret = self.credential or self.sim.join_token
        headers = {"Authorization": f"Bearer {secret}", "X-GDOS-Node-Id": self.node_id}
        async with connect(
            self.ws_url,
            additional_headers=headers,
            open_timeout=30,
            compression=None,
            ping_interval=None,
            max_size=2**24,
        ) as ws:
            await ws.send(self._hello())
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if welcome.get("type") != "welcome":
                self.refusals += 1
                self.sim.last_refusal = str(welcome.get("message", welcome))
                raise ValueError(f"refused: {welcome}")
            self.node_id = welcome["node_id"]
            self.credential = welcome.get("credential") or self.credential
            self.push_interval = float(welcome["heartbeat_interval"])
            self.connected.set()
            self.last_sample = time.time() - 1
            self.pusher = asyncio.get_running_loop().create_task(self._push(ws))
            try:
                async for frame in ws:
                    self._dispatch(ws, json.loads(frame))
            finally:
                if self.pusher is not None:
                    self.pusher.cancel()
                    with contextlib.suppress(BaseException):
                        await self.pusher

    def _dispatch(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "configure":
            old, self.push_interval = self.push_interval, float(message["push_interval"])
            if self.push_interval != old and self.pusher is not None:
                # As the real worker does: shorter (watched now), push what is buffered at
                # once; longer (the fleet grew), wait a random phase of the new interval from
                # now, so the fleet does not push in the same second.
                first = (
                    0.0 if self.push_interval < old else self.rng.uniform(0.1, self.push_interval)
                )
                self.pusher.cancel()
                self.pusher = asyncio.get_running_loop().create_task(self._push(ws, first=first))
        elif kind == "request":
            reply = json.dumps(
                {
                    "type": "response",
                    "id": message["id"],
                    "ok": False,
                    "error": {"code": "simulated", "message": "simulated node runs nothing"},
                }
            )
            asyncio.get_running_loop().create_task(ws.send(reply))

    async def _push(self, ws: ClientConnection, *, first: float | None = None) -> None:
        # Start each node at a random phase so the fleet does not beat in unison.
        await asyncio.sleep(self.rng.uniform(0, self.push_interval) if first is None else first)
        while True:
            now = time.time()
            samples = []
            ts = self.last_sample + 1
            while ts <= now:
                samples.append(node_sample(ts, self.rng))
                ts += 1
            self.last_sample = ts - 1
            if not samples:
                samples.append(node_sample(now, self.rng))
            frame = (
                f'{{"type":"heartbeat","ts":{now:.3f},"node_samples":[{",".join(samples)}],'
                f'"instance_samples":[]}}'
            )
            await ws.send(frame)
            self.sim.frames_sent += 1
            self.sim.samples_sent += len(samples)
            await asyncio.sleep(self.push_interval)


class FleetSim:
    """N simulated workers against one master, or spread over several (node i dials master
    ``i % len(masters)``)."""

    def __init__(
        self,
        master_url: str | Sequence[str],
        join_token: str,
        *,
        nodes: int,
        ramp_per_second: float = 500.0,
    ) -> None:
        urls = [master_url] if isinstance(master_url, str) else list(master_url)
        self.ws_urls = [
            "ws" + base[len("http") :] + "/api/v1/agent/ws"
            for base in (u.rstrip("/") for u in urls)
        ]
        self.join_token = join_token
        self.last_refusal = ""
        self.nodes = [SimNode(self, i) for i in range(nodes)]
        self.ramp = ramp_per_second
        self.frames_sent = 0
        self.samples_sent = 0

    async def start(self, *, wait: float = 120.0) -> float:
        """Connect every node (ramped); return the seconds it took until all were welcomed."""
        began = time.monotonic()
        loop = asyncio.get_running_loop()
        for i, node in enumerate(self.nodes):
            node.task = loop.create_task(node.run())
            if self.ramp and i % 50 == 49:
                await asyncio.sleep(50 / self.ramp)
        await asyncio.wait_for(asyncio.gather(*(n.connected.wait() for n in self.nodes)), wait)
        return time.monotonic() - began

    def connected(self) -> int:
        return sum(1 for n in self.nodes if n.connected.is_set())

    def disconnects(self) -> int:
        return sum(n.disconnects for n in self.nodes)

    def refusals(self) -> int:
        return sum(n.refusals for n in self.nodes)

    async def stop(self) -> None:
        for node in self.nodes:
            if node.task is not None:
                node.task.cancel()
        await asyncio.gather(
            *(n.task for n in self.nodes if n.task is not None), return_exceptions=True
        )


async def _main(args: argparse.Namespace) -> None:
    sim = FleetSim(args.master, args.join_token, nodes=args.nodes)
    took = await sim.start()
    print(f"{args.nodes} simulated nodes connected in {took:.1f} s; Ctrl-C to stop", flush=True)
    try:
        while True:
            await asyncio.sleep(10)
            print(
                f"connected {sim.connected()}  disconnects {sim.disconnects()}  "
                f"frames {sim.frames_sent}  samples {sim.samples_sent}",
                flush=True,
            )
    finally:
        await sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--master", default="http://127.0.0.1:8080")
    parser.add_argument("--join-token", required=True)
    parser.add_argument("--nodes", type=int, default=100)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
