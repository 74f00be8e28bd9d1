"""A TCP proxy for end-to-end tests: hold back chosen connections, or freeze live ones.

It runs its own event loop in a thread, so a synchronous test drives it while a worker
talks to the master through it:

* ``hold(marker)``: a new connection whose first bytes contain ``marker`` (say
  ``b"GET /api/v1/agent/packages/"``) is accepted but nothing of it is forwarded until
  ``release()`` (or dropped by ``release(drop=True)``), like a network path that is down
  while the agent channel stays up;
* ``freeze()``: every open connection stops forwarding in both directions without being
  closed (a half-dead TCP path: no FIN, no RST); new connections still get through;
* ``cut()``: every open connection is reset (RST) on both sides, as when a NAT or a
  firewall forgets it; new connections still get through.

Example::

    with TcpProxy(master_port) as proxy:
        worker = cluster.start_worker(env={"OPS_WORKER_CONNECT_MASTER_URL": proxy.url})
        proxy.hold(b"GET /api/v1/agent/packages/")
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

__all__ = ["TcpProxy"]


class _Link:
    """One proxied connection."""

    def __init__(self) -> None:
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.writers: list[asyncio.StreamWriter] = []

    def close(self) -> None:
        for writer in self.writers:
            writer.transport.abort()


class TcpProxy:
    """Forward 127.0.0.1:<port> to 127.0.0.1:<target>; see the module docstring."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.held = 0  # connections held back so far
        self.connections = 0  # connections accepted so far
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._links: list[_Link] = []
        self._marker: bytes | None = None
        self._gate: asyncio.Event | None = None
        self._drop = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def start(self) -> TcpProxy:
        self._thread.start()

        async def serve() -> int:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
            port: int = self._server.sockets[0].getsockname()[1]
            return port

        self.port = self._call(serve())
        return self

    def hold(self, marker: bytes) -> None:
        """Hold back new connections whose first bytes contain ``marker``."""

        async def set_hold() -> None:
            self._marker, self._gate, self._drop = marker, asyncio.Event(), False

        self._call(set_hold())

    def release(self, *, drop: bool = False) -> None:
        """Let held connections through (or close them with ``drop``); stop holding."""

        async def open_gate() -> None:
            self._marker, self._drop = None, drop
            if self._gate is not None:
                self._gate.set()

        self._call(open_gate())

    def freeze(self) -> int:
        """Stop forwarding on every open connection (without closing it); return how many."""

        async def stop() -> int:
            for link in self._links:
                link.flowing.clear()
            return len(self._links)

        count: int = self._call(stop())
        return count

    def cut(self) -> int:
        """Reset every open connection (both sides); return how many there were."""

        async def reset() -> int:
            links, self._links = self._links, []
            for link in links:
                link.close()
            return len(links)

        count: int = self._call(reset())
        return count

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        link = _Link()
        link.writers.append(writer)
        self._links.append(link)
        try:
            first = await reader.read(65536)
            marker, gate = self._marker, self._gate
            if marker is not None and gate is not None and marker in first:
                self.held += 1
                await gate.wait()
                if self._drop:
                    return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            link.writers.append(up_writer)
            up_writer.write(first)
            await asyncio.gather(
                self._pump(reader, up_writer, link), self._pump(up_reader, writer, link)
            )
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # closed, or the proxy shuts down (a handler must end quietly then)
        finally:
            link.close()

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link
    ) -> None:
        while True:
            await link.flowing.wait()
            data = await source.read(65536)
            if not data:
                break
            await link.flowing.wait()  # frozen meanwhile: swallow nothing, send nothing
            sink.write(data)
            await sink.drain()
        link.close()

    def close(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for link in self._links:
                link.close()
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._server is not None:
                await self._server.wait_closed()

        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
