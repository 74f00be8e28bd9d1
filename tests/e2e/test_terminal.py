"""The web terminal through a real master and worker, with a WebSocket client as the browser."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from gdos_sdk import Client
from gdos_sdk.terminal import TerminalState, parse_asciicast
from gdos_sdk.testing import LocalCluster, wait_until

pytestmark = pytest.mark.e2e

# An explicit shell: this host's login profile may run slow hooks (pyenv rehash) that make
# the first prompt late. The default (the login shell) is covered in tests/sdk/test_pty.py.
SHELL = {"OPS_WORKER_TERMINAL_SHELL": "/bin/bash --noprofile --norc -i"}


@pytest.fixture
def running(cluster: LocalCluster) -> LocalCluster:
    cluster.start_master()
    cluster.start_worker(env=SHELL)
    return cluster


class Term:
    """A browser-like terminal client: collects output, remembers control frames."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.output = b""
        self.controls: list[dict[str, Any]] = []

    def pump(self, timeout: float) -> None:
        try:
            frame = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return
        if isinstance(frame, bytes):
            self.output += frame
        else:
            self.controls.append(json.loads(frame))

    def expect(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not seen; output so far: {self.output[-2000:]!r}")
            self.pump(0.2)

    def control(self, op: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.controls:
                if message.get("op") == op:
                    return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no {op!r} frame; got {self.controls}")
            try:
                self.pump(0.2)
            except ConnectionClosed:
                if not any(m.get("op") == op for m in self.controls):
                    raise

    def type(self, text: str) -> None:
        self.ws.send(text.encode())

    def resize(self, rows: int, cols: int) -> None:
        self.ws.send(json.dumps({"op": "resize", "rows": rows, "cols": cols}))


def _ws_url(cluster: LocalCluster, node_id: str, **query: Any) -> str:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return f"ws://127.0.0.1:{cluster.master_port}/api/v1/terminal/{node_id}?{qs}"


def _open(cluster: LocalCluster, node_id: str, token: str | None = None, **query: Any) -> Term:
    headers = {"Authorization": f"Bearer {token or cluster.admin_token()}"}
    ws = connect(
        _ws_url(cluster, node_id, **query), additional_headers=headers, open_timeout=30, legacy=True
    )
    return Term(ws)


def _user_token(cluster: LocalCluster, gdos: Client, name: str, role: str) -> str:
    gdos.create_user(name, "a-long-password-1", role)
    with Client(cluster.url) as other:
        other.login(name, "a-long-password-1")
        return other.create_token("t").secret


def _closed(gdos: Client, session_id: str) -> Any:
    def done() -> Any:
        session = gdos.get_terminal_session(session_id)
        return session if session.state == TerminalState.CLOSED else None

    return wait_until(done, timeout=20, what="the terminal session to close")


def test_terminal_echo_resize_reattach_and_recording(running: LocalCluster) -> None:
    with running.client() as gdos:
        node_id = gdos.list_nodes()[0].id
        term = _open(running, node_id, rows=24, cols=80)
        hello = term.control("session")
        session_id = hello["id"]
        assert hello["node_id"] == node_id and hello["reattached"] is False
        term.type("echo hello-$((6*7))\r")
        term.expect("hello-42")
        term.resize(33, 101)
        term.type("stty size\r")
        term.expect("33 101")
        live = gdos.list_terminal_sessions(live=True).items
        assert [s.id for s in live] == [session_id]
        assert live[0].state == TerminalState.ATTACHED

        # The browser drops; the shell keeps running and prints while nobody watches.
        term.type("sleep 1; echo while-away-$((2+3))\r")
        term.ws.close()
        time.sleep(2)
        assert gdos.get_terminal_session(session_id).state == TerminalState.DETACHED

        again = _open(running, node_id, session=session_id, rows=33, cols=101)
        hello = again.control("session")
        assert hello["id"] == session_id and hello["reattached"] is True
        again.expect("hello-42")  # the recent screen comes back from the ring buffer
        again.expect("while-away-5")
        again.type("echo after-$((1+1))\r")
        again.expect("after-2")
        again.type("exit\r")
        end = again.control("exit")
        assert end["reason"] == "exited" and end["code"] == 0
        again.ws.close()

        session = _closed(gdos, session_id)
        assert session.reason == "exited" and session.exit_code == 0
        assert session.recording == f"recordings/{session_id}.cast"
        header, events = parse_asciicast(gdos.get_terminal_recording(session_id))
        assert header["version"] == 2 and (header["width"], header["height"]) == (80, 24)
        played = "".join(e.data for e in events if e.code == "o")
        for text in ("hello-42", "33 101", "while-away-5", "after-2"):
            assert text in played
        assert any(e.code == "r" and e.data == "101x33" for e in events)
        assert not any(e.code == "i" for e in events)  # input is not recorded by default
        assert [e.time for e in events] == sorted(e.time for e in events)

        audit = gdos.list_audit(action="terminal.").items
        actions = {a.action: a for a in audit}
        assert actions["terminal.start"].params["session_id"] == session_id
        end_entry = actions["terminal.end"]
        assert end_entry.target == f"node:{node_id}"
        assert end_entry.params["recording"] == session.recording
        assert end_entry.params["duration"] > 2
        assert end_entry.params["user"].startswith("admin")


def test_terminal_refuses_viewer_operator_and_anonymous(running: LocalCluster) -> None:
    with running.client() as gdos:
        node_id = gdos.list_nodes()[0].id
        for name, role in (("vera", "viewer"), ("otto", "operator")):
            token = _user_token(running, gdos, name, role)
            with pytest.raises(InvalidStatus) as refused:
                _open(running, node_id, token)
            assert refused.value.response.status_code == 403
            with running.client(token) as other, pytest.raises(Exception, match="admin"):
                other.list_terminal_sessions()
        with pytest.raises(InvalidStatus) as anonymous:
            connect(_ws_url(running, node_id), open_timeout=10, legacy=True)
        assert anonymous.value.response.status_code == 401
        assert gdos.list_terminal_sessions().total == 0
        refusals = gdos.list_audit(action="terminal.open").items
        assert {a.status for a in refusals} >= {403, 401}


def test_worker_killed_mid_session_leaves_closed_session_with_recording(
    cluster: LocalCluster,
) -> None:
    cluster.start_master(
        env={
            "OPS_MASTER_TERMINAL_MAX_SESSIONS_PER_NODE": "1",
            "OPS_MASTER_TERMINAL_REATTACH_GRACE": "1",
        }
    )
    worker = cluster.start_worker(env={"OPS_WORKER_TERMINAL_SHELL": "/bin/sh -i"})
    with cluster.client() as gdos:
        node_id = gdos.list_nodes()[0].id

        # A second session on the node is over the cap: 409 before any socket opens.
        first = _open(cluster, node_id)
        first_id = first.control("session")["id"]
        with pytest.raises(InvalidStatus) as capped:
            _open(cluster, node_id)
        assert capped.value.response.status_code == 409
        # Nobody comes back within the 1 s grace: the shell is ended.
        first.ws.close()
        assert _closed(gdos, first_id).reason == "detached"

        term = _open(cluster, node_id)
        session_id = term.control("session")["id"]
        term.type("echo before-the-crash-$((40+2))\r")
        term.expect("before-the-crash-42")
        worker.kill()
        end = term.control("exit", timeout=20)
        assert end["reason"] == "worker_lost"
        session = _closed(gdos, session_id)
        assert session.reason == "worker_lost" and session.ended_at is not None
        _, events = parse_asciicast(gdos.get_terminal_recording(session_id))
        assert "before-the-crash-42" in "".join(e.data for e in events if e.code == "o")
        ends = [a for a in gdos.list_audit(action="terminal.end").items]
        assert any(a.params["session_id"] == session_id and a.result == "error" for a in ends)


def test_idle_session_is_closed_and_the_api_can_end_one(cluster: LocalCluster) -> None:
    cluster.start_master(env={"OPS_MASTER_TERMINAL_IDLE_TIMEOUT": "2"})
    cluster.start_worker(env=SHELL)
    with cluster.client() as gdos:
        node_id = gdos.list_nodes()[0].id
        idle = _open(cluster, node_id)
        idle_id = idle.control("session")["id"]
        assert idle.control("exit", timeout=20)["reason"] == "idle"
        assert _closed(gdos, idle_id).reason == "idle"

        busy = _open(cluster, node_id)
        busy_id = busy.control("session")["id"]
        gdos.close_terminal_session(busy_id)
        assert busy.control("exit")["reason"] == "closed"
        assert _closed(gdos, busy_id).reason == "closed"
        assert gdos.list_terminal_sessions(live=True).total == 0


def test_terminal_sockets_are_served_without_compression(running: LocalCluster) -> None:
    """Browsers offer permessage-deflate; the master declines it for terminal sockets only.

    Compressing bulk terminal output cost a third of the master's CPU (docs/benchmarks.md);
    the live channel keeps compression (small JSON messages that compress well).
    """
    with running.client() as gdos:
        node_id = gdos.list_nodes()[0].id
    headers = {"Authorization": f"Bearer {running.admin_token()}"}
    offer = {"additional_headers": headers, "open_timeout": 30, "compression": "deflate"}
    with connect(_ws_url(running, node_id, rows=24, cols=80), **offer) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert json.loads(ws.recv(timeout=15))["op"] == "session"
    live = f"ws://127.0.0.1:{running.master_port}/api/v1/live"
    with connect(live, **offer) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
