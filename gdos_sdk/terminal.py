"""Web terminal pieces shared by master, worker and clients (no I/O here).

- :class:`TerminalSession`: a session as the API shows it (live or ended).
- :class:`RingBuffer`: the last bytes a terminal printed, replayed on reattach.
- :class:`AsciicastRecorder`: turns relayed bytes into asciicast v2 lines;
  :func:`parse_asciicast` reads them back.
- The control frames of the terminal sockets (:func:`control`, :func:`parse_control`).

Both terminal sockets (browser <-> master, master <-> worker stream) carry the
terminal's bytes as **binary** frames (input one way, output the other) and
control messages as **text** frames, one JSON object each::

    {"op": "resize", "rows": 40, "cols": 120}      browser -> master -> worker
    {"op": "session", "id": "...", "node_id": "...", "reattached": false,
     "rows": 24, "cols": 80, "offset": 0}          master -> browser, first frame
    {"op": "exit", "code": 0, "reason": "exited"}  worker -> master -> browser, last frame
    {"op": "close"}                                 master -> worker: end the PTY

Example::

    ring = RingBuffer(65536)
    ring.append(b"$ echo hi\\r\\nhi\\r\\n")
    recorder = AsciicastRecorder(rows=24, cols=80, started_at=time.time())
    line = recorder.output(b"hi\\r\\n", at=time.time())   # '[0.013, "o", "hi\\r\\n"]\\n'
"""

from __future__ import annotations

import codecs
import enum
import json
from datetime import datetime
from typing import Any

import attrs

from gdos_sdk.codec import parse_json
from gdos_sdk.display import displayed
from gdos_sdk.errors import ValidationError

__all__ = [
    "MAX_COLS",
    "MAX_ROWS",
    "RECORDINGS_PREFIX",
    "TERMINAL_TOKEN_HEADER",
    "AsciicastRecorder",
    "CastEvent",
    "RingBuffer",
    "TerminalSession",
    "TerminalState",
    "control",
    "parse_asciicast",
    "parse_control",
    "recording_key",
]

RECORDINGS_PREFIX = "recordings/"
TERMINAL_TOKEN_HEADER = "X-GDOS-Terminal-Token"  # the worker's one-time stream token
MAX_ROWS = 1000
MAX_COLS = 2000


class TerminalState(enum.StrEnum):
    """``attached``: a browser is connected; ``detached``: waiting for one to reattach;
    ``ending``: being closed (the recording is being stored, the end audited)."""

    STARTING = "starting"
    ATTACHED = "attached"
    DETACHED = "detached"
    ENDING = "ending"
    CLOSED = "closed"


