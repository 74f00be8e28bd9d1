"""The terminal client's frame logic, without sockets: skip what was seen, learn the end."""

from __future__ import annotations

import json

from gdos_sdk.terminal_client import _Screen, terminal_link, terminal_url


def _session(**fields: object) -> str:
    return json.dumps({"op": "session", "id": "s1", "node_id": "n1", **fields})


def test_a_reattach_skips_the_part_of_the_replayed_screen_already_shown() -> None:
    screen = _Screen(node_id="n1", rows=24, cols=80)
    assert screen.feed(_session(reattached=False, offset=0)) == b""
    assert screen.feed(b"$ echo hi\r\nhi\r\n") == b"$ echo hi\r\nhi\r\n"
    assert screen.received == 15
    # Dropped; the master's ring holds output 5..25 (10 bytes more were printed meanwhile).
    screen.feed(_session(reattached=True, offset=5))
    ring = b"$ echo hi\r\nhi\r\n"[5:] + b"later\r\n$ "
    assert screen.feed(ring[:4]) == b""  # all already seen
    assert screen.feed(ring[4:]) == ring[10:]  # the rest is new
    assert screen.received == 15 + len(ring) - 10 and screen.reattached


def test_output_lost_beyond_the_ring_is_not_invented_and_old_masters_work() -> None:
    screen = _Screen(node_id="n1", rows=24, cols=80)
    screen.feed(_session(offset=0))
    screen.feed(b"x" * 10)
    screen.feed(_session(reattached=True, offset=100))  # more than the ring was printed
    assert screen.feed(b"tail") == b"tail"
    screen.feed(_session(reattached=True))  # a master without offsets: shown as sent
    assert screen.feed(b"again") == b"again"


def test_the_exit_frame_ends_the_session() -> None:
    screen = _Screen(node_id="n1", rows=24, cols=80)
    screen.feed(json.dumps({"op": "exit", "code": 3, "reason": "exited"}))
    assert (screen.ended, screen.exit_code, screen.reason) == (True, 3, "exited")


def test_urls_and_credentials() -> None:
    assert (
        terminal_url("https://m.example/", "n1", rows=3, cols=4, session_id="s")
        == "wss://m.example/api/v1/terminal/n1?rows=3&cols=4&session=s"
    )
    token = terminal_link(
        "http://127.0.0.1:1", authorization="Bearer gdos_x", cookies={"a": "b"}, verify=True
    )
    assert token.headers == {"Authorization": "Bearer gdos_x"} and token.ssl is None
    session = terminal_link(
        "https://m.example", authorization=None, cookies={"gdos_session": "abc"}, verify=False
    )
    assert session.headers == {"Cookie": "gdos_session=abc"}
    assert session.origin == "https://m.example" and session.ssl is not None
