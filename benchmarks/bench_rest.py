"""REST speed of the master against a bare Quart app on the same Hypercorn config (issue 15).

``GET /api/v1/nodes`` with an API token, against a minimal Quart app that answers the same
path with the same body bytes (fetched from the master once) and checks nothing. Both run
as their own process with the Hypercorn settings gdos-master uses (asyncio, no access log);
the same client (``clients`` keep-alive connections, see :func:`load`) sends both the same
request bytes (the token too, which the bare app ignores) and loads each in turn,
``rounds`` times, so the machine's noise hits both sides alike. The figure that matters is
the ratio of requests per second within one round; the median over the rounds is reported.

Run alone: ``python benchmarks/bench_rest.py [--nodes 50] [--seconds 3] [--rounds 7]``;
``--master-code DIR`` runs the master from another checkout (e.g. an older commit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import attrs
import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyspy  # noqa: E402
from bench_fleet import start_server, stop_server  # noqa: E402

from gdos_sdk.testing import LocalCluster, free_port  # noqa: E402

PATH = "/api/v1/nodes"
SLICES = 6  # alternating slices per side and round

# The bare app: the same Hypercorn settings as gdos_master.cli, one route, a fixed body.
BARE_APP = textwrap.dedent("""
    import asyncio, logging, sys
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from quart import Quart, Response

    body = open(sys.argv[2], "rb").read()
    app = Quart("bare")

    @app.get("/api/v1/nodes")
    async def nodes():
        return Response(body, content_type="application/json")

    config = Config()
    config.bind = ["127.0.0.1:" + sys.argv[1]]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 5
    config.websocket_ping_interval = None
    asyncio.run(serve(app, config))
