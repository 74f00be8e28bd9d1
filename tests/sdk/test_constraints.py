"""Check: one object validates a value and describes it as JSON Schema."""

from __future__ import annotations

import re

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdos_sdk.codec import structure
from gdos_sdk.constraints import NOT_BLANK, Check
from gdos_sdk.errors import ValidationError
from gdos_sdk.models import NAME, ModuleCreate, SystemCreate


def _refused(check: Check, value: object, path: str = "$.x") -> ValidationError:
    with pytest.raises(ValidationError) as info:
        check.validate(value, path)
    return info.value


def test_lengths_ranges_and_entries_name_the_field() -> None:
    error = _refused(Check(max_length=3), "abcd", "$.name")
    assert error.message == "name must be at most 3 characters"
    assert error.details == [{"path": "$.name", "message": error.message}]
    assert _refused(Check(min_length=1), "").message == "x must not be empty"
    assert _refused(Check(minimum=1, maximum=9), 10).message == "x must be between 1 and 9"
    assert _refused(Check(exclusive_minimum=0), 0.0).message == "x must be greater than 0"
    assert _refused(Check(min_items=1), []).message == "x must have at least one entry"
    assert _refused(Check(max_properties=2), {"a": 1, "b": 2, "c": 3}).message.endswith(
        "at most 2 entries"
    )
    assert "finite" in _refused(Check(maximum=5), float("nan")).message
    assert _refused(Check(minimum=1), 0, "query.limit").message == (
        "query parameter 'limit' must be at least 1"
    )


def test_none_passes_so_optional_fields_are_checked_only_when_set() -> None:
    Check(min_length=5, minimum=3, min_items=2).validate(None, "$.x")


def test_nested_checks_name_the_entry_at_fault() -> None:
    keys = Check(keys=Check(pattern=r"^[a-z]+$", hint="lowercase"))
    assert _refused(keys, {"ok": "1", "Bad": "2"}, "$.env").details[0]["path"] == "$.env.Bad"
    items = Check(items=Check(max_length=2))
    assert _refused(items, ["ab", "abc"], "$.args").details[0]["path"] == "$.args[1]"


def test_a_pattern_is_searched_and_dollar_is_the_very_end_as_in_json_schema() -> None:
    check = Check(pattern=r"^[a-z]+$", hint="lowercase letters")
    check.validate("abc", "$.x")
    error = _refused(check, "abc\n")  # Python's re alone would take this
    assert "lowercase letters" in error.message
    Check(pattern=NOT_BLANK).validate("  x ", "$.x")
    assert _refused(Check(pattern=NOT_BLANK), " \t").message == "x must not be blank"


def test_schema_is_the_same_limits_as_keywords() -> None:
    check = Check(
        min_length=1,
        max_length=9,
        pattern="^a",
        hint="starts with a",
        minimum=0,
        maximum=5,
        exclusive_minimum=-1,
        min_items=1,
        max_items=4,
        max_properties=3,
        keys=Check(pattern="^k"),
    )
    assert check.schema() == {
        "minLength": 1,
        "maxLength": 9,
        "pattern": "^a",
        "minimum": 0,
        "maximum": 5,
        "exclusiveMinimum": -1,
        "minItems": 1,
        "maxItems": 4,
        "maxProperties": 3,
        "propertyNames": {"pattern": "^k"},
        "description": "starts with a",
    }
    assert Check(pattern=NOT_BLANK).schema()["description"] == "not blank"
    assert Check(minimum=1, maximum=1000).describe() == "1-1000"


@given(st.text(max_size=80))
def test_the_name_check_agrees_with_its_pattern_read_as_json_schema(text: str) -> None:
    assert NAME.pattern is not None
    # ECMA-262 semantics: searched, and "$" only at the very end of the text.
    expected = re.search(NAME.pattern.removesuffix("$") + r"\Z", text) is not None
    try:
        NAME.validate(text, "$.name")
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == expected


def test_a_model_checks_its_fields_when_built_and_when_structured() -> None:
    with pytest.raises(ValidationError) as info:
        SystemCreate(name="bad/name")
    assert info.value.details[0]["path"] == "$.name"
    with pytest.raises(ValidationError) as info:
        structure({"name": "m", "env": {"1X": "y"}, "adoption": None}, ModuleCreate)
    assert [d["path"] for d in info.value.details] == ["$.env.1X"]


@attrs.frozen
class _Inner:
    n: int = attrs.field(validator=Check(maximum=3))


@attrs.frozen
class _Outer:
    inner: _Inner


def test_a_nested_model_s_check_is_reported_under_its_parent_path() -> None:
    with pytest.raises(ValidationError) as info:
        structure({"inner": {"n": 4}}, _Outer)
    assert info.value.details == [{"path": "$.inner.n", "message": "n must be at most 3"}]