@displayed
@attrs.frozen
class TerminalSession:
    """One web terminal session and its recording.

    ``reason`` says why it ended: ``exited`` (the shell ended), ``idle`` (no traffic for
    ``terminal.idle_timeout``), ``detached`` (no browser came back within the grace),
    ``worker_lost`` (the worker's stream or channel dropped), ``closed`` (an admin ended
    it), ``master_restart``, or ``error``.
    """

    id: str
    node_id: str
    user: str
    state: TerminalState
    started_at: datetime
    ended_at: datetime | None = None
    reason: str = ""
    exit_code: int | None = None
    rows: int = 24
    cols: int = 80
    recording: str = ""  # storage key of the asciicast file ("" until stored)
    recording_size: int = 0
    ip: str = ""

    @property
    def duration(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


def recording_key(session_id: str) -> str:
    """The storage key of a session's recording."""
    return f"{RECORDINGS_PREFIX}{session_id}.cast"


class RingBuffer:
    """The last ``capacity`` bytes appended (a terminal's recent screen).

    Example::

        ring = RingBuffer(8)
        ring.append(b"0123456789")
        ring.getvalue()  # b"23456789"
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._buf = bytearray()
        self.total = 0  # bytes ever appended

    def append(self, data: bytes) -> None:
        self.total += len(data)
        if len(data) >= self.capacity:
            self._buf[:] = data[-self.capacity :]
            return
        self._buf += data
        excess = len(self._buf) - self.capacity
        if excess > 0:
            del self._buf[:excess]

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def __len__(self) -> int:
        return len(self._buf)


@displayed
@attrs.frozen
class CastEvent:
    """One asciicast v2 event: seconds since the start, code (``o``, ``i``, ``r``), data."""

    time: float
    code: str
    data: str


class AsciicastRecorder:
    """Asciicast v2 text for a session, one line per call (header first).

    Bytes are decoded incrementally, so a UTF-8 character split across two
    frames is recorded whole. Input is recorded only with ``record_input``.
    Past ``max_bytes`` of text, events are dropped and one marker is written.
    """

    def __init__(
        self,
        *,
        rows: int,
        cols: int,
        started_at: float,
        record_input: bool = False,
        max_bytes: int = 0,
        env: dict[str, str] | None = None,
        title: str = "",
    ) -> None:
        self.started_at = started_at
        self.record_input = record_input
        self.max_bytes = max_bytes
        self.size = 0
        self.truncated = False
        self._out = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._in = codecs.getincrementaldecoder("utf-8")(errors="replace")
        header: dict[str, Any] = {
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": int(started_at),
            "env": env or {"TERM": "xterm-256color"},
        }
        if title:
            header["title"] = title
        self._header = json.dumps(header, ensure_ascii=False) + "\n"

    def header(self) -> str:
        self.size += len(self._header)
        return self._header

    def _event(self, at: float, code: str, data: str) -> str:
        if not data or self.truncated:
            return ""
        line = json.dumps(
            [round(max(0.0, at - self.started_at), 6), code, data], ensure_ascii=False
        )
        line += "\n"
        if self.max_bytes and self.size + len(line) > self.max_bytes:
            self.truncated = True
            marker = "\r\n[gdos: recording size limit reached; the rest is not recorded]\r\n"
            line = json.dumps([round(at - self.started_at, 6), "o", marker]) + "\n"
        self.size += len(line)
        return line

    def output(self, data: bytes, *, at: float) -> str:
        return self._event(at, "o", self._out.decode(data))

    def input(self, data: bytes, *, at: float) -> str:
        if not self.record_input:
            return ""
        return self._event(at, "i", self._in.decode(data))

    def resize(self, rows: int, cols: int, *, at: float) -> str:
        return self._event(at, "r", f"{cols}x{rows}")


def parse_asciicast(text: str) -> tuple[dict[str, Any], list[CastEvent]]:
    """The header and events of an asciicast v2 recording; ValidationError if malformed."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValidationError("empty recording")
    try:
        header = json.loads(lines[0])
        if not isinstance(header, dict) or header.get("version") != 2:
            raise ValidationError("not an asciicast v2 recording")
        events = []
        for line in lines[1:]:
            at, code, data = json.loads(line)
            events.append(CastEvent(float(at), str(code), str(data)))
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"malformed recording: {exc}") from exc
    return header, events


def control(op: str, **fields: Any) -> str:
    """One control frame."""
    return json.dumps({"op": op, **fields}, separators=(",", ":"))


def parse_control(text: str | bytes) -> dict[str, Any]:
    """A control frame as a dict with a string ``op``; sizes checked. ValidationError if bad."""
    try:
        message = parse_json(text)
    except ValueError:
        raise ValidationError("control frames must be JSON objects") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ValidationError("control frames must be JSON objects with an 'op'")
    if message["op"] == "resize":
        rows, cols = message.get("rows"), message.get("cols")
        if not (isinstance(rows, int) and isinstance(cols, int)):
            raise ValidationError("resize needs integer 'rows' and 'cols'")
        if not (1 <= rows <= MAX_ROWS and 1 <= cols <= MAX_COLS):
            raise ValidationError(f"terminal size {rows}x{cols} is out of range")
    return message
