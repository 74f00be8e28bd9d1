"""Where a worker dials a terminal stream: only to a master of its own list (docs/security.md).

A terminal opened on a master the node is not connected to reaches the worker through its
owner with the opening master's URL; the worker dials there only if its
``connect.master_url`` lists that master. The e2e side (two masters, the refusal reaching
the caller) is in tests/e2e/test_masters.py.
"""

from __future__ import annotations

import pytest

from gdos_master.fleet import AgentConnection
from gdos_master.relay import CommandRelay
from gdos_sdk.errors import PermissionDenied
from gdos_sdk.protocol import Request, TerminalOpenCommand, decode, encode
from gdos_worker.terminal import TerminalHost, dial_back_url, same_master

pytestmark = pytest.mark.anyio

MASTERS = ("https://m1.example.com:8443", "https://M2.example.com/gdos")


def test_no_requested_url_dials_the_master_it_is_connected_to() -> None:
    assert dial_back_url("", MASTERS, MASTERS[0]) == MASTERS[0]


def test_a_listed_master_is_dialled_by_the_workers_own_entry() -> None:
    # host case, a trailing slash, a default port and a path do not matter; the entry wins
    assert dial_back_url("https://m1.EXAMPLE.com:8443/", MASTERS, MASTERS[0]) == MASTERS[0]
    assert dial_back_url("https://m2.example.com:443", MASTERS, MASTERS[0]) == MASTERS[1]
    assert same_master("http://127.0.0.1", "http://127.0.0.1:80/x")


@pytest.mark.parametrize(
    "requested",
    [
        "https://evil.example.com:8443",  # another host
        "http://m1.example.com:8443",  # the same host, without TLS
        "https://m1.example.com:9443",  # another port
        "https://m1.example.com",  # 443, not the listed 8443
        "wss://m1.example.com:8443",  # not http(s)
        "https://m1.example.com:99999",  # no valid port at all
        "m1.example.com:8443",
    ],
)
def test_a_master_not_in_the_list_is_refused(requested: str) -> None:
    with pytest.raises(PermissionDenied, match="not one of them: add it to the worker's -master"):
        dial_back_url(requested, MASTERS, MASTERS[0])


def test_the_refusal_does_not_repeat_a_password_in_the_url() -> None:
    with pytest.raises(PermissionDenied) as refused:
        dial_back_url("https://user:hunter2@evil.example.com", MASTERS, MASTERS[0])
    assert "hunter2" not in refused.value.message
    assert "https://evil.example.com is not one of them" in refused.value.message


async def test_the_worker_refuses_before_starting_a_shell_or_dialling() -> None:
    host = TerminalHost(master_url=MASTERS[0], shell="/bin/sh", cwd="/", masters=MASTERS)
    command = TerminalOpenCommand(
        session_id="s1", token="t", master_url="https://evil.example.com:8443"
    )
    with pytest.raises(PermissionDenied, match=r"evil\.example\.com:8443 is not one of them"):
        await host.open(command, {"Authorization": "Bearer gdosn_secret"})
    assert host.sessions == 0


def test_master_url_is_sent_only_when_set() -> None:
    # a worker older than protocol 3 refuses unknown keys: the usual open must not carry it
    here = Request(id="r", command=TerminalOpenCommand(session_id="s", token="t"), timeout=5)
    assert "master_url" not in encode(here)
    assert decode(encode(here)) == here
    there = Request(
        id="r",
        command=TerminalOpenCommand(session_id="s", token="t", master_url="https://m2"),
        timeout=5,
    )
    assert '"master_url":"https://m2"' in encode(there)
    assert decode(encode(there)) == there


async def test_the_owner_refuses_a_dial_back_elsewhere_to_a_worker_too_old_for_it() -> None:
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    async def close() -> None:
        return None

    old = AgentConnection("n1", send, close, protocol=2)

    class Fleet:
        def connection(self, node_id: str) -> AgentConnection:
            return old

    class Bus:
        master_id = "a"

    relay = CommandRelay(Fleet(), Bus())  # type: ignore[arg-type]
    request = Request(
        id="r",
        command=TerminalOpenCommand(session_id="s", token="t", master_url="https://m2"),
        timeout=5,
    )
    reply = await relay.answer({"node_id": "n1", "request": encode(request)})
    assert reply["error"]["code"] == "conflict"
    assert "agent protocol 2" in reply["error"]["message"]
    assert "upgrade the worker" in reply["error"]["message"]
    assert sent == []  # nothing went down the channel
