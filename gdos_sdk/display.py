"""How models look in a terminal and in a notebook: short reprs, HTML tables, model lists.

Every model the client returns is an ``attrs`` class decorated with :func:`displayed`:
its ``repr()`` is one line of at most :data:`MAX_REPR` characters that leads with what
identifies it (``id``, a name, its state), and its ``_repr_html_`` is a small table that
Jupyter shows, states coloured (green running/online, amber pending/backoff, red
failed/firing). A list endpoint returns a :class:`ModelList`, a ``list`` that also has a
short repr, an HTML table and :meth:`ModelList.to_pandas`.

Example::

    nodes = gdos.list_nodes()        # a ModelList[Node]: still a list
    nodes                            # in Jupyter: a table, states coloured
    print(nodes[0])                  # Node(id='2f6c...', hostname='app-01', status=online, ...)
    frame = nodes.to_pandas()        # one row per node, nested fields flattened
"""

from __future__ import annotations

import enum
import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from gdos_sdk.frames import field_model, records_frame

if TYPE_CHECKING:
    import pandas

__all__ = ["MAX_REPR", "ModelList", "displayed", "html_record", "html_table", "short_repr"]

T = TypeVar("T")
C = TypeVar("C", bound=type)

MAX_REPR = 120
_MAX_STR = 40
_MAX_ROWS = 100

#: fields that name a thing, shown right after ``id`` in a short repr
_NAME_FIELDS = (
    "name",
    "hostname",
    "username",
    "alias",
    "rule_name",
    "package",
    "version",
    "target",
    "target_name",
    "metric",
    "command",
    "action",
    "actor",
)
#: fields whose values are coloured like states even when they are plain strings
_STATE_FIELDS = {"state", "status", "health", "severity", "result", "kind", "role"}

_GOOD = {"online", "running", "healthy", "ok", "done", "resolved", "attached", "succeeded"}
_WARN = {
    "pending",
    "starting",
    "stopping",
    "backoff",
    "deploying",
    "warning",
    "detached",
    "planned",
}
_BAD = {"offline", "failed", "firing", "error", "unhealthy", "critical", "unknown"}
_COLOURS = {
    "good": ("#e6f4ea", "#137333"),
    "warn": ("#fef7e0", "#b06000"),
    "bad": ("#fce8e6", "#c5221f"),
    "plain": ("#f1f3f4", "#3c4043"),
}


def _tone(value: str) -> str:
    if value in _GOOD:
        return "good"
    if value in _WARN:
        return "warn"
    if value in _BAD:
        return "bad"
    return "plain"


def _is_state(name: str, value: Any) -> bool:
    return isinstance(value, enum.Enum) or (name in _STATE_FIELDS and isinstance(value, str))


def _fields(obj: Any) -> tuple[attrs.Attribute[Any], ...]:
    found: tuple[attrs.Attribute[Any], ...] = attrs.fields(type(obj))
    return found


def _is_default(field: attrs.Attribute[Any], value: Any) -> bool:
    default = field.default
    if default is attrs.NOTHING:
        return False
    factory = getattr(default, "factory", None)
    if factory is not None:
        return not value if factory in (list, dict) else False
    return bool(value == default)


def _scalar(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, str):
        text = value if len(value) <= _MAX_STR else value[: _MAX_STR - 1] + "…"
        return repr(text)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, list | tuple):
        return f"[{len(value)}]"
    if isinstance(value, dict):
        return f"{{{len(value)}}}"
    return repr(value)


def _ordered(obj: Any) -> list[attrs.Attribute[Any]]:
    fields = list(_fields(obj))

    def rank(field: attrs.Attribute[Any]) -> tuple[int, int]:
        position = fields.index(field)
        if field.name == "id":
            return (0, position)
        if field.name in _NAME_FIELDS:
            return (1, _NAME_FIELDS.index(field.name))
        if field.name in ("state", "status", "health"):
            return (2, position)
        if _is_state(field.name, getattr(obj, field.name)):
            return (3, position)
        return (4, position)

    return sorted(fields, key=rank)


def short_repr(obj: Any) -> str:
    """One line of at most :data:`MAX_REPR` characters: the fields that identify ``obj``.

    Fields left at their default, empty, or holding a nested model are left out; long
    strings are cut with ``…``; lists show their length (``nodes=[3]``).
    """
    name = type(obj).__name__
    parts: list[str] = []
    for field in _ordered(obj):
        value = getattr(obj, field.name)
        if value is None or value == "" or _is_default(field, value) or attrs.has(type(value)):
            continue
        if isinstance(value, list | tuple | dict) and not value:
            continue
        parts.append(f"{field.name}={_scalar(value)}")
    text = f"{name}({', '.join(parts)})"
    while len(text) > MAX_REPR and parts:
        parts.pop()
        text = f"{name}({', '.join([*parts, '…'])})"
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 2] + "…)"


def _label(obj: Any) -> str:
    """A few characters that tell one model from another in a list's repr."""
    if not attrs.has(type(obj)):
        return repr(obj)[:_MAX_STR]
    label = ""
    for name in ("name", "hostname", "username", "rule_name", "target", "id"):
        value = getattr(obj, name, None)
        if isinstance(value, str) and value:
            label = value if len(value) <= 24 else value[:23] + "…"
            break
    for field in _fields(obj):
        value = getattr(obj, field.name)
        if _is_state(field.name, value):
            state = value.value if isinstance(value, enum.Enum) else value
            return f"{label} ({state})" if label else str(state)
    return label or type(obj).__name__


# --- HTML ---------------------------------------------------------------------------------

