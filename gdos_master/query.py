"""Declared query parameters: parsed, checked and documented from one object.

An endpoint lists its parameters in ``Api.route(query=...)``; the routing wrapper
reads them all with :meth:`QueryParam.read` before the handler runs (a bad value is a
422 naming ``query.<name>``), the handler finds them in ``ctx.query``, and the OpenAPI
document describes each from the same object: type, default, limits.

Example::

    LIMIT = QueryParam("limit", int, "page size", default=100, check=Check(minimum=1, maximum=1000))
    LIMIT.read({"limit": "50"})  # 50
"""

from __future__ import annotations

import enum
import math
import re
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from gdos_sdk.constraints import Check
from gdos_sdk.errors import ValidationError

__all__ = ["PAGE", "Instant", "QueryParam"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Instant(float):
    """A query parameter type: a point in time as Unix seconds or ISO 8601; read as seconds."""

    #: How the OpenAPI document describes it.
    json_schema: typing.ClassVar[dict[str, Any]] = {
        "anyOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]
    }


def _bad_query(name: str, message: str, **extra: Any) -> ValidationError:
    text = f"query parameter {name!r} {message}"
    return ValidationError(text, details=[{"path": f"query.{name}", "message": text, **extra}])


def _parse(name: str, tp: Any, raw: str) -> Any:
    """One query string value as ``tp``; a ValidationError names the parameter."""
    if tp is str:
        return raw
    if tp is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise _bad_query(name, "must be true or false")
    if tp is int:
        if not re.fullmatch(r"[+-]?[0-9]{1,20}", raw):
            raise _bad_query(name, "must be an integer")
        return int(raw)
    if tp is float or tp is Instant:
        try:
            value = float(raw)
        except ValueError:
            if tp is float:
                raise _bad_query(name, "must be a number") from None
            try:
                parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                raise _bad_query(name, "must be an ISO 8601 time or Unix seconds") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.timestamp()
        if not math.isfinite(value):
            raise _bad_query(name, "must be a finite number")
        return value
    if typing.get_origin(tp) is typing.Literal:
        choices = typing.get_args(tp)
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        choices = tuple(m.value for m in tp)
    else:
        raise TypeError(f"query parameter {name!r}: unsupported type {tp!r}")
    if raw not in choices:
        # An unknown filter value (?status=bogus) must not quietly match nothing: name
        # the allowed values, in the message and as a list for programs.
        allowed = [str(c) for c in choices]
        raise _bad_query(name, f"must be one of {', '.join(allowed)}", allowed=allowed)
    return tp(raw) if isinstance(tp, type) else raw


@attrs.frozen
class QueryParam:
    """A declared query parameter: parsed, checked and documented from this one object.

    Parameters:
        name: as in the URL.
        type: ``str``, ``int``, ``float``, ``bool``, :class:`Instant`, a ``Literal`` of
            strings or a string enum; ``list[...]`` of one of them for a parameter that
            may be repeated (``?target=a&target=b``).
        description: one line for the reference.
        required: a missing or empty value is a 422.
        default: the value when the parameter is left out.
        check: limits on the parsed value (ranges, lengths, a pattern).
    """

    name: str
    type: Any
    description: str
    required: bool = False
    default: Any = None
    check: Check | None = None
    #: Whether the parameter may be given several times (type ``list[...]``); worked out
    #: once, as it is asked on every request.
    repeated: bool = attrs.field(init=False, repr=False, eq=False)

    @repeated.default
    def _repeated(self) -> bool:
        return typing.get_origin(self.type) is list

    def read(self, args: Mapping[str, str]) -> Any:
        """The parsed, checked value from ``args`` (the request's query string).

        A repeatable parameter (``list[str]``) reads every value given, each parsed and
        checked as its item type; its value is the list.
        """
        if self.repeated:
            return self._read_all(args)
        raw = args.get(self.name)
        if raw is None or (raw == "" and self.required):
            if self.required:
                raise _bad_query(self.name, "is required")
            return self.default
        # Given empty, a value is checked like any other: ?limit= is no integer.
        value = _parse(self.name, self.type, raw)
        if self.check is not None:
            self.check.validate(value, f"query.{self.name}")
        return value

    def _read_all(self, args: Mapping[str, str]) -> Any:
        getlist = getattr(args, "getlist", None)
        given = args.get(self.name)
        raws: list[str] = list(getlist(self.name)) if getlist else [] if given is None else [given]
        if not raws:
            if self.required:
                raise _bad_query(self.name, "is required")
            return [] if self.default is None else self.default
        (item,) = typing.get_args(self.type)
        values = []
        for raw in raws:
            if raw == "" and self.required:
                raise _bad_query(self.name, "is required")
            value = _parse(self.name, item, raw)
            if self.check is not None:
                self.check.validate(value, f"query.{self.name}")
            values.append(value)
        return values


#: ``limit`` and ``offset`` of a paged list (``ctx.page()`` reads them).
PAGE = (
    QueryParam("limit", int, "page size", default=100, check=Check(minimum=1, maximum=1000)),
    QueryParam("offset", int, "entries to skip", default=0, check=Check(minimum=0, maximum=10**12)),
)
