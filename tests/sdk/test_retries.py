"""Idempotent requests survive dropped connections and 502/503 answers; POSTs are not repeated.

The server is real: a TCP server on loopback that closes the first connections without an
answer, then answers 503 a few times, then 200.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from gdos_sdk import AsyncClient, Client, RemoteError, TransportError
from gdos_sdk.client._base import Call, RetryPolicy


class Flaky(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, drops: int, unavailable: int, status: int = 503, body: bytes = b"") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.drops = drops
        self.unavailable = unavailable
        self.status = status
        self.body = body
        self.requests: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.StreamRequestHandler):
    server: Flaky

    def handle(self) -> None:
        request_line = self.rfile.readline().decode().strip()
        length = 0
        while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if length:
            self.rfile.read(length)
        with self.server.lock:
            self.server.requests.append(request_line)
            seen = len(self.server.requests)
        if seen <= self.server.drops:
            self.connection.shutdown(socket.SHUT_RDWR)  # no answer at all
            return
        if seen <= self.server.drops + self.server.unavailable:
            body = self.server.body or b'{"error": {"code": "x", "message": "busy"}}'
            self._answer(self.server.status, body, "Retry-After: 0\r\n")
            return
        self._answer(200, json.dumps({"status": "ok"}).encode())

    def _answer(self, status: int, body: bytes, extra: str = "") -> None:
        head = (
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
        )
        self.wfile.write(head.encode() + body)


@pytest.fixture
def flaky(request: pytest.FixtureRequest) -> Iterator[Flaky]:
    drops, unavailable, *rest = request.param
    server = Flaky(drops, unavailable, *rest)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


FAST = {"retries": 3}


@pytest.mark.parametrize("flaky", [(2, 1)], indirect=True)
def test_sync_get_is_retried_until_it_succeeds(flaky: Flaky) -> None:
    with Client(flaky.url, "t", **FAST) as gdos:
        gdos.retry = RetryPolicy(retries=3, backoff=0.01)
        began = time.monotonic()
        assert gdos.health() == {"status": "ok"}
    assert len(flaky.requests) == 4 and time.monotonic() - began < 5


@pytest.mark.anyio
@pytest.mark.parametrize("flaky", [(1, 2)], indirect=True)
async def test_async_get_is_retried_until_it_succeeds(flaky: Flaky) -> None:
    async with AsyncClient(flaky.url, "t", **FAST) as gdos:
        gdos.retry = RetryPolicy(retries=3, backoff=0.01)
        assert await gdos.health() == {"status": "ok"}
    assert len(flaky.requests) == 4


@pytest.mark.parametrize("flaky", [(0, 9)], indirect=True)
def test_retries_give_up_with_the_last_error(flaky: Flaky) -> None:
    with Client(flaky.url, "t") as gdos:
        gdos.retry = RetryPolicy(retries=2, backoff=0.01)
        with pytest.raises(TransportError, match="busy"):
            gdos.health()
    assert len(flaky.requests) == 3


@pytest.mark.parametrize("flaky", [(1, 0)], indirect=True)
def test_a_post_is_never_repeated(flaky: Flaky) -> None:
    with Client(flaky.url, "t") as gdos:
        gdos.retry = RetryPolicy(retries=3, backoff=0.01)
        with pytest.raises(TransportError):
            gdos.create_system("s")
    assert flaky.requests == ["POST /api/v1/systems HTTP/1.1"]


@pytest.mark.parametrize("flaky", [(1, 0)], indirect=True)
def test_a_post_marked_safe_is_retried(flaky: Flaky) -> None:
    with Client(flaky.url, "t") as gdos:
        gdos.retry = RetryPolicy(retries=3, backoff=0.01)
        call = Call("POST", "/x", lambda r: r.json(), json={}, safe=True)
        assert gdos.send(call) == {"status": "ok"}
    assert len(flaky.requests) == 2


@pytest.mark.parametrize("flaky", [(2, 0)], indirect=True)
def test_retries_off(flaky: Flaky) -> None:
    with Client(flaky.url, "t", retries=0) as gdos, pytest.raises(TransportError):
        gdos.health()
    assert len(flaky.requests) == 1


@pytest.mark.parametrize(
    "flaky",
    [(0, 5, 502, b'{"error": {"code": "worker_error", "message": "no such file"}}')],
    indirect=True,
)
def test_a_workers_own_error_is_not_retried(flaky: Flaky) -> None:
    with Client(flaky.url, "t") as gdos:
        gdos.retry = RetryPolicy(retries=3, backoff=0.01)
        with pytest.raises(RemoteError, match="no such file"):
            gdos.health()
    assert len(flaky.requests) == 1


def test_backoff_doubles_and_honours_retry_after() -> None:
    policy = RetryPolicy(retries=5, backoff=0.5, maximum=4.0)
    delays = [policy.delay(n) for n in range(1, 6)]
    for delay, base in zip(delays, [0.5, 1.0, 2.0, 4.0, 4.0], strict=True):
        assert base * 0.8 <= delay <= min(4.0, base * 1.2)
    asked = httpx.Response(503, headers={"Retry-After": "3"})
    assert 3.0 <= policy.delay(1, asked) <= 4.0
    assert policy.delay(1, httpx.Response(503, headers={"Retry-After": "60"})) == 4.0
