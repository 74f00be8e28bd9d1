"""The one cattrs converter every GDOS message goes through.

:func:`make_converter` builds it; :data:`converter` is the instance the
servers, the client and the tools share. :func:`structure` is the edge
where untrusted JSON becomes models: a failure becomes a
:class:`~gdos_sdk.errors.ValidationError` whose ``details`` list every
bad field path (``expected int @ $.restart.max_restarts``) and suggest the
closest name for an unknown field.

Example::

    from gdos_sdk.codec import dumps, structure
    node = structure({"id": "n1", ...}, Node)
    text = dumps(node)
"""

from __future__ import annotations

import difflib
import json
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import attrs
import cattrs
from cattrs.cols import list_structure_factory, mapping_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationNote,
)
from cattrs.preconf.json import make_converter as _make_json_converter

from gdos_sdk.errors import BadRequestError, GdosError, ValidationError

__all__ = [
    "MAX_JSON_DEPTH",
    "JsonTooDeep",
    "converter",
    "dumps",
    "loads",
    "make_converter",
    "parse_json",
    "structure",
    "suggest",
    "unstructure",
]

T = TypeVar("T")

#: How deeply arrays and objects may nest in JSON from a peer. No GDOS message comes
#: near it; beyond it, code that walks the value (redaction, audit) would recurse too deep.
MAX_JSON_DEPTH = 64


class JsonTooDeep(ValueError):
    """JSON nested deeper than :data:`MAX_JSON_DEPTH` (a ``ValueError``, like bad JSON)."""


