"""Models to pandas DataFrames (pandas is optional: ``pip install 'gdos[notebook]'``).

pandas is imported only when a frame is asked for, so the SDK, the master and the
worker never need it; without it, :func:`import_pandas` raises an ``ImportError`` that
says which extra to install.

* :func:`records_frame`: a list of models, one row each. Nested models are flattened to
  dotted columns (``fingerprint.os``, ``latest.cpu_percent``); ``datetime`` fields and float
  Unix-second fields named ``ts`` or ``*_at`` become UTC ``datetime64`` columns; enums
  become categories (their values, in declaration order); lists and dicts stay objects.
* :func:`series_frame`: metric series (a start, a step and a list of values each) as one
  frame with a UTC ``DatetimeIndex``, a column per series, or in long form (one row per
  value). The lists are handed to numpy as they are: no Python object per point.

Example::

    frame = records_frame(nodes, Node)
    frame.groupby("status").size()
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import pandas

__all__ = ["NOTEBOOK_EXTRA", "field_model", "import_pandas", "records_frame", "series_frame"]

NOTEBOOK_EXTRA = "pip install 'gdos[notebook]'"


def import_pandas() -> types.ModuleType:
    """pandas, or an ImportError that names the extra to install."""
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            f"DataFrames need pandas, which is not installed: {NOTEBOOK_EXTRA}"
            " (or pip install pandas)"
        ) from exc
    return pandas


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # a forward reference that cannot be resolved
        return {}


def _unwrap(tp: Any) -> Any:
    """``X | None`` to ``X``; anything else unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def field_model(cls: type, name: str) -> type | None:
    """The attrs class a field of ``cls`` holds (``Node.fingerprint``: Fingerprint), if any."""
    tp = _unwrap(_hints(cls).get(name, Any))
    return tp if isinstance(tp, type) and attrs.has(tp) else None


@attrs.frozen
class _Column:
    path: tuple[str, ...]
    type: Any  # the leaf's type, Optional removed

    @property
    def name(self) -> str:
        return ".".join(self.path)


def _columns(cls: type, prefix: tuple[str, ...] = ()) -> list[_Column]:
    out: list[_Column] = []
    hints = _hints(cls)
    for field in attrs.fields(cls):
        nested = field_model(cls, field.name)
        path = (*prefix, field.name)
        if nested is not None and len(prefix) < 3:
            out.extend(_columns(nested, path))
        else:
            out.append(_Column(path, _unwrap(hints.get(field.name, Any))))
    return out


def _value(item: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        if item is None:
            return None
        item = getattr(item, name, None)
    return item


def _is_time_seconds(column: _Column) -> bool:
    last = column.path[-1]
    return column.type is float and (last == "ts" or last.endswith("_at"))


def _convert(pd: Any, column: _Column, values: list[Any]) -> Any:
    tp = column.type
    if tp is datetime:
        return pd.to_datetime(pd.Series(values, dtype=object), utc=True)
    if _is_time_seconds(column):
        return pd.to_datetime(pd.Series(values, dtype="float64"), unit="s", utc=True)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        categories = [m.value for m in tp]
        return pd.Categorical(
            [v.value if isinstance(v, enum.Enum) else v for v in values], categories=categories
        )
    if typing.get_origin(tp) is typing.Literal:
        return pd.Categorical(values, categories=list(typing.get_args(tp)))
    if tp is bool:
        return pd.array(values, dtype="boolean")
    if tp is int:
        return pd.array(values, dtype="Int64")
    if tp is float:
        return pd.array([float("nan") if v is None else v for v in values], dtype="float64")
    return pd.Series(values, dtype=object) if tp is not str else values


def records_frame(items: Sequence[Any], item_type: type | None = None) -> pandas.DataFrame:
    """Models as a DataFrame, one row each (see the module docstring for the dtypes)."""
    pd = import_pandas()
    cls = item_type or (type(items[0]) if items else None)
    if cls is None or not attrs.has(cls):
        plain: pandas.DataFrame = pd.DataFrame({"value": list(items)})
        return plain
    data = {}
    for column in _columns(cls):
        values = [_value(item, column.path) for item in items]
        converted = _convert(pd, column, values)
        data[column.name] = converted.array if hasattr(converted, "array") else converted
    frame: pandas.DataFrame = pd.DataFrame(data, index=pd.RangeIndex(len(items)))
    return frame


def series_frame(
    labels: Sequence[str],
    starts: Sequence[int],
    steps: Sequence[int],
    values: Sequence[Sequence[float | None]],
    *,
    long: bool = False,
    extra: dict[str, Sequence[str]] | None = None,
) -> pandas.DataFrame:
    """Series as one frame: a UTC ``DatetimeIndex`` named ``time`` and a column per label.

    Series ``i`` has ``values[i][k]`` at Unix second ``starts[i] + k * steps[i]`` (``None``
    for no value). Times no series has a value for are left out; a time one series lacks
    is ``NaN`` in its column. With ``long``, one row per value present instead: ``time``,
    ``series`` (the label), the ``extra`` per-series columns, and ``value``.
    """
    pd = import_pandas()
    import numpy as np

    columns = [np.array(v, dtype="float64") for v in values]  # None becomes NaN, in C
    stamps = [
        np.arange(len(c), dtype="int64") * int(step) + int(start)
        for c, start, step in zip(columns, starts, steps, strict=True)
    ]
    if long:
        present = [~np.isnan(c) for c in columns]
        counts = np.array([int(p.sum()) for p in present], dtype="int64")
        which = np.repeat(np.arange(len(labels)), counts)
        empty_i, empty_f = np.empty(0, dtype="int64"), np.empty(0, dtype="float64")
        all_ts = np.concatenate([s[p] for s, p in zip(stamps, present, strict=True)] or [empty_i])
        data: dict[str, Any] = {
            "time": pd.to_datetime(all_ts, unit="s", utc=True),
            "series": pd.Categorical.from_codes(which, categories=list(labels)),
        }
        for name, per_series in (extra or {}).items():
            uniques, codes = np.unique(np.asarray(per_series, dtype=object), return_inverse=True)
            data[name] = pd.Categorical.from_codes(codes[which], categories=list(uniques))
        data["value"] = np.concatenate(
            [c[p] for c, p in zip(columns, present, strict=True)] or [empty_f]
        )
        frame: pandas.DataFrame = pd.DataFrame(data)
        return frame
    if columns and all(
        len(c) == len(columns[0]) and s == starts[0] and t == steps[0]
        for c, s, t in zip(columns, starts, steps, strict=True)
    ):
        grid = stamps[0]  # every series on the same grid: the common case, no scatter
        table = np.column_stack(columns)
    else:
        grid = np.unique(np.concatenate(stamps)) if stamps else np.empty(0, dtype="int64")
        table = np.full((len(grid), len(labels)), np.nan)
        for column, (s, c) in enumerate(zip(stamps, columns, strict=True)):
            table[np.searchsorted(grid, s), column] = c
    keep = ~np.isnan(table).all(axis=1) if len(labels) else np.zeros(len(grid), dtype=bool)
    index = pd.DatetimeIndex(pd.to_datetime(grid[keep], unit="s", utc=True), name="time")
    frame = pd.DataFrame(table[keep], index=index, columns=pd.Index(list(labels), name="series"))
    return frame
