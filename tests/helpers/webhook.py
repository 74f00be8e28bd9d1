"""A real webhook receiver on loopback for the alert tests (the ``hook`` fixture).

A ``ThreadingHTTPServer`` in a daemon thread on a free port: it answers every POST with
200 and records what came, so a test can check the bodies, their signature header, the
path (credentials in a receiver's URL) and the Host header (the destination policy).
It serves both sync tests and async ones (the master's client runs in the test's loop,
the server in its own thread).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

from gdos_sdk.testing import free_port


@attrs.frozen
class Delivery:
    """One POST the receiver got."""

    at: float  # time.time() on arrival
    path: str  # with the query string
    host: str  # the Host header
    signature: str  # the X-GDOS-Signature header, "" when there is none
    body: bytes

    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.body)
        return body


class WebhookReceiver:
    """Records each POST in ``received``, in the order they arrive."""

    def __init__(self) -> None:
        self.received: list[Delivery] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(
                    Delivery(
                        at=time.time(),
                        path=self.path,
                        host=self.headers.get("Host", ""),
                        signature=self.headers.get("X-GDOS-Signature", ""),
                        body=body,
                    )
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        return [delivery.json() for delivery in self.received]

    def statuses(self) -> list[str]:
        """The ``status`` of each body: "firing", "resolved" or "test"."""
        return [body["status"] for body in self.bodies()]

    def paths(self) -> list[str]:
        return [delivery.path for delivery in self.received]

    def hosts(self) -> list[str]:
        return [delivery.host for delivery in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
