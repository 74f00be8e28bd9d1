"""Which master a worker dials next, and how long it waits (gdos_worker/masters.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close

from gdos_sdk.backoff import Backoff
from gdos_sdk.config import load_worker_settings
from gdos_worker.agent import Agent
from gdos_worker.masters import MasterList, failure_reason, shown_url
from gdos_worker.state import Identity, WorkDir

A, B, C = "https://a:8443", "https://b:8443", "https://c:8443"


def masters(*urls: str, seed: int = 7) -> MasterList:
    backoff = Backoff(initial=0.5, maximum=4.0, rng=random.Random(seed))
    return MasterList(urls, backoff, spread=0.5, rng=random.Random(seed + 1))


def test_a_failed_master_moves_the_worker_to_the_next_one_in_order() -> None:
    ml = masters(A, B, C)
    assert ml.current == A
    first = ml.failed()
    assert ml.current == B and 0 <= first < 0.5
    second = ml.failed()
    assert ml.current == C and 0 <= second < 0.5
    ml.failed()
    assert ml.current == A  # wraps around


def test_a_full_round_of_failures_backs_off_with_jitter_and_grows() -> None:
    ml = masters(A, B)
    round_ends = []
    for _ in range(6):
        within = ml.failed()  # A failed: B is tried at once (a short random wait)
        assert within < 0.5
        round_ends.append(ml.failed())  # B failed too: every master failed once more
        assert ml.current == A
    # 0.5, 1, 2, 4, 4, 4 each scaled by a jitter in [0.8, 1.2], capped at the maximum
    for delay, base in zip(round_ends, (0.5, 1, 2, 4, 4, 4), strict=True):
        assert base * 0.8 <= delay <= min(4.0, base * 1.2)
    assert round_ends[0] < round_ends[1] < round_ends[2]


def test_a_good_session_resets_the_backoff_and_starts_a_new_round() -> None:
    ml = masters(A, B)
    for _ in range(4):
        ml.failed()  # two full rounds: the backoff has grown
    assert ml.backoff.attempts == 2
    ml.failed()
    assert ml.current == B
    ml.connected()  # B welcomed us
    assert ml.backoff.attempts == 0 and ml.failures == 0
    # B dies: the worker moves to A at once, not after the grown backoff
    assert ml.failed() < 0.5 and ml.current == A
    # A is dead as well: a full round since the good session, the backoff starts again low
    assert 0.4 <= ml.failed() <= 0.6 and ml.current == B


def test_one_master_backs_off_after_every_failure_as_before() -> None:
    ml = masters(A)
    delays = [ml.failed() for _ in range(4)]
    assert ml.current == A
    for delay, base in zip(delays, (0.5, 1, 2, 4), strict=True):
        assert base * 0.8 <= delay <= min(4.0, base * 1.2)
    ml.connected()
    assert 0.4 <= ml.failed() <= 0.6


def test_the_waits_are_random_but_repeatable_with_a_seed() -> None:
    one, two = masters(A, B, C, seed=3), masters(A, B, C, seed=3)
    assert [one.failed() for _ in range(9)] == [two.failed() for _ in range(9)]
    spread = [masters(A, B, seed=s).failed() for s in range(50)]
    assert len(set(spread)) == 50 and min(spread) < 0.1 and max(spread) > 0.4


def test_an_empty_list_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one master"):
        masters()


def test_logs_show_a_master_without_its_password() -> None:
    assert shown_url("https://gdos:s3cret@m1:8443/x") == "https://m1:8443/x"
    assert shown_url("https://m1:8443") == "https://m1:8443"


def test_the_agent_builds_every_url_from_the_current_master(tmp_path: Path) -> None:
    settings = load_worker_settings(["-master", f"{A}/, http://127.0.0.1:9"], env={})
    workdir = WorkDir(tmp_path)
    agent = Agent(settings, workdir, Identity(node_id="n" * 12, credential=""), "1.0")
    assert agent.masters.urls == (A, "http://127.0.0.1:9")
    assert agent.ws_url == "wss://a:8443/api/v1/agent/ws"
    agent.masters.failed()
    assert agent.master_url == "http://127.0.0.1:9"
    assert agent.ws_url == "ws://127.0.0.1:9/api/v1/agent/ws"


@pytest.mark.anyio
async def test_pings_follow_the_push_interval_when_it_is_longer(tmp_path: Path) -> None:
    async def echo(connection: ServerConnection) -> None:
        await connection.wait_closed()

    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        settings = load_worker_settings(["-master", f"http://127.0.0.1:{port}"], env={})
        agent = Agent(settings, WorkDir(tmp_path), Identity(node_id="n" * 12, credential=""), "1")
        async with connect(f"ws://127.0.0.1:{port}", ping_interval=20) as ws:
            agent.push_interval = 1.0  # a watched node
            agent._pace_pings(ws)
            assert ws.ping_interval == 2.0  # connect.ping_interval
            agent.push_interval = 15.0  # a node of a large fleet
            agent._pace_pings(ws)
            assert ws.ping_interval == 7.5
        off = load_worker_settings(
            ["-master", f"http://127.0.0.1:{port}"],
            env={"OPS_WORKER_CONNECT_PING_INTERVAL": "0"},
        )
        quiet = Agent(off, WorkDir(tmp_path), Identity(node_id="n" * 12, credential=""), "1")
        async with connect(f"ws://127.0.0.1:{port}", ping_interval=None) as ws:
            quiet.push_interval = 15.0
            quiet._pace_pings(ws)
            assert ws.ping_interval is None  # pings stay off


def test_the_log_says_why_a_master_was_left() -> None:
    silent = ConnectionClosedError(None, Close(1011, "keepalive ping timeout"))
    assert failure_reason(silent, ping_timeout=3) == "no answer to a ping within 3 s"
    killed = ConnectionClosedError(None, None)  # kill -9: the socket just ended
    assert failure_reason(killed, ping_timeout=3) == "the connection broke (no close frame)"
    going = ConnectionClosedOK(Close(1001, "shutting down"), Close(1001, ""), True)
    assert failure_reason(going, ping_timeout=3) == (
        "the master closed the channel (code 1001: shutting down)"
    )
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)")
    assert failure_reason(refused, ping_timeout=3) == "connection refused"
    assert failure_reason(TimeoutError(), ping_timeout=3) == "no answer in time"
    assert failure_reason(OSError("no route to host"), ping_timeout=3) == "no route to host"
