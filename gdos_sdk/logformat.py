"""Log output of the master and the worker: plain text or one JSON object per line.

``log.format: json`` (flag ``-log_format json``) makes every line a JSON object::

    {"time": "2026-01-31T12:00:00.123Z", "level": "info", "logger": "gdos.master.agent",
     "message": "node n-1 (web-1) connected", "node_id": "n-1"}

The ids that apply to a line (``request_id``, ``node_id``, ``instance_id``, ...) come from
:func:`log_context`, a context variable that asyncio copies into every task started inside
it, or from a call's ``extra={...}``. Secrets stay out: fields whose name looks secret are
replaced by ``***`` and credential-shaped text in messages and tracebacks is masked
(:mod:`gdos_sdk.redaction`), in both formats.

Example::

    configure_logging("info", "json")
    with log_context(node_id="n-1"):
        logging.getLogger("gdos.worker").info("connected")
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

from gdos_sdk.redaction import redact, scrub

__all__ = [
    "FORMATS",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "current_log_context",
    "log_context",
    "set_log_context",
]

FORMATS = ("text", "json")

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "gdos_log_context", default=_EMPTY
)

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class log_context:
    """Add ids to every log line written inside the block (and in tasks started there).

    ``None`` values are left out. Nested blocks add to the outer ids.

    Example::

        with log_context(instance_id="i-1"):
            log.info("started")  # ... "instance_id": "i-1"

    A class rather than a generator-based context manager (it is used like a function):
    the master enters one per HTTP request, for its request id, and a generator's
    machinery cost several microseconds of each request (docs/benchmarks.md, REST).
    """

    __slots__ = ("_ids", "_token")

    def __init__(self, **ids: str | None) -> None:
        self._ids = {k: str(v) for k, v in ids.items() if v is not None}
        self._token: contextvars.Token[Mapping[str, str]] | None = None

    def __enter__(self) -> None:
        self._token = _context.set(MappingProxyType({**_context.get(), **self._ids}))

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _context.reset(self._token)
            self._token = None


def set_log_context(**ids: str | None) -> None:
    """Add ids to every later log line of the current task (a request's, a connection's).

    For code whose whole remaining life is one task; elsewhere use :func:`log_context`.
    """
    added = {k: str(v) for k, v in ids.items() if v is not None}
    _context.set(MappingProxyType({**_context.get(), **added}))


def current_log_context() -> Mapping[str, str]:
    """The ids :func:`log_context` has set for the running code."""
    return _context.get()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = dict(_context.get())
    for key, value in record.__dict__.items():
        if key not in _RECORD_ATTRS and not key.startswith("_"):
            fields[key] = value
    redacted: dict[str, Any] = redact(fields)
    return redacted


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for key, value in _fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = scrub(record.exc_text)
        if record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [key=value ...]``, with the same masking as JSON."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = _fields(record)
        if fields:
            text += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return text

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def configure_logging(level: str, fmt: str = "text", *, stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr) at ``level``, as text or JSON lines.

    Replaces the root logger's handlers, so calling it again switches the format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
