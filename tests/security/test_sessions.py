"""Finding 4 (and 15's socket caps and /healthz): rights end sessions, at once.

Open terminals and live sockets end within a second when their user is disabled or demoted
(a terminal: below admin), when the token they were opened with is revoked, and when the
browser session they were opened with ends (logout, password change). Against real master
and worker processes. Before the fix an open shell outlived all of these, and a live socket
noticed only at its next 10-second check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from gdos_sdk import Client
from gdos_sdk.terminal import TerminalState, parse_asciicast
from gdos_sdk.testing import LocalCluster, wait_until

from .sockets import (
    PASSWORD,
    SHELL,
    Socket,
    browser_login,
    credentials,
    open_live,
    open_terminal,
    session_cookie,
    user_with_token,
)

pytestmark = pytest.mark.e2e

PROMPTLY = 1.0  # seconds within which a socket must close after the change


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("sessions") / "cluster")
    try:
        local.start_master(
            env={
                "OPS_MASTER_AUTH_MAX_SOCKETS_PER_USER": "3",
                "OPS_MASTER_TERMINAL_MAX_SESSIONS_PER_USER": "2",
            }
        )
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


def _shell(cluster: LocalCluster, node_id: str, headers: Any) -> tuple[Socket, str]:
    term = open_terminal(cluster, node_id, headers)
    session_id = str(term.control("session")["id"])
    term.ws.send(b"echo ready-$((40+2))\r")
    term.expect("ready-42")
    return term, session_id


def _ended_revoked(gdos: Client, session_id: str) -> None:
    """The relay ended the session: closed, reason revoked, recorded, audited."""
    session = wait_until(
        lambda: (s := gdos.get_terminal_session(session_id)).state == TerminalState.CLOSED and s,
        timeout=10,
        what="the session to be closed",
    )
    assert session.reason == "revoked"
    assert session.recording, "the recording was not stored"
    _, events = parse_asciicast(gdos.get_terminal_recording(session_id))
    assert "ready-42" in "".join(e.data for e in events if e.code == "o")
    ends = [
        e
        for e in gdos.list_audit(action="terminal.end", limit=200).items
        if e.params.get("session_id") == session_id
    ]
    assert len(ends) == 1 and ends[0].params["reason"] == "revoked"


@pytest.mark.parametrize("change", ["demote", "disable"])
def test_losing_admin_ends_an_open_terminal_at_once(
    cluster: LocalCluster, gdos: Client, node_id: str, change: str
) -> None:
    user_id, token = user_with_token(cluster, gdos, f"second-{change}", "admin")
    term, session_id = _shell(cluster, node_id, credentials(token=token))
    if change == "demote":
        gdos.update_user(user_id, role="operator")
    else:
        gdos.update_user(user_id, disabled=True)
    took = term.wait_closed(5)
    assert took is not None and took < PROMPTLY, f"the shell stayed open ({took})"
    assert any(t.get("op") == "exit" and t.get("reason") == "revoked" for t in term.texts), (
        term.texts
    )
    _ended_revoked(gdos, session_id)


def test_revoking_a_token_ends_only_what_it_opened(
    cluster: LocalCluster, gdos: Client, node_id: str
) -> None:
    user_id, first = user_with_token(cluster, gdos, "tokens", "admin")
    with Client(cluster.url, token=first) as own:
        second = own.create_token("other")
    term, session_id = _shell(cluster, node_id, credentials(token=first))
    live_first = open_live(cluster, credentials(token=first))
    live_second = open_live(cluster, credentials(token=second.secret))
    first_id = next(t.id for t in gdos.list_tokens() if t.user_id == user_id and t.name == "t")
    gdos.revoke_token(first_id)
    for socket in (term, live_first):
        took = socket.wait_closed(5)
        assert took is not None and took < PROMPTLY, (
            f"a socket of the revoked token stayed ({took})"
        )
    assert live_first.close_code == 4401
    assert live_second.still_open(1.5), "the other token's socket was closed too"
    live_second.close()
    _ended_revoked(gdos, session_id)


def test_logout_and_password_change_end_the_sessions_sockets(
    cluster: LocalCluster, gdos: Client
) -> None:
    gdos.create_user("browser", PASSWORD, "viewer")
    port = cluster.master_port
    with (
        contextlib.closing(browser_login(cluster, "browser", PASSWORD)) as first,
        contextlib.closing(browser_login(cluster, "browser", PASSWORD)) as second,
    ):
        live_first = open_live(cluster, credentials(cookie=session_cookie(first), port=port))
        live_second = open_live(cluster, credentials(cookie=session_cookie(second), port=port))
        first.post("/auth/logout").raise_for_status()
        took = live_first.wait_closed(5)
        assert took is not None and took < PROMPTLY, f"the logged-out socket stayed ({took})"
        assert live_first.close_code == 4401
        assert live_second.still_open(1.0), "logging out one session closed another's socket"

        changed = second.post(
            "/auth/password",
            json={"current_password": PASSWORD, "new_password": "a-new-long-password"},
        )
        changed.raise_for_status()
        took = live_second.wait_closed(5)
        assert took is not None and took < PROMPTLY, f"the old session's socket stayed ({took})"
        # The caller goes on with the fresh session it was given.
        assert second.get("/auth/me").status_code == 200


def test_sockets_per_user_are_capped(cluster: LocalCluster, gdos: Client, node_id: str) -> None:
    _, token = user_with_token(cluster, gdos, "greedy", "admin")
    headers = credentials(token=token)
    sockets = [open_live(cluster, headers) for _ in range(3)]
    with pytest.raises(InvalidStatus) as refused:
        open_live(cluster, headers)
    assert refused.value.response.status_code == 409
    assert b"max_sockets_per_user" in (refused.value.response.body or b"")
    sockets[0].close()
    wait_until(lambda: _can_open_live(cluster, headers), timeout=5, what="a freed socket slot")
    for socket in sockets[1:]:
        socket.close()

    terms = [open_terminal(cluster, node_id, headers) for _ in range(2)]
    for term in terms:
        term.control("session")
    with pytest.raises(InvalidStatus) as refused:
        open_terminal(cluster, node_id, headers)
    assert refused.value.response.status_code == 409
    assert b"max_sessions_per_user" in (refused.value.response.body or b"")
    for term in terms:
        term.ws.send('{"op": "close"}')
        term.wait_closed(10)


def _can_open_live(cluster: LocalCluster, headers: Any) -> bool:
    socket = open_live(cluster, headers)
    socket.close()
    return True


def test_the_workers_health_check_tells_nothing_about_the_fleet(cluster: LocalCluster) -> None:
    worker = cluster.workers[0]
    health = httpx.get(f"http://127.0.0.1:{worker.port}/healthz", timeout=5).json()
    assert health["status"] == "ok" and health["connected"] is True
    assert set(health) == {"status", "connected", "instances"}, health
    text = str(health)
    assert cluster.node_id(worker) not in text and str(cluster.master_port) not in text
