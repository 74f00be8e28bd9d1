"""Web terminal benchmarks (part of ``nox -s bench``; also runnable alone).

(a) keystroke echo round trip through the master: one byte typed into
    ``/api/v1/terminal/<node>`` until its echo comes back (browser socket -> master ->
    worker stream -> PTY -> and back), p50 and p99 over a few hundred keystrokes;
(b) bulk output throughput through the relay (a shell printing N bytes, counted at the
    browser's socket, recorded by the master on the way) against raw PTY read throughput
    of the same command on the same machine, read by this process with the same
    :class:`~gdos_sdk.pty.posix.PosixPty` the worker uses, in the same run, as a ratio.

Targets (issue 5): p50 < 5 ms, p99 < 20 ms on loopback; relay >= half the raw throughput.
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

from websockets.sync.client import ClientConnection, connect  # noqa: E402

from gdos_sdk.pty import PtySpec, open_pty  # noqa: E402
from gdos_sdk.testing import LocalCluster  # noqa: E402

SHELL = "/bin/sh -i"
BULK = "head -c {n} /dev/zero | tr '\\000' x; echo; echo END-$((40+2))-BULK"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _read_until(ws: ClientConnection, marker: bytes, timeout: float = 60.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        frame = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(frame, bytes):
            seen += frame
    return seen


def echo_round_trips(ws: ClientConnection, count: int) -> list[float]:
    """Seconds from sending one printable byte to seeing it echoed (cooked-mode tty echo)."""
    times = []
    letters = b"abcdefghijklmnopqrstuvwxyz"
    for i in range(count):
        key = letters[i % len(letters) : i % len(letters) + 1]
        began = time.perf_counter()
        ws.send(key)
        got = b""
        while key not in got:
            frame = ws.recv(timeout=10)
            if isinstance(frame, bytes):
                got += frame
        times.append(time.perf_counter() - began)
        if i % 50 == 49:
            ws.send(b"\x15")  # Ctrl-U: clear the line now and then
            time.sleep(0.05)
            while True:
                try:
                    ws.recv(timeout=0.05)
                except TimeoutError:
                    break
    ws.send(b"\x15")
    return times


def relay_throughput(ws: ClientConnection, size: int) -> float:
    """Bytes per second of a shell's bulk output, counted where a browser would get it."""
    _ = _drain(ws)
    marker = b"END-42-BULK"
    received = 0
    tail = b""
    began = time.perf_counter()
    ws.send(BULK.format(n=size).encode() + b"\r")
    while marker not in tail:
        frame = ws.recv(timeout=120)
        if isinstance(frame, bytes):
            received += frame.count(b"x")
            tail = tail[-32:] + frame[-64:] if len(frame) < 64 else frame[-64:]
    elapsed = time.perf_counter() - began
    assert received >= size, (received, size)
    return received / elapsed


def _drain(ws: ClientConnection) -> int:
    n = 0
    while True:
        try:
            frame = ws.recv(timeout=0.2)
        except TimeoutError:
            return n
        n += len(frame)


async def _raw_pty(size: int) -> float:
    pty = open_pty(PtySpec(argv=["/bin/sh", "-c", BULK.format(n=size)]))
    received = 0
    began = time.perf_counter()
    while chunk := await pty.read():
        received += chunk.count(b"x")
    elapsed = time.perf_counter() - began
    await pty.close()
    assert received >= size, (received, size)
    return received / elapsed


def raw_pty_throughput(size: int) -> float:
    """Bytes per second of the same command read straight from a PTY by this process."""
    return asyncio.run(_raw_pty(size))


def measure(folder: Path, *, keys: int = 300, size: int = 32 * 1024 * 1024) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with LocalCluster(folder / "terminal-cluster") as cluster:
        cluster.start_master()
        worker = cluster.start_worker(env={"OPS_WORKER_TERMINAL_SHELL": SHELL})
        node_id = cluster.wait_worker_connected(worker)
        url = f"ws://127.0.0.1:{cluster.master_port}/api/v1/terminal/{node_id}?rows=50&cols=200"
        headers = {"Authorization": f"Bearer {cluster.admin_token()}"}
        options: dict[str, Any] = {"max_size": None, "open_timeout": 30, "ping_interval": None}
        with connect(url, additional_headers=headers, **options) as ws:
            ws.send(b"PS1='$ '\r")
            time.sleep(1.0)
            _drain(ws)
            echo_round_trips(ws, 30)  # warm-up
            times = echo_round_trips(ws, keys)
            results["echo_p50_ms"] = statistics.median(times) * 1000
            results["echo_p99_ms"] = _percentile(times, 0.99) * 1000
            results["echo_samples"] = len(times)
            relay = [relay_throughput(ws, size) for _ in range(3)]
            ws.send(b"exit\r")
        raw = [raw_pty_throughput(size) for _ in range(3)]
    results["relay_mib_s"] = statistics.median(relay) / 2**20
    results["raw_pty_mib_s"] = statistics.median(raw) / 2**20
    results["relay_to_raw_ratio"] = results["relay_mib_s"] / results["raw_pty_mib_s"]
    results["bulk_bytes"] = size
    return results


def report(results: dict[str, Any]) -> None:
    print(
        f"terminal keystroke echo through the master, {results['echo_samples']} keys: "
        f"p50 {results['echo_p50_ms']:.2f} ms, p99 {results['echo_p99_ms']:.2f} ms "
        f"(targets < 5 ms, < 20 ms)"
    )
    print(
        f"terminal bulk output ({results['bulk_bytes'] // 2**20} MiB): relay "
        f"{results['relay_mib_s']:.1f} MiB/s vs raw PTY read {results['raw_pty_mib_s']:.1f} MiB/s "
        f"= {results['relay_to_raw_ratio']:.2f} of raw (target >= 0.5)"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gdos-bench-terminal-") as tmp:
        results = measure(Path(tmp), keys=args.keys, size=args.mib * 2**20)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
