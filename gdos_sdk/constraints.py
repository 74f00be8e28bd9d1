"""Limits on a value that validate it and describe it as JSON Schema, from one object.

A request model states a field's limits once, as the field's attrs validator::

    @attrs.frozen
    class SystemCreate:
        name: str = attrs.field(validator=Check(pattern=NAME, hint=NAME_HINT))

The validator runs whenever the model is built: on the master when a request body
is structured (a 422 whose details name ``$.name``), and in the SDK before a request
is sent. The master's OpenAPI generator reads the same :class:`Check` and writes
``pattern``/``minLength``/``maximum``/... into the schema, so the document cannot
promise less, or more, than the server enforces. Query parameters use the same
object (``QueryParam(..., check=Check(minimum=1, maximum=1000))`` on the master).

Patterns are written in the part of regular-expression syntax on which Python's
``re`` and ECMA-262 (what JSON Schema uses) agree: anchored ``^...$``, ASCII
character classes, no look-behind and no named groups. As in JSON Schema a pattern
is searched, not matched whole, and ``$`` is the very end of the text (Python's
``$`` would also accept a trailing newline; :class:`Check` closes that gap).

Example::

    Check(min_length=1, max_length=100).validate("x" * 101, "$.name")
    # ValidationError: name must be at most 100 characters
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from gdos_sdk.errors import ValidationError

__all__ = ["NOT_BLANK", "Check"]

#: Text that has something besides white space.
NOT_BLANK = r"\S"


def _python_pattern(pattern: str) -> re.Pattern[str]:
    # ECMA-262's ``$`` (without the m flag) is the end of the text; Python's also
    # matches before a final newline. ``\Z`` is Python's end of text.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _entries(count: int) -> str:
    return "one entry" if count == 1 else f"{count} entries"


def _label(path: str) -> str:
    """``$.env.PORT`` -> ``env.PORT``; ``query.limit`` -> ``query parameter 'limit'``."""
    if path.startswith("query."):
        return f"query parameter {path[6:]!r}"
    return path.removeprefix("$.").removeprefix("$") or "value"


@attrs.frozen
class Check:
    """What a value must satisfy; both an attrs validator and a JSON Schema fragment.

    Parameters:
        min_length, max_length: characters of a string.
        pattern: a regular expression the string must contain a match of (anchor it).
        hint: what the pattern means, for the error message
            (e.g. ``"1-64 letters, digits, '.', '_' or '-'"``).
        minimum, maximum: inclusive bounds of a number.
        exclusive_minimum: a number must be greater than this.
        min_items, max_items: entries of a list.
        max_properties: entries of a mapping.
        items: a check for each list entry.
        keys: a check for each key of a mapping (JSON Schema ``propertyNames``).
        values: a check for each value of a mapping.

    ``None`` passes every check: an optional field is checked only when it is set.
    """

    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    hint: str = ""
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    min_items: int | None = None
    max_items: int | None = None
    max_properties: int | None = None
    items: Check | None = None
    keys: Check | None = None
    values: Check | None = None
    _compiled: re.Pattern[str] | None = attrs.field(init=False, default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.pattern is not None:
            object.__setattr__(self, "_compiled", _python_pattern(self.pattern))

    # --- validation ------------------------------------------------------------------------

    def __call__(self, instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        """The attrs validator: check ``value`` of field ``attribute``."""
        self.validate(value, f"$.{attribute.name}")

    def validate(self, value: Any, path: str) -> None:
        """Raise :class:`ValidationError` (details name ``path``) unless ``value`` passes."""
        if value is None:
            return
        if isinstance(value, str):
            self._text(value, path)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self._number(value, path)
        elif isinstance(value, list | tuple):
            self._list(value, path)
        elif isinstance(value, Mapping):
            self._mapping(value, path)

    def _fail(self, path: str, message: str) -> None:
        text = f"{_label(path)} {message}"
        raise ValidationError(text, details=[{"path": path, "message": text}])

    def _text(self, value: str, path: str) -> None:
        if self.min_length is not None and len(value) < self.min_length:
            if self.min_length == 1:
                self._fail(path, "must not be empty")
            self._fail(path, f"must be at least {self.min_length} characters")
        if self.max_length is not None and len(value) > self.max_length:
            self._fail(path, f"must be at most {self.max_length} characters")
        if self._compiled is not None and self._compiled.search(value) is None:
            if self.pattern == NOT_BLANK:
                self._fail(path, "must not be blank")
            self._fail(path, f"{value[:80]!r} is invalid: {self.hint or self.pattern}")

    def _number(self, value: float, path: str) -> None:
        low, high = self.minimum, self.maximum
        if isinstance(value, float) and not math.isfinite(value):
            self._fail(path, "must be a finite number")
        if self.exclusive_minimum is not None and not value > self.exclusive_minimum:
            upper = "" if high is None else f" and at most {_number(high)}"
            self._fail(path, f"must be greater than {_number(self.exclusive_minimum)}{upper}")
        if (low is not None and value < low) or (high is not None and value > high):
            if low is not None and high is not None:
                self._fail(path, f"must be between {_number(low)} and {_number(high)}")
            if low is not None:
                self._fail(path, f"must be at least {_number(low)}")
            self._fail(path, f"must be at most {_number(high)}")  # type: ignore[arg-type]

    def _list(self, value: list[Any] | tuple[Any, ...], path: str) -> None:
        if self.min_items is not None and len(value) < self.min_items:
            self._fail(path, f"must have at least {_entries(self.min_items)}")
        if self.max_items is not None and len(value) > self.max_items:
            self._fail(path, f"must have at most {_entries(self.max_items)}")
        if self.items is not None:
            for index, item in enumerate(value):
                self.items.validate(item, f"{path}[{index}]")

    def _mapping(self, value: Mapping[Any, Any], path: str) -> None:
        if self.max_properties is not None and len(value) > self.max_properties:
            self._fail(path, f"must have at most {_entries(self.max_properties)}")
        for key, item in value.items():
            if self.keys is not None and isinstance(key, str):
                self.keys.validate(key, f"{path}.{key}")
            if self.values is not None:
                self.values.validate(item, f"{path}.{key}")

    # --- description -----------------------------------------------------------------------

    def schema(self) -> dict[str, Any]:
        """The JSON Schema keywords of this check (merged into the value's own schema)."""
        out: dict[str, Any] = {}
        for name, keyword in (
            ("min_length", "minLength"),
            ("max_length", "maxLength"),
            ("pattern", "pattern"),
            ("minimum", "minimum"),
            ("maximum", "maximum"),
            ("exclusive_minimum", "exclusiveMinimum"),
            ("min_items", "minItems"),
            ("max_items", "maxItems"),
            ("max_properties", "maxProperties"),
        ):
            value = getattr(self, name)
            if value is not None:
                out[keyword] = value
        if self.keys is not None:
            out["propertyNames"] = self.keys.schema()
        if self.hint or self.pattern == NOT_BLANK:
            out["description"] = self.hint or "not blank"
        return out

    def describe(self) -> str:
        """The limits in words, for reference docs (``1-100 characters``)."""
        parts: list[str] = []
        if self.min_length is not None or self.max_length is not None:
            low, high = self.min_length or 0, self.max_length
            parts.append(
                f"{low}-{high} characters" if high is not None else f"at least {low} characters"
            )
        if self.pattern == NOT_BLANK:
            parts.append("not blank")
        elif self.pattern is not None:
            parts.append(self.hint or f"matches `{self.pattern}`")
        low_n = self.minimum if self.minimum is not None else self.exclusive_minimum
        if low_n is not None or self.maximum is not None:
            sign = ">" if self.minimum is None and self.exclusive_minimum is not None else ">="
            if low_n is not None and self.maximum is not None and sign == ">=":
                parts.append(f"{_number(low_n)}-{_number(self.maximum)}")
            else:
                if low_n is not None:
                    parts.append(f"{sign} {_number(low_n)}")
                if self.maximum is not None:
                    parts.append(f"<= {_number(self.maximum)}")
        if self.min_items is not None:
            parts.append(f"at least {self.min_items} entries")
        if self.max_items is not None or self.max_properties is not None:
            parts.append(f"at most {self.max_items or self.max_properties} entries")
        for what, sub in (("each", self.items), ("keys", self.keys), ("values", self.values)):
            if sub is not None:
                parts.append(f"{what}: {sub.describe()}")
        return ", ".join(parts)
