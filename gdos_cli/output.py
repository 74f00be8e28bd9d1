"""How listings are printed: tables that fit the terminal, or the API's models as JSON/YAML.

A listing declares its columns once (:class:`Column`); ``table`` shows the narrow set,
``wide`` every column. JSON and YAML are the models as the API speaks them (the SDK's
codec), so ``gdos nodes -o json`` is what ``GET /api/v1/nodes`` answers.

Tables fit the terminal: when the rows are wider than the window, the widest shrinkable
columns are cut (with ``…``) until they fit. Piped output is never cut.

Example::

    columns = [Column("NAME", lambda p: p.name), Column("LATEST", lambda p: p.latest)]
    emit(packages, columns, "table")
"""

from __future__ import annotations

import enum
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
import click
import yaml

from gdos_sdk.codec import unstructure

__all__ = [
    "Column",
    "age",
    "emit",
    "emit_one",
    "render_table",
    "short_id",
    "size",
    "terminal_width",
    "text",
]

ELLIPSIS = "…"
GAP = "  "


@attrs.frozen
class Column:
    """One column: its header, how to get the value from a model, and when it shows.

    ``wide``: only in ``-o wide``. ``shrink``: may be cut to fit the terminal (names,
    reasons, labels); ids, states and numbers are never cut.
    """

    header: str
    get: Callable[[Any], Any]
    wide: bool = False
    shrink: bool = False
    align_right: bool = False


def text(value: Any) -> str:
    """A cell: ``-`` for nothing, enums by value, lists and dicts joined, floats short."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ",".join(text(v) for v in value)
    return " ".join(str(value).split())  # one line per row


def short_id(value: str | None) -> str:
    """The first 8 characters of an id (enough to tell; ``gdos`` accepts a unique prefix)."""
    return (value or "")[:8] or "-"


def age(when: datetime | float | None, now: datetime | None = None) -> str:
    """How long ago: ``45s``, ``12m``, ``3h``, ``9d``."""
    if when is None:
        return "-"
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds // length}{unit}"
    return f"{seconds}s"


def size(value: int | None) -> str:
    """Bytes for people: ``512B``, ``1.5KiB``, ``20.0MiB``."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{int(amount)}{unit}" if unit == "B" else f"{amount:.1f}{unit}"
        amount /= 1024
    return f"{amount:.1f}TiB"  # pragma: no cover - the loop returns at GiB


def terminal_width() -> int | None:
    """The width to fit tables into: ``COLUMNS``, else the terminal's; None when piped."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size((120, 24)).columns


def _cut(value: str, width: int) -> str:
    if len(value) <= width:
        return value
    return value[: max(0, width - 1)] + ELLIPSIS if width > 0 else ""


def render_table(
    rows: Sequence[Sequence[str]],
    headers: Sequence[str],
    *,
    shrinkable: Sequence[bool] | None = None,
    right: Sequence[bool] | None = None,
    width: int | None = None,
) -> str:
    """Rows of cells as aligned columns; shrinkable columns cut to fit ``width``.

    Example::

        render_table([["web-01", "online"]], ["HOSTNAME", "STATUS"])
        # 'HOSTNAME  STATUS\\nweb-01    online'
    """
    count = len(headers)
    shrinkable = shrinkable or [False] * count
    right = right or [False] * count
    widths = [max([len(headers[i])] + [len(row[i]) for row in rows]) for i in range(count)]
    if width is not None:
        excess = sum(widths) + len(GAP) * (count - 1) - width
        floors = [max(len(headers[i]), 6) for i in range(count)]
        while excess > 0:
            candidates = [i for i in range(count) if shrinkable[i] and widths[i] > floors[i]]
            if not candidates:
                break
            widest = max(candidates, key=lambda i: widths[i])
            others = [widths[i] for i in candidates if i != widest]
            step = max(1, min(excess, widths[widest] - max([floors[widest], *others])))
            widths[widest] -= step
            excess -= step

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            cell = _cut(cell, widths[i])
            last = i == count - 1
            if right[i]:
                parts.append(cell.rjust(widths[i]))
            else:
                parts.append(cell if last else cell.ljust(widths[i]))
        return GAP.join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def _data(value: Any) -> Any:
    if isinstance(value, list):
        return [unstructure(v) for v in value]
    return unstructure(value)


def _dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False)
    plain = json.loads(json.dumps(data))  # enums (str subclasses) become plain strings
    dumped: str = yaml.safe_dump(plain, sort_keys=False, allow_unicode=True)
    return dumped.rstrip("\n")


def emit(
    items: Sequence[Any],
    columns: Sequence[Column],
    fmt: str,
    *,
    empty: str = "",
    data: Any = None,
) -> None:
    """Print a listing in ``fmt`` (``table``, ``wide``, ``json``, ``yaml``).

    ``data`` replaces the items in JSON/YAML (a whole page, say); ``empty`` is said on
    stderr when a table has no rows (the header alone would look like a failure).
    """
    if fmt in ("json", "yaml"):
        click.echo(_dump(_data(list(items)) if data is None else _data(data), fmt))
        return
    shown = [c for c in columns if fmt == "wide" or not c.wide]
    rows = [[text(c.get(item)) for c in shown] for item in items]
    click.echo(
        render_table(
            rows,
            [c.header for c in shown],
            shrinkable=[c.shrink for c in shown],
            right=[c.align_right for c in shown],
            width=terminal_width(),
        )
    )
    if not items and empty:
        click.echo(empty, err=True)


def emit_one(item: Any, columns: Sequence[Column], fmt: str) -> None:
    """Print one model: a one-row table, or the model itself in JSON/YAML."""
    if fmt in ("json", "yaml"):
        click.echo(_dump(_data(item), fmt))
        return
    emit([item], columns, fmt)
