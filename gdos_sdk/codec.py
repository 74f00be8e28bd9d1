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
import enum
import json
import types
import typing
from array import array
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, Union, cast, get_args, get_origin

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
from gdos_sdk.models import MetricSeries

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


_JSON_TYPES = {
    dict: "object",
    list: "array",
    tuple: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


class _InputError(TypeError):
    """A structuring failure whose message is already written for the person who sent it."""


def _json_type(value: Any) -> str:
    """The JSON name of a value's type: ``"object"``, ``"array"``, ``"string"`` ..."""
    for cls in type(value).__mro__:
        if cls in _JSON_TYPES:
            return _JSON_TYPES[cls]
    return type(value).__name__


def _choices(values: Any) -> str:
    """``"a", "b" or "c"``: allowed values as they are written in JSON."""
    shown = [json.dumps(v.value if isinstance(v, enum.Enum) else v) for v in values]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def _one_of(values: Any, value: Any) -> _InputError:
    expected = _choices(values) if len(values) == 1 else f"one of {_choices(values)}"
    return _InputError(f"expected {expected}, got {json.dumps(value, default=str)}")


def _expected(tp: Any) -> str:
    """What a value of type ``tp`` looks like, in the words of the JSON it arrives in."""
    origin = get_origin(tp)
    if origin is Literal:
        values = get_args(tp)
        return _choices(values) if len(values) == 1 else f"one of {_choices(values)}"
    if origin in (Union, types.UnionType):
        words = [_expected(a) for a in get_args(tp) if a is not type(None)]
        if type(None) in get_args(tp):
            words.append("null")
        return " or ".join(dict.fromkeys(words))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return f"one of {_choices(list(tp))}"
    base = origin or tp
    if isinstance(base, type):
        if attrs.has(base) or issubclass(base, dict):
            return "an object"
        if issubclass(base, list | tuple | set | frozenset):
            return "an array"
        if issubclass(base, datetime):
            return "an ISO 8601 time"
        for cls, word in ((bool, "true or false"), (str, "a string"), (int, "an integer")):
            if issubclass(base, cls):
                return word
        if issubclass(base, float):
            return "a number"
    return "a valid value"


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


def _enum_member(cls: type[enum.Enum], value: Any) -> Any:
    try:
        return cls(value)
    except ValueError:
        raise _one_of(list(cls), value) from None


def _strict_str(value: Any, cls: type) -> str:
    if not isinstance(value, str):
        raise _InputError(f"expected a string, got {_json_type(value)}")
    if cls is not str:  # a StrEnum lands here too: let it validate the value
        return cast(str, _enum_member(cast(type[enum.Enum], cls), value))
    return value


def _strict_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise _InputError(f"expected true or false, got {_json_type(value)}")
    return value


def _strict_int(value: Any, cls: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise _InputError(f"expected an integer, got {_json_type(value)}")
    if cls is not int:  # IntEnum
        return cast(int, _enum_member(cast(type[enum.Enum], cls), value))
    return int(value)


def _strict_float(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _InputError(f"expected a number, got {_json_type(value)}")
    return float(value)


def _strict_enum(value: Any, cls: type[enum.Enum]) -> enum.Enum:
    return cast(enum.Enum, _enum_member(cls, value))


def _is_literal(tp: Any) -> bool:
    origin: Any = get_origin(tp)
    return origin is Literal


def _literal_hook(tp: Any) -> Any:
    allowed = get_args(tp)
    # 1 == True in Python; in JSON they are different values.
    keys = {(type(v), v) for v in allowed}

    def structure_literal(value: Any, _: Any) -> Any:
        if (type(value), value) not in keys:
            raise _one_of(allowed, value)
        return value

    return structure_literal


_SERIES_FIELDS = frozenset({"target", "start", "step", "values", "name"})


def _structure_series(value: Any, _: type) -> MetricSeries:
    """A metric series without a Python call per value: the type check runs in C.

    An hour of 100 nodes is 360,000 numbers; the generic hooks would check each one in
    Python. ``array("d", ...)`` checks that the values present are numbers in C.
    """
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    unknown = set(value) - _SERIES_FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))} in a metric series")
    values = value.get("values")
    if not isinstance(values, list):
        raise TypeError("a metric series needs a 'values' array")
    try:
        array("d", [v for v in values if v is not None])
    except TypeError as exc:
        raise TypeError(f"'values' must hold numbers or null: {exc}") from None
    step = _strict_int(value.get("step"), int)
    if step < 1:
        raise ValueError("'step' must be at least 1")
    return MetricSeries(
        target=_strict_str(value.get("target"), str),
        start=_strict_int(value.get("start"), int),
        step=step,
        values=values,
        name=_strict_str(value.get("name", ""), str),
    )


