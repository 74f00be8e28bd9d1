"""REST speed of the master against a bare Quart app on the same Hypercorn config (issue 15).

``GET /api/v1/nodes`` with an API token, against a minimal Quart app that answers the same
path with the same bytes (fetched from the master once) and checks nothing. Both run as
their own process with the Hypercorn settings gdos-master uses (asyncio, no access log);
the same client (``clients`` keep-alive connections, see :func:`load`) loads each in turn,
``rounds`` times, so the machine's noise hits both sides alike. The figure that matters is the ratio
of requests per second within one round.

Run alone: ``python benchmarks/bench_rest.py [--nodes 50] [--seconds 5] [--rounds 4]``;
``--master-code DIR`` runs the master from another checkout (e.g. an older commit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyspy  # noqa: E402
from bench_fleet import start_server, stop_server  # noqa: E402

from gdos_sdk.testing import LocalCluster, free_port  # noqa: E402

PATH = "/api/v1/nodes"

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


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
    """One keep-alive GET: send the request, read the status line, headers and body."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head[9:12]
    if status != b"200":
        raise RuntimeError(f"answer {head[:200]!r}")
    length = None
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length is None:
        raise RuntimeError(f"no content-length in {head[:200]!r}")
    await reader.readexactly(length)


async def load(url: str, headers: dict[str, str], seconds: float, clients: int) -> dict[str, Any]:
    """Requests per second and latency percentiles of ``clients`` keep-alive connections
    looping GETs.

    The client is a few lines over asyncio streams rather than httpx: on two shared cores
    an HTTP library's own work would be the bottleneck, and the figure would measure it.
    """
    parts = httpx.URL(url)
    lines = [f"GET {parts.raw_path.decode()} HTTP/1.1", f"Host: {parts.host}:{parts.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    times: list[float] = []
    deadline = time.monotonic() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection(parts.host, parts.port)
        try:
            await _get(reader, writer, request)  # warm
            while (began := time.monotonic()) < deadline:
                await _get(reader, writer, request)
                times.append(time.monotonic() - began)
        finally:
            writer.close()

    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.monotonic() - began
    ordered = sorted(times)
    return {
        "req_per_s": round(len(times) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1),
    }


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        for _ in range(200):
            try:
                await http.get(url)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


async def run(
    nodes: int = 50,
    seconds: float = 5.0,
    rounds: int = 4,
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
            await wait_ready(bare_url)
            results: dict[str, Any] = {
                "nodes": nodes,
                "body_bytes": len(response.content),
                "clients": clients,
                "seconds": seconds,
                "rounds": [],
            }
            assert cluster.master is not None
            spy: Any = contextlib.nullcontext()
            if profile is not None and pyspy.available():
                spy = pyspy.Profile(cluster.master.pid, profile)
            for _ in range(rounds):
                quart = await load(bare_url, {}, seconds, clients)
                with spy:
                    gdos = await load(gdos_url, headers, seconds, clients)
                results["rounds"].append(
                    {
                        "bare_quart": quart,
                        "gdos": gdos,
                        "ratio": round(gdos["req_per_s"] / quart["req_per_s"], 3),
                    }
                )
            results["ratio_median"] = statistics.median(r["ratio"] for r in results["rounds"])
            if isinstance(spy, pyspy.Profile):
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
    )
    for one in results["rounds"]:
        g, q = one["gdos"], one["bare_quart"]
        print(
            f"  gdos {g['req_per_s']} req/s (p50 {g['p50_ms']} ms, p99 {g['p99_ms']} ms)"
            f"  bare Quart {q['req_per_s']} req/s (p50 {q['p50_ms']} ms, p99 {q['p99_ms']} ms)"
            f"  ratio {one['ratio']}"
        )
    print(f"  median ratio {results['ratio_median']} (goal >= 0.9)")
    found = results.get("profile")
    if found:
        print(f"  master busy in {found['busy']:.0%} of samples; inclusive shares:")
        for name, share in found["top"]:
            print(f"    {share:6.1%} {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--master-code", type=Path, help="run the master from this checkout")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--profile", type=Path, help="record the master with py-spy (last round) into this file"
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
