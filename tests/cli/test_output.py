"""Tables that fit the terminal, cells that read well, JSON/YAML from the models."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from gdos_cli.output import Column, age, emit, render_table, size, text
from gdos_sdk.models import NodeStatus, System


def test_columns_line_up_and_nothing_is_cut_without_a_width() -> None:
    table = render_table(
        [["web-01", "online", "3"], ["a-much-longer-name", "offline", "12"]],
        ["HOSTNAME", "STATUS", "N"],
        right=[False, False, True],
    )
    assert table.splitlines() == [
        "HOSTNAME            STATUS    N",
        "web-01              online    3",
        "a-much-longer-name  offline  12",
    ]


def test_shrinkable_columns_are_cut_to_fit_and_the_rest_never() -> None:
    rows = [["0123456789abcdef", "x" * 60, "running", "y" * 40]]
    table = render_table(
        rows,
        ["ID", "NAME", "STATE", "REASON"],
        shrinkable=[False, True, False, True],
        width=70,
    )
    lines = table.splitlines()
    assert all(len(line) <= 70 for line in lines)
    assert "0123456789abcdef" in lines[1] and "running" in lines[1]
    assert lines[1].count("…") == 2  # both long columns gave way, the widest most


def test_a_table_that_cannot_fit_keeps_its_ids_whole() -> None:
    table = render_table([["a" * 50, "b" * 50]], ["ID", "NAME"], shrinkable=[False, True], width=40)
    assert "a" * 50 in table and "b" * 5 + "…" in table


def test_cells() -> None:
    assert text(None) == text("") == text([]) == "-"
    assert text(NodeStatus.ONLINE) == "online"
    assert text(True) == "yes" and text(12.345) == "12.3"
    assert text({"a": "1", "b": "2"}) == "a=1,b=2" and text(["x", "y"]) == "x,y"
    assert text("two\nlines") == "two lines"
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert age(now - timedelta(seconds=5), now) == "5s"
    assert age(now - timedelta(hours=3, minutes=1), now) == "3h"
    assert size(512) == "512B" and size(1536) == "1.5KiB" and size(None) == "-"


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_json_and_yaml_are_the_api_models(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    created = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    systems = [System(id="s1", name="shop", description="", created_at=created)]
    emit(systems, [Column("NAME", lambda s: s.name)], fmt)
    out = capsys.readouterr().out
    data = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    assert data == [
        {
            "id": "s1",
            "name": "shop",
            "description": "",
            "created_at": "2025-01-02T03:04:05Z",
            "module_count": 0,
            "instance_count": 0,
        }
    ]


def test_wide_shows_more_columns_and_empty_tables_say_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    columns = [Column("NAME", lambda s: s), Column("MORE", lambda s: s * 2, wide=True)]
    emit(["a"], columns, "table")
    assert capsys.readouterr().out.split() == ["NAME", "a"]
    emit(["a"], columns, "wide")
    assert capsys.readouterr().out.split() == ["NAME", "MORE", "a", "aa"]
    emit([], columns, "table", empty="no things")
    out = capsys.readouterr()
    assert out.out.strip() == "NAME" and out.err.strip() == "no things"
