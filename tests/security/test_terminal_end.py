"""Findings 5 and 11: every way a terminal session ends stores its recording, audits the end and
frees its slot; a refused open is audited with who was refused.

Before the fix ``{"op": "close"}`` cancelled the task that was inside the relay's ``end()``:
no ``terminal.end`` entry, the recording left in tmp/, ``DELETE`` answered 204 and did
nothing, and the session kept counting against the node's limit (the 6th open got 409 until
the master restarted). Refused opens were audited as ``anonymous``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from gdos_sdk import Client, ConflictError
from gdos_sdk.terminal import TerminalState, parse_asciicast
from gdos_sdk.testing import LocalCluster, wait_until

from .sockets import SHELL, Socket, credentials, open_terminal, user_with_token

pytestmark = pytest.mark.e2e

GRACE = 2  # terminal.reattach_grace of this module's master


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("terminal-end") / "cluster")
    try:
        local.start_master(env={"OPS_MASTER_TERMINAL_REATTACH_GRACE": str(GRACE)})
        local.start_worker(env=SHELL)
        yield local
    finally:
        local.close()


@pytest.fixture(scope="module")
def gdos(cluster: LocalCluster) -> Iterator[Client]:
    with cluster.client() as client:
        yield client


@pytest.fixture(scope="module")
def node_id(gdos: Client) -> str:
    return gdos.list_nodes()[0].id


def _open(cluster: LocalCluster, node_id: str, marker: str) -> tuple[Socket, str]:
    term = open_terminal(cluster, node_id, credentials(token=cluster.admin_token()))
    session_id = str(term.control("session")["id"])
    term.ws.send(f"echo {marker}-$((6*7))\r".encode())
    term.expect(f"{marker}-42")
    return term, session_id


def _ended(gdos: Client, session_id: str, reason: str, marker: str) -> None:
    """Closed with ``reason``, its recording stored (with what was shown), one end entry."""
    session = wait_until(
        lambda: (s := gdos.get_terminal_session(session_id)).state == TerminalState.CLOSED and s,
        timeout=15,
        what=f"session {session_id} to be closed",
    )
    assert session.reason == reason
    assert session.recording == f"recordings/{session_id}.cast", session
    _, events = parse_asciicast(gdos.get_terminal_recording(session_id))
    assert f"{marker}-42" in "".join(e.data for e in events if e.code == "o")
    ends = [
        e
        for e in gdos.list_audit(action="terminal.end", limit=500).items
        if e.params.get("session_id") == session_id
    ]
    assert len(ends) == 1, ends
    assert ends[0].params["reason"] == reason and ends[0].params["recording"] == session.recording


def test_close_frames_end_sessions_completely(
    cluster: LocalCluster, gdos: Client, node_id: str
) -> None:
    limit = 5  # terminal.max_sessions_per_node
    closed = []
    for i in range(limit + 1):
        term, session_id = _open(cluster, node_id, f"close{i}")
        term.ws.send('{"op": "close"}')
        assert term.control("exit")["reason"] == "closed"
        assert term.wait_closed(10) is not None
        closed.append(session_id)
    # Every slot was given back: one more opens.
    term, session_id = _open(cluster, node_id, "after")
    term.ws.send('{"op": "close"}')
    term.wait_closed(10)
    for i, session_id in enumerate(closed):
        _ended(gdos, session_id, "closed", f"close{i}")
    assert gdos.list_terminal_sessions(live=True).items == []


def test_delete_ends_a_live_session(cluster: LocalCluster, gdos: Client, node_id: str) -> None:
    term, session_id = _open(cluster, node_id, "deleted")
    gdos.close_terminal_session(session_id)
    assert term.control("exit")["reason"] == "closed"
    assert term.wait_closed(5) is not None
    _ended(gdos, session_id, "closed", "deleted")
    with pytest.raises(ConflictError):
        gdos.close_terminal_session(session_id)


def test_the_shells_exit_ends_the_session(
    cluster: LocalCluster, gdos: Client, node_id: str
) -> None:
    term, session_id = _open(cluster, node_id, "exited")
    term.ws.send(b"exit 3\r")
    end = term.control("exit")
    assert end["reason"] == "exited" and end["code"] == 3
    _ended(gdos, session_id, "exited", "exited")


def test_a_browser_gone_past_the_grace_ends_the_session(
    cluster: LocalCluster, gdos: Client, node_id: str
) -> None:
    term, session_id = _open(cluster, node_id, "dropped")
    term.close()
    time.sleep(GRACE)
    _ended(gdos, session_id, "detached", "dropped")


def test_refused_opens_are_audited_with_who_was_refused(
    cluster: LocalCluster, gdos: Client, node_id: str
) -> None:
    for role in ("viewer", "operator"):
        _, token = user_with_token(cluster, gdos, f"refused-{role}", role)
        with pytest.raises(InvalidStatus) as refused:
            open_terminal(cluster, node_id, credentials(token=token))
        assert refused.value.response.status_code == 403
        entry = gdos.list_audit(action="terminal.open", limit=1).items[0]
        assert entry.actor_kind == "token" and entry.actor.startswith(f"refused-{role} ")
        assert entry.result == "error" and entry.status == 403
    with pytest.raises(InvalidStatus):
        open_terminal(cluster, node_id, {})
    anonymous: Any = gdos.list_audit(action="terminal.open", limit=1).items[0]
    assert anonymous.actor_kind == "anonymous" and anonymous.status == 401


def test_master_shutdown_ends_open_sessions(
    cluster: LocalCluster, gdos: Client, node_id: str
) -> None:
    """Last in this module: it stops and restarts the master."""
    term, session_id = _open(cluster, node_id, "shutdown")
    assert cluster.master is not None
    cluster.master.terminate()
    assert term.control("exit")["reason"] == "master_restart"  # told before the master went
    assert term.wait_closed(10) is not None
    cluster.start_master(env={"OPS_MASTER_TERMINAL_REATTACH_GRACE": str(GRACE)})
    _ended(gdos, session_id, "master_restart", "shutdown")