def _too_deep(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_json(
    text: str | bytes, *, max_depth: int | None = MAX_JSON_DEPTH, allow_nan: bool = True
) -> Any:
    """``json.loads`` for text from a peer: nesting deeper than ``max_depth`` is a ValueError.

    Python's parser itself gives up around 1,000 levels with ``RecursionError``, which
    no handler expects; this raises :class:`JsonTooDeep` (a ``ValueError``, as bad JSON
    does) for that, and for anything deeper than ``max_depth``. ``max_depth=None``
    keeps only the parser's own limit (for hot paths whose messages are fully typed,
    so that a deep value fails their structuring anyway). ``allow_nan=False`` refuses
    ``NaN`` and ``Infinity`` (a ValueError), which are not JSON.

    Example::

        parse_json("[" * 5000)  # JsonTooDeep: JSON nests deeper than 64 levels
    """
    try:
        # Python reads NaN and Infinity, which are not JSON; a request body must not carry
        # them (stored, they would make every later answer that holds them unreadable).
        value = json.loads(text) if allow_nan else json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise JsonTooDeep(f"JSON nests deeper than {max_depth or 'a few hundred'} levels") from None
    if max_depth is not None and isinstance(value, (dict, list)):
        if isinstance(text, bytes):
            opening = text.count(b"[") + text.count(b"{")
        else:
            opening = text.count("[") + text.count("{")
        # Fewer brackets than the limit cannot nest deeper: skip the walk (the usual case).
        if opening > max_depth and _too_deep(value, max_depth):
            raise JsonTooDeep(f"JSON nests deeper than {max_depth} levels")
    return value


def _dt_to_str(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _str_to_dt(value: Any, _: type) -> datetime:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 time, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _strict_str(value: Any, cls: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    if cls is not str:  # a StrEnum lands here too: let it validate the value
        return cast(str, cls(value))
    return value


def _strict_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def _strict_int(value: Any, cls: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TypeError(f"expected an integer, got {type(value).__name__}")
    if cls is not int:  # IntEnum
        return cast(int, cls(value))
    return int(value)


def _strict_float(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _is_list(tp: Any) -> bool:
    return tp is list or typing.get_origin(tp) is list


def _is_dict(tp: Any) -> bool:
    return tp is dict or typing.get_origin(tp) is dict


def _strict_list(tp: Any, conv: cattrs.BaseConverter) -> Callable[[Any, Any], Any]:
    # cattrs alone takes any iterable for a list: "abc" would become ["a", "b", "c"].
    structure_items = list_structure_factory(tp, conv)

    def structure_list(value: Any, cls: Any) -> Any:
        if not isinstance(value, list):
            raise TypeError(f"expected an array, got {_json_type(value)}")
        return structure_items(value, cls)

    return structure_list


def _strict_dict(tp: Any, conv: cattrs.BaseConverter) -> Callable[[Any, Any], Any]:
    structure_items = mapping_structure_factory(tp, conv)

    def structure_dict(value: Any, cls: Any) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {_json_type(value)}")
        return structure_items(value, cls)

    return structure_dict


def make_converter() -> cattrs.Converter:
    """Build the JSON converter: ISO 8601 UTC times, strict scalars, no unknown keys.

    Strict scalars and collections mean ``"5"`` is not silently an ``int`` nor
    ``"abc"`` the list ``["a", "b", "c"]``: a wrong type in a request is an error
    that names the field, not a surprise later.
    """
    conv = _make_json_converter(forbid_extra_keys=True, prefer_attrib_converters=False)
    conv.register_unstructure_hook(datetime, _dt_to_str)
    conv.register_structure_hook(datetime, _str_to_dt)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook_factory(_is_list, _strict_list)
    conv.register_structure_hook_factory(_is_dict, _strict_dict)
    return conv


converter = make_converter()


def suggest(name: str, choices: list[str] | set[str] | tuple[str, ...]) -> str | None:
    """Closest valid name for a misspelt one, or ``None``.

    Example::

        suggest("entrypont", ["entrypoint", "args"])  # "entrypoint"
    """
    found = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _field_names(cls: type) -> list[str]:
    if attrs.has(cls):
        return [f.name for f in attrs.fields(cls)]
    return []


def _describe(exc: BaseException, cls: type, path: str) -> list[dict[str, Any]]:
    """Flatten a cattrs exception group into ``{path, message}`` problems."""
    problems: list[dict[str, Any]] = []
    if isinstance(exc, ForbiddenExtraKeysError):
        names = _field_names(exc.cl)
        for key in sorted(exc.extra_fields):
            problem: dict[str, Any] = {
                "path": f"{path}.{key}",
                "message": f"unknown field {key!r}",
            }
            hint = suggest(key, names)
            if hint:
                problem["message"] += f"; did you mean {hint!r}?"
                problem["suggestion"] = hint
            problems.append(problem)
        return problems
    if isinstance(exc, ClassValidationError | cattrs.BaseValidationError):
        for sub in exc.exceptions:
            note = _note_of(sub)
            sub_path = path
            sub_cls = cls
            if note is not None:
                if isinstance(note, IterableValidationNote):
                    index = note.index
                    sub_path = f"{path}[{index}]" if isinstance(index, int) else f"{path}.{index}"
                else:
                    sub_path = f"{path}.{note.name}"
                sub_cls = getattr(note, "type", cls)
            problems.extend(_describe(sub, sub_cls if isinstance(sub_cls, type) else cls, sub_path))
        return problems
    if isinstance(exc, KeyError):
        return [{"path": path, "message": "required field is missing"}]
    if isinstance(exc, GdosError) and isinstance(exc.details, list) and exc.details:
        # A model's own validator (e.g. a Check) names paths relative to the model.
        return [
            {**d, "path": path + str(d.get("path", "$"))[1:]}
            for d in exc.details
            if isinstance(d, dict)
        ]
    message = str(exc) or type(exc).__name__
    return [{"path": path, "message": message}]


def _note_of(exc: BaseException) -> Any:
    for note in getattr(exc, "__notes__", []) or []:
        if isinstance(note, AttributeValidationNote | IterableValidationNote):
            return note
    return None


def structure(data: Any, cls: type[T], *, what: str = "request body") -> T:
    """Turn untrusted JSON data into ``cls`` or raise a ValidationError naming each bad path."""
    if attrs.has(cls) and not isinstance(data, dict):
        raise ValidationError(
            f"{what} must be a JSON object",
            details=[{"path": "$", "message": f"expected an object, got {type(data).__name__}"}],
        )
    try:
        return converter.structure(data, cls)
    except ValidationError:
        raise
    except (cattrs.BaseValidationError, ForbiddenExtraKeysError) as exc:
        problems = _describe(exc, cls, "$")
        summary = "; ".join(f"{p['message']} @ {p['path']}" for p in problems) or str(exc)
        raise ValidationError(f"invalid {what}: {summary}", details=problems) from exc
    except (TypeError, ValueError, KeyError) as exc:
        raise ValidationError(
            f"invalid {what}: {exc}", details=[{"path": "$", "message": str(exc)}]
        ) from exc


def unstructure(value: Any) -> Any:
    """Model (or list/dict of models) to JSON-safe data."""
    return converter.unstructure(value)


def dumps(value: Any) -> str:
    """Model to compact JSON text."""
    return json.dumps(converter.unstructure(value), separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes, cls: type[T], *, what: str = "message") -> T:
    """JSON text to ``cls``; bad JSON or bad shape is a ValidationError."""
    try:
        data = parse_json(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(
            f"{what} is not valid JSON: {exc}",
            details=[{"path": "$", "message": f"invalid JSON: {exc}"}],
        ) from exc
    return structure(data, cls, what=what)