""")


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
    """One keep-alive GET: send the request, read the status line, headers and body.

    Returns whether the server closes the connection after this answer (Hypercorn does
    after ``keep_alive_max_requests``, 1,000 by default).
    """
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head[9:12]
    if status != b"200":
        raise RuntimeError(f"answer {head[:200]!r}")
    length = None
    closes = False
    for line in head.split(b"\r\n"):
        name = line[:16].lower()
        if name.startswith(b"content-length:"):
            length = int(line[15:])
        elif name.startswith(b"connection:"):
            closes = b"close" in line.lower()
    if length is None:
        raise RuntimeError(f"no content-length in {head[:200]!r}")
    await reader.readexactly(length)
    return closes


@attrs.define
class Load:
    """Requests timed against one server: their latencies, the wall time and the server's
    CPU time they took."""

    times: list[float] = attrs.field(factory=list)
    elapsed: float = 0.0
    cpu: float = 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.times)
        return {
            "req_per_s": round(len(ordered) / self.elapsed, 1),
            "p50_ms": round(1000 * statistics.median(ordered), 1),
            "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1),
            # The server process's CPU time per answer: what it costs, whatever the
            # client and the other jobs on the machine did meanwhile.
            "cpu_us": round(1e6 * self.cpu / len(ordered), 1),
        }


async def load(
    url: str, headers: dict[str, str], seconds: float, clients: int, into: Load, server: Any
) -> None:
    """Add to ``into`` ``seconds`` of ``clients`` keep-alive connections looping GETs
    (``server``: the psutil process answering them).

    The client is a few lines over asyncio streams rather than httpx: on two shared cores
    an HTTP library's own work would be the bottleneck, and the figure would measure it.
    """
    parts = httpx.URL(url)
    lines = [f"GET {parts.raw_path.decode()} HTTP/1.1", f"Host: {parts.host}:{parts.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    connections = [await asyncio.open_connection(parts.host, parts.port) for _ in range(clients)]
    try:
        for i, (reader, writer) in enumerate(connections):
            if await _get(reader, writer, request):  # warm
                writer.close()
                connections[i] = await asyncio.open_connection(parts.host, parts.port)
        deadline = time.monotonic() + seconds

        async def client(i: int) -> None:
            while (began := time.monotonic()) < deadline:
                reader, writer = connections[i]
                closes = await _get(reader, writer, request)
                into.times.append(time.monotonic() - began)
                if closes:
                    writer.close()
                    connections[i] = await asyncio.open_connection(parts.host, parts.port)

        cpu = server.cpu_times()
        began = time.monotonic()
        await asyncio.gather(*(client(i) for i in range(clients)))
        into.elapsed += time.monotonic() - began
        after = server.cpu_times()
        into.cpu += after.user + after.system - cpu.user - cpu.system
    finally:
        for _, writer in connections:
            writer.close()


async def wait_ready(url: str, body: bytes) -> None:
    """Wait until ``url`` answers 200 with ``body`` (not some other server on a reused port)."""
    async with httpx.AsyncClient(timeout=2) as http:
        for _ in range(200):
            try:
                answer = await http.get(url)
                if answer.status_code == 200 and answer.content == body:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} never answered with the expected body")


async def run(
    nodes: int = 50,
    seconds: float = 3.0,
    rounds: int = 7,
    clients: int = 8,
    master_env: dict[str, str] | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(Path(tmp) / "cluster")
        bare = None
        try:
            cluster.start_master(env={"OPS_MASTER_LOG_LEVEL": "warning", **(master_env or {})})
            with cluster.client() as admin:
                for i in range(nodes):
                    admin.plan_node(f"node-{i:04d}", addresses=[f"10.1.{i // 250}.{i % 250}"])
            token = cluster.admin_token()
            headers = {"Authorization": f"Bearer {token}"}
            gdos_url = cluster.url + PATH
            async with httpx.AsyncClient(headers=headers, timeout=30) as http:
                response = await http.get(gdos_url)
                response.raise_for_status()
            body = Path(tmp, "body.json")
            body.write_bytes(response.content)
            Path(tmp, "bare_app.py").write_text(BARE_APP)
            port = free_port()
            bare = start_server([sys.executable, "bare_app.py", str(port), str(body)], tmp)
            bare_url = f"http://127.0.0.1:{port}{PATH}"
            await wait_ready(bare_url, response.content)
            results: dict[str, Any] = {
                "nodes": nodes,
                "body_bytes": len(response.content),
                "clients": clients,
                "seconds": seconds,
                "rounds": [],
            }
            assert cluster.master is not None
            master = psutil.Process(cluster.master.pid)
            bare_process = psutil.Process(bare.pid)
            for _ in range(rounds):
                # Short slices, alternating: a burst of other jobs on the machine hits
                # both sides of a round alike.
                quart, gdos = Load(), Load()
                for _ in range(SLICES):
                    await load(bare_url, headers, seconds / SLICES, clients, quart, bare_process)
                    await load(gdos_url, headers, seconds / SLICES, clients, gdos, master)
                one = {"bare_quart": quart.summary(), "gdos": gdos.summary()}
                one["ratio"] = round(one["gdos"]["req_per_s"] / one["bare_quart"]["req_per_s"], 3)
                one["cpu_ratio"] = round(one["bare_quart"]["cpu_us"] / one["gdos"]["cpu_us"], 3)
                results["rounds"].append(one)
            results["ratio_median"] = round(
                statistics.median(r["ratio"] for r in results["rounds"]), 3
            )
            results["cpu_ratio_median"] = round(
                statistics.median(r["cpu_ratio"] for r in results["rounds"]), 3
            )
            if profile is not None and pyspy.available():
                # Apart from the measured rounds: py-spy takes CPU time of its own.
                with pyspy.Profile(cluster.master.pid, profile, rate=200) as spy:
                    await load(gdos_url, headers, seconds, clients, Load(), master)
                results["profile"] = {
                    "busy": round(spy.busy(), 3),
                    "top": [(name, round(share, 3)) for name, share in spy.top(40)],
                }
            return results
        finally:
            if bare is not None:
                stop_server(bare)
            cluster.close()


def report(results: dict[str, Any]) -> None:
    print(
        f"GET {PATH}: {results['nodes']} nodes ({results['body_bytes']} bytes),"
        f" {results['clients']} clients, {results['seconds']} s per side and round"
        f" in {SLICES} alternating slices"
    )
    for one in results["rounds"]:
        g, q = one["gdos"], one["bare_quart"]
        print(
            f"  gdos {g['req_per_s']} req/s (p50 {g['p50_ms']} ms, p99 {g['p99_ms']} ms,"
            f" {g['cpu_us']} us CPU)  bare Quart {q['req_per_s']} req/s (p50 {q['p50_ms']} ms,"
            f" p99 {q['p99_ms']} ms, {q['cpu_us']} us CPU)  ratio {one['ratio']}"
            f" (CPU {one['cpu_ratio']})"
        )
    print(
        f"  median ratio {results['ratio_median']} (goal >= 0.9);"
        f" CPU per answer, bare/gdos: {results['cpu_ratio_median']}"
    )
    found = results.get("profile")
    if found:
        print(f"  master busy in {found['busy']:.0%} of samples; inclusive shares:")
        for name, share in found["top"]:
            print(f"    {share:6.1%} {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--master-code", type=Path, help="run the master from this checkout")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the master (a run after the rounds) into this file",
    )
    args = parser.parse_args()
    env = {"PYTHONPATH": str(args.master_code.absolute())} if args.master_code else None
    results = asyncio.run(
        run(args.nodes, args.seconds, args.rounds, args.clients, env, args.profile)
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
