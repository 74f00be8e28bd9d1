"""WebSocket clients for the session and terminal tests: a browser-like terminal and a live socket.

The master and worker are real processes (:class:`~gdos_sdk.testing.LocalCluster`); these
clients speak to them with the ``websockets`` library, with an API token or with a browser
session cookie (plus the ``Origin`` a page would send).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from gdos_sdk import Client
from gdos_sdk.testing import LocalCluster

# An explicit shell: this host's login profile may run slow hooks that make the first prompt
# late (as in tests/e2e/test_terminal.py).
SHELL = {"OPS_WORKER_TERMINAL_SHELL": "/bin/bash --noprofile --norc -i"}
PASSWORD = "a-long-password-1"


def credentials(*, token: str | None = None, cookie: str | None = None, port: int = 0) -> Any:
    if token is not None:
        return {"Authorization": f"Bearer {token}"}
    assert cookie is not None
    return {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}


def browser_login(cluster: LocalCluster, username: str, password: str) -> httpx.Client:
    """An HTTP client logged in as a browser is: session cookie, CSRF header."""
    http = httpx.Client(base_url=f"{cluster.url}/api/v1", timeout=30)
    response = http.post("/auth/login", json={"username": username, "password": password})
    response.raise_for_status()
    http.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return http


def session_cookie(http: httpx.Client) -> str:
    """The ``Cookie`` header that browser sends."""
    return "; ".join(f"{name}={value}" for name, value in http.cookies.items())


class Socket:
    """A WebSocket that remembers text frames and how and when it closed."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.output = b""
        self.texts: list[dict[str, Any]] = []
        self.closed_at: float | None = None
        self.close_code: int | None = None

    def pump(self, timeout: float) -> bool:
        """Read one frame (False once the socket has closed)."""
        if self.closed_at is not None:
            return False
        try:
            frame = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return True
        except ConnectionClosed as exc:
            self.closed_at = time.monotonic()
            self.close_code = exc.rcvd.code if exc.rcvd is not None else None
            return False
        if isinstance(frame, bytes):
            self.output += frame
        else:
            self.texts.append(json.loads(frame))
        return True

    def expect(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            assert time.monotonic() < deadline, f"{text!r} not seen: {self.output[-500:]!r}"
            assert self.pump(0.2), f"closed before {text!r} was seen"

    def control(self, op: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.texts:
                if message.get("op") == op:
                    return message
            assert time.monotonic() < deadline, f"no {op!r} frame: {self.texts}"
            assert self.pump(0.2), f"closed before a {op!r} frame: {self.texts}"

    def wait_closed(self, timeout: float) -> float | None:
        """Seconds until the socket closed, or None if it stayed open ``timeout`` seconds."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if not self.pump(0.05):
                assert self.closed_at is not None
                return self.closed_at - began
        return None

    def still_open(self, seconds: float) -> bool:
        return self.wait_closed(seconds) is None

    def close(self) -> None:
        self.ws.close()


def open_terminal(cluster: LocalCluster, node_id: str, headers: Any, **query: Any) -> Socket:
    qs = "&".join(f"{k}={v}" for k, v in {"rows": 24, "cols": 80, **query}.items())
    url = f"ws://127.0.0.1:{cluster.master_port}/api/v1/terminal/{node_id}?{qs}"
    ws = connect(url, additional_headers=headers, open_timeout=30, legacy=True)
    return Socket(ws)


def open_live(cluster: LocalCluster, headers: Any) -> Socket:
    ws = connect(
        f"ws://127.0.0.1:{cluster.master_port}/api/v1/live",
        additional_headers=headers,
        open_timeout=30,
        legacy=True,
    )
    socket = Socket(ws)
    ws.send(json.dumps({"op": "subscribe", "topic": "fleet"}))
    deadline = time.monotonic() + 20
    while not socket.texts:  # subscribed: the snapshot came
        assert time.monotonic() < deadline and socket.pump(0.2), "no live snapshot"
    return socket


def user_with_token(cluster: LocalCluster, gdos: Client, name: str, role: str) -> tuple[str, str]:
    """Create a user; return (user id, an API token of theirs)."""
    user = gdos.create_user(name, PASSWORD, role)
    with Client(cluster.url) as own:
        own.login(name, PASSWORD)
        return user.id, own.create_token("t").secret