def _unstructure_series(series: MetricSeries) -> dict[str, Any]:
    # The lists go out as they are (the generic hook would copy every value).
    return {
        "target": series.target,
        "start": series.start,
        "step": series.step,
        "values": series.values,
        "name": series.name,
    }


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


def make_converter(*, forbid_extra_keys: bool = True) -> cattrs.Converter:
    """Build the JSON converter: ISO 8601 UTC times, strict scalars, no unknown keys.

    Strict scalars and collections mean ``"5"`` is not silently an ``int`` nor
    ``"abc"`` the list ``["a", "b", "c"]``: a wrong type in a request is an error
    that names the field, not a surprise later. ``forbid_extra_keys=False`` builds
    the converter clients read the master's answers with (see :func:`structure`).
    """
    conv = _make_json_converter(forbid_extra_keys=forbid_extra_keys, prefer_attrib_converters=False)
    conv.register_unstructure_hook(datetime, _dt_to_str)
    conv.register_structure_hook(datetime, _str_to_dt)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(enum.Enum, _strict_enum)
    conv.register_structure_hook_factory(_is_literal, _literal_hook)
    conv.register_structure_hook(MetricSeries, _structure_series)
    conv.register_unstructure_hook(MetricSeries, _unstructure_series)
    conv.register_structure_hook_factory(_is_list, _strict_list)
    conv.register_structure_hook_factory(_is_dict, _strict_dict)
    return conv


converter = make_converter()
#: reads what a master sends to clients: a field a newer master added is ignored
answer_converter = make_converter(forbid_extra_keys=False)


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


def _describe(exc: BaseException, cls: Any, path: str) -> list[dict[str, Any]]:
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
            problems.extend(_describe(sub, sub_cls, sub_path))
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
    if isinstance(exc, TypeError | AttributeError | cattrs.errors.CattrsError) and not isinstance(
        exc, _InputError
    ):
        # cattrs' own words are Python's ("'int' object is not iterable"): say what was expected.
        return [{"path": path, "message": f"expected {_expected(cls)}"}]
    # Ours, and attrs validators' ("'concurrency' must be >= 1: 0").
    return [{"path": path, "message": str(exc) or type(exc).__name__}]


def _note_of(exc: BaseException) -> Any:
    for note in getattr(exc, "__notes__", []) or []:
        if isinstance(note, AttributeValidationNote | IterableValidationNote):
            return note
    return None


def structure(
    data: Any, cls: type[T], *, what: str = "request body", extra_keys: bool = False
) -> T:
    """Turn untrusted JSON data into ``cls`` or raise a ValidationError naming each bad path.

    ``extra_keys=True`` ignores keys ``cls`` does not know: the SDK reads the master's
    answers and live frames so, so a client keeps working against a newer master that
    added a field (requests, configuration and agent frames stay strict).
    """
    if attrs.has(cls) and not isinstance(data, dict):
        raise ValidationError(
            f"{what} must be a JSON object",
            details=[{"path": "$", "message": f"expected an object, got {type(data).__name__}"}],
        )
    try:
        return (answer_converter if extra_keys else converter).structure(data, cls)
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
