"""Validation messages speak JSON, never Python: allowed values, JSON type names."""

from __future__ import annotations

import enum
from typing import Any, Literal

import attrs
import pytest

from gdos_sdk.alerts import AlertRule
from gdos_sdk.codec import structure
from gdos_sdk.errors import ValidationError
from gdos_sdk.states import DesiredState


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Inner:
    x: int


@attrs.frozen
class Shape:
    mode: Literal["a", "b", "c"] = "a"
    fixed: Literal["only"] = "only"
    maybe: Literal["x", "y"] | None = None
    colour: Colour = Colour.RED
    level: Level = Level.LOW
    desired: DesiredState = DesiredState.RUNNING
    items: list[int] = attrs.field(factory=list)
    table: dict[str, int] = attrs.field(factory=dict)
    inner: Inner | None = None
    either: int | str = 0
    name: str = ""
    flag: Literal[1] = 1


def problem(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        structure(data, Shape)
    (only,) = caught.value.details
    message: str = only["message"]
    return f"{message} @ {only['path']}"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"mode": "d"}, 'expected one of "a", "b" or "c", got "d" @ $.mode'),
        ({"fixed": "other"}, 'expected "only", got "other" @ $.fixed'),
        ({"maybe": "z"}, 'expected one of "x" or "y", got "z" @ $.maybe'),
        ({"colour": "green"}, 'expected one of "red" or "blue", got "green" @ $.colour'),
        ({"level": 3}, "expected one of 1 or 2, got 3 @ $.level"),
        ({"desired": "flying"}, 'got "flying" @ $.desired'),
        ({"items": 5}, "expected an array @ $.items"),
        ({"items": [1, None]}, "expected an integer, got null @ $.items[1]"),
        ({"table": [1]}, "expected an object @ $.table"),
        ({"inner": "x"}, "expected an object or null @ $.inner"),
        ({"either": [1]}, "expected an integer or a string @ $.either"),
        ({"name": {"a": 1}}, "expected a string, got object @ $.name"),
        ({"flag": True}, "expected 1, got true @ $.flag"),
    ],
)
def test_messages_name_allowed_values_and_json_types(data: dict[str, Any], expected: str) -> None:
    message = problem(data)
    assert message.endswith(expected), message
    for python in ("typing.", "Literal[", "<class", "object has no attribute", "NoneType"):
        assert python not in message


def test_an_invalid_alert_op_names_the_operators_in_plain_words() -> None:
    with pytest.raises(ValidationError) as caught:
        structure({"name": "cpu", "metric": "cpu", "op": "=>"}, AlertRule)
    assert caught.value.details == [
        {"path": "$.op", "message": 'expected one of ">", ">=", "<", "<=", "==" or "!=", got "=>"'}
    ]
    assert "typing" not in caught.value.message


def test_valid_values_still_pass() -> None:
    shape = structure(
        {"mode": "c", "maybe": "y", "colour": "blue", "level": 2, "desired": "stopped"}, Shape
    )
    assert (shape.mode, shape.maybe, shape.colour, shape.level) == ("c", "y", Colour.BLUE, 2)
    assert shape.desired is DesiredState.STOPPED
