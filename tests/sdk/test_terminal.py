"""The I/O-free terminal pieces: ring buffer, asciicast recorder, control frames."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdos_sdk.codec import converter
from gdos_sdk.errors import ValidationError
from gdos_sdk.terminal import (
    AsciicastRecorder,
    RingBuffer,
    TerminalSession,
    TerminalState,
    control,
    parse_asciicast,
    parse_control,
    recording_key,
)


def test_ring_buffer_keeps_the_last_bytes() -> None:
    ring = RingBuffer(8)
    ring.append(b"0123")
    assert ring.getvalue() == b"0123"
    ring.append(b"456789")
    assert ring.getvalue() == b"23456789" and len(ring) == 8
    ring.append(b"abcdefghijkl")  # larger than the buffer at once
    assert ring.getvalue() == b"efghijkl"
    assert ring.total == 22
    with pytest.raises(ValueError):
        RingBuffer(0)


@given(st.lists(st.binary(max_size=40), max_size=30), st.integers(1, 64))
def test_ring_buffer_equals_the_tail_of_everything(chunks: list[bytes], size: int) -> None:
    ring = RingBuffer(size)
    for chunk in chunks:
        ring.append(chunk)
    everything = b"".join(chunks)
    assert ring.getvalue() == everything[-size:] if everything else ring.getvalue() == b""
    assert ring.total == len(everything)


def test_recorder_writes_asciicast_v2_and_joins_split_utf8() -> None:
    rec = AsciicastRecorder(rows=24, cols=80, started_at=1000.0)
    snow = "☃".encode()
    lines = [
        rec.header(),
        rec.output(b"hi " + snow[:1], at=1000.5),
        rec.output(snow[1:] + b"\r\n", at=1001.0),
        rec.resize(40, 120, at=1002.0),
        rec.input(b"ls\r", at=1003.0),  # input is off by default: nothing
    ]
    header, events = parse_asciicast("".join(lines))
    assert header["version"] == 2 and header["width"] == 80 and header["height"] == 24
    assert [(e.time, e.code, e.data) for e in events] == [
        (0.5, "o", "hi "),
        (1.0, "o", "☃\r\n"),
        (2.0, "r", "120x40"),
    ]
    assert rec.size == sum(len(line) for line in lines)


def test_recorder_records_input_when_enabled_and_stops_at_the_limit() -> None:
    rec = AsciicastRecorder(rows=2, cols=2, started_at=0.0, record_input=True, max_bytes=200)
    text = rec.header() + rec.input(b"ls\r", at=1.0)
    assert json.loads(text.splitlines()[1]) == [1.0, "i", "ls\r"]
    for i in range(20):
        text += rec.output(b"x" * 20, at=2.0 + i)
    assert rec.truncated
    _, events = parse_asciicast(text)
    assert "recording size limit" in events[-1].data
    assert rec.output(b"more", at=99.0) == ""


def test_parse_asciicast_refuses_other_formats() -> None:
    with pytest.raises(ValidationError):
        parse_asciicast("")
    with pytest.raises(ValidationError):
        parse_asciicast('{"version": 1}\n')
    with pytest.raises(ValidationError):
        parse_asciicast('{"version": 2}\nnot json\n')


def test_control_frames_round_trip_and_sizes_are_checked() -> None:
    assert parse_control(control("resize", rows=30, cols=100)) == {
        "op": "resize",
        "rows": 30,
        "cols": 100,
    }
    for bad in (
        '["resize"]',
        "nope",
        '{"op": "resize", "rows": 0, "cols": 10}',
        '{"op": "resize", "rows": "3", "cols": 10}',
        '{"rows": 3}',
    ):
        with pytest.raises(ValidationError):
            parse_control(bad)


def test_session_model_round_trips_and_knows_its_duration() -> None:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC)
    session = TerminalSession(
        id="s1",
        node_id="n1",
        user="admin",
        state=TerminalState.CLOSED,
        started_at=start,
        ended_at=start + timedelta(seconds=90),
        recording=recording_key("s1"),
    )
    again = converter.structure(converter.unstructure(session), TerminalSession)
    assert again.duration == 90.0 and again.recording == "recordings/s1.cast"