_TABLE = (
    '<table class="gdos" style="border-collapse:collapse;font-size:12px">'
    "{caption}<thead>{head}</thead><tbody>{body}</tbody></table>"
)
_CELL = 'style="padding:2px 8px;text-align:left;border-bottom:1px solid #e0e0e0"'


def _badge(value: str) -> str:
    background, colour = _COLOURS[_tone(value)]
    return (
        f'<span data-state="{html.escape(value)}" style="background:{background};'
        f'color:{colour};padding:0 6px;border-radius:8px">{html.escape(value)}</span>'
    )


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if _is_state(name, value):
        return _badge(value.value if isinstance(value, enum.Enum) else value)
    if attrs.has(type(value)):
        return html.escape(short_repr(value))
    if isinstance(value, list | tuple):
        shown = ", ".join(_label(v) if attrs.has(type(v)) else str(v) for v in value[:5])
        more = f", … ({len(value)})" if len(value) > 5 else ""
        return html.escape(shown + more)
    if isinstance(value, dict):
        shown = ", ".join(f"{k}={v}" for k, v in list(value.items())[:5])
        return html.escape(shown + (", …" if len(value) > 5 else ""))
    if isinstance(value, datetime):
        return html.escape(_scalar(value))
    text = _scalar(value) if isinstance(value, float) else str(value)
    return html.escape(text if len(text) <= 80 else text[:79] + "…")


def html_record(obj: Any) -> str:
    """One model as a two-column table (field, value), states coloured."""
    rows = "".join(
        f"<tr><th {_CELL}>{html.escape(f.name)}</th>"
        f"<td {_CELL}>{_cell(f.name, getattr(obj, f.name))}</td></tr>"
        for f in _fields(obj)
    )
    caption = f"<caption style='text-align:left'><b>{html.escape(type(obj).__name__)}</b></caption>"
    return _TABLE.format(caption=caption, head="", body=rows)


def html_table(items: Sequence[Any], item_type: type | None = None) -> str:
    """Models as one table, a row each (nested models left out), the first 100 rows."""
    cls = item_type or (type(items[0]) if items else None)
    title = f"{len(items)} {cls.__name__}" if cls is not None else f"{len(items)} items"
    caption = f"<caption style='text-align:left'><b>{html.escape(title)}</b></caption>"
    if cls is None or not attrs.has(cls):
        body = "".join(f"<tr><td {_CELL}>{html.escape(repr(v))}</td></tr>" for v in items)
        return _TABLE.format(caption=caption, head="", body=body)
    columns = [f.name for f in attrs.fields(cls) if not _nested(cls, f)]
    head = "<tr>" + "".join(f"<th {_CELL}>{html.escape(c)}</th>" for c in columns) + "</tr>"
    body = "".join(
        "<tr>" + "".join(f"<td {_CELL}>{_cell(c, getattr(v, c))}</td>" for c in columns) + "</tr>"
        for v in items[:_MAX_ROWS]
    )
    if len(items) > _MAX_ROWS:
        body += (
            f"<tr><td {_CELL} colspan={len(columns)}>… {len(items) - _MAX_ROWS} more"
            " (use .to_pandas() to see all)</td></tr>"
        )
    return _TABLE.format(caption=caption, head=head, body=body)


def _nested(cls: type, field: attrs.Attribute[Any]) -> bool:
    """A field holding another model (a ``Node``'s fingerprint): too wide for a list row."""
    return field_model(cls, field.name) is not None


# --- the decorator and the list type --------------------------------------------------------


def _repr(self: Any) -> str:
    return short_repr(self)


def _repr_html(self: Any) -> str:
    return html_record(self)


def displayed(cls: C) -> C:
    """Give an attrs class the short ``repr`` and the notebook table (put it above attrs).

    Example::

        @displayed
        @attrs.frozen
        class Node: ...
    """
    cls.__repr__ = _repr  # type: ignore[assignment]
    cls._repr_html_ = _repr_html  # type: ignore[attr-defined]
    return cls


class ModelList(list[T], Generic[T]):
    """The models a list endpoint returned: a ``list`` with a table view and a DataFrame.

    ``item_type`` is the model class (known even when the list is empty, so an empty
    list still makes a DataFrame with the right columns).

    Example::

        instances = gdos.list_instances(state="failed")
        instances.to_pandas()[["package", "node_id", "reason"]]
    """

    def __init__(self, items: Iterable[T] = (), item_type: type | None = None) -> None:
        super().__init__(items)
        self.item_type = item_type

    def __repr__(self) -> str:
        cls = self.item_type or (type(self[0]) if self else None)
        name = cls.__name__ if cls is not None else "item"
        head = f"[{len(self)} {name}"
        if not self:
            return head + "]"
        labels: list[str] = []
        for item in self:
            candidate = ": " + ", ".join([*labels, _label(item)]) + "]"
            if len(head) + len(candidate) > MAX_REPR - 4:
                break
            labels.append(_label(item))
        shown = ", ".join(labels)
        rest = ", …" if len(labels) < len(self) else ""
        return f"{head}: {shown}{rest}]" if labels else f"{head}: …]"

    def _repr_html_(self) -> str:
        return html_table(self, self.item_type)

    def to_pandas(self) -> pandas.DataFrame:
        """A DataFrame, one row per model: nested models flattened to ``a.b`` columns.

        Times (``datetime`` fields, and float ``ts`` / ``*_at`` Unix seconds) become UTC
        ``datetime64`` columns, enums categories; lists and dicts stay Python objects.
        Needs pandas (``pip install 'gdos[notebook]'``).
        """
        return records_frame(list(self), self.item_type)
