"""Short reprs, notebook tables and DataFrames for every model a user sees."""

from __future__ import annotations

import collections.abc
import enum
import inspect
import sys
import types
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gdos_sdk.models
from gdos_sdk import AsyncClient, Client
from gdos_sdk.display import MAX_REPR, ModelList
from gdos_sdk.models import (
    Fingerprint,
    Instance,
    MetricRange,
    MetricSeries,
    Node,
    NodeSample,
    NodeStatus,
)
from gdos_sdk.rollouts import RolloutStrategy
from gdos_sdk.states import DesiredState, InstanceState


def _attrs_classes(tp: Any, seen: set[type]) -> None:
    """Every attrs class reachable from a type annotation."""
    origin = typing.get_origin(tp)
    if origin is not None:
        for arg in typing.get_args(tp):
            _attrs_classes(arg, seen)
        if isinstance(origin, type) and attrs.has(origin):
            _attrs_classes(origin, seen)
        return
    if isinstance(tp, type) and attrs.has(tp) and tp not in seen:
        seen.add(tp)
        for hint in typing.get_type_hints(tp).values():
            _attrs_classes(hint, seen)


def user_models() -> list[type]:
    """gdos_sdk.models' classes and every model a Client method returns (transitively)."""
    seen: set[type] = set()
    for name in gdos_sdk.models.__all__:
        _attrs_classes(getattr(gdos_sdk.models, name), seen)
    for name, method in vars(Client).items():
        if callable(method) and not name.startswith("_"):
            _attrs_classes(inspect.signature(method).return_annotation, seen)
    return sorted(seen, key=lambda c: c.__name__)


def _strategy(tp: Any) -> st.SearchStrategy[Any]:
    """Values of ``tp`` with long strings, full lists and nested models (for the reprs)."""
    if isinstance(tp, typing.TypeVar):
        tp = Node  # Page[T]: a page of nodes
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_strategy(a) for a in args))
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (list, tuple) or origin is collections.abc.Sequence:
        item = args[0] if args else str
        return st.lists(_strategy(item), max_size=3).map(list if origin is not tuple else tuple)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), _strategy(args[1]), max_size=3)
    if tp is type(None):
        return st.none()
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if tp is RolloutStrategy:
        return _FIELD["strategy"]
    if isinstance(tp, type) and attrs.has(tp):
        hints = typing.get_type_hints(tp)
        fields = {
            f.name: _FIELD[f.name] if f.name in _FIELD else _strategy(hints[f.name])
            for f in attrs.fields(tp)
        }
        # A model's validators refuse some drawn values (a blank name, an over-long one):
        # those draws are not models, so they are dropped, not failed.
        return st.fixed_dictionaries(fields).map(lambda kw: _build(tp, kw)).filter(_is_model)
    if tp is str:
        return st.just("x" * 200) | st.just("web-01") | st.text(max_size=10)
    if tp is float:
        return st.floats(min_value=0, allow_nan=False, allow_infinity=False)
    if tp is datetime:
        return st.datetimes(timezones=st.just(UTC))
    if tp is Path:
        return st.just(Path("/srv/app"))
    if tp is Any:
        return st.just({"any": [1, 2]})
    return st.from_type(tp)


# Fields whose validators accept few of the generic draws.
_FIELD: dict[str, st.SearchStrategy[Any]] = {
    "metric": st.sampled_from(["cpu", "mem_percent"]),
    # deadlines bounded and above min_healthy_time: a random float rarely is
    "strategy": st.builds(
        RolloutStrategy,
        max_parallel=st.integers(1, 50),
        canary=st.integers(0, 5),
        auto_promote_after=st.none() | st.floats(0, 600),
    ),
}


def _build(tp: type, kwargs: dict[str, Any]) -> Any:
    try:
        return tp(**kwargs)
    except (ValueError, TypeError):  # ValidationError is a ValueError too
        return None


def _is_model(value: Any) -> bool:
    return value is not None


MODELS = user_models()


def test_the_walk_finds_the_models_users_see() -> None:
    names = {c.__name__ for c in MODELS}
    expected = {"Node", "Instance", "AlertRule", "ActiveAlert", "AlertEvent", "BatchJob"}
    assert expected | {"CommandRun", "LogChunk", "TerminalSession", "BackupInfo"} <= names
    assert {"ObjectInfo", "MetricSeries", "Page", "Fingerprint", "NodeSample"} <= names


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_every_model_has_a_short_repr_and_a_table(cls: type, data: st.DataObject) -> None:
    value = data.draw(_strategy(cls))
    text = repr(value)
    assert len(text) <= MAX_REPR, text
    assert text.startswith(cls.__name__ + "(") and "\n" not in text
    table = value._repr_html_()
    assert table.startswith("<table") and cls.__name__ in table


def test_repr_leads_with_identity_and_state() -> None:
    instance = Instance(
        id="5b1c7f1e-7777-4444-8888-999999999999",
        module_id="m" * 36,
        system_id="s" * 36,
        node_id="n" * 36,
        package="web",
        version="1.2.0",
        desired_state=DesiredState.RUNNING,
        state=InstanceState.BACKOFF,
        reason="exited with code 2",
    )
    text = repr(instance)
    assert text.startswith(
        "Instance(id='5b1c7f1e-7777-4444-8888-999999999999', package='web', version='1.2.0',"
        " state=backoff"
    )
    assert len(text) <= MAX_REPR
    html = instance._repr_html_()
    assert 'data-state="backoff"' in html and "#b06000" in html  # amber


def _node(i: int, status: NodeStatus = NodeStatus.ONLINE) -> Node:
    return Node(
        id=f"node-{i}",
        hostname=f"app-{i:02d}",
        alias="",
        status=status,
        labels={"role": "web"},
        fingerprint=Fingerprint(
            os="Linux",
            os_version="12",
            kernel="6.1",
            arch="x86_64",
            cpu_model="cpu",
            cpu_cores=4,
            cpu_physical_cores=2,
            memory_bytes=8 << 30,
        )
        if i % 2 == 0
        else None,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        latest=NodeSample(
            ts=1_700_000_000.0 + i,
            cpu_percent=10.0 * i,
            load1=0.1,
            load5=0.1,
            load15=0.1,
            mem_total=1,
            mem_used=1,
            mem_percent=1.0,
            swap_total=0,
            swap_used=0,
            disk_read_bps=0.0,
            disk_write_bps=0.0,
            uptime_seconds=1.0,
        ),
    )


def test_model_list_is_a_list_with_a_short_repr_and_a_table() -> None:
    nodes = ModelList(
        [_node(i, NodeStatus.OFFLINE if i == 1 else NodeStatus.ONLINE) for i in range(40)], Node
    )
    assert isinstance(nodes, list) and nodes[1].hostname == "app-01" and len(nodes) == 40
    assert nodes == [
        _node(i, NodeStatus.OFFLINE if i == 1 else NodeStatus.ONLINE) for i in range(40)
    ]
    text = repr(nodes)
    assert len(text) <= MAX_REPR and text.startswith("[40 Node: app-00 (online), app-01 (offline)")
    html = nodes._repr_html_()
    assert html.count("<tr>") == 41 and 'data-state="offline"' in html and "#c5221f" in html
    assert "fingerprint" not in html.split("</thead>")[0]  # nested models left out of rows
    assert repr(ModelList([], Node)) == "[0 Node]"
    many = ModelList([_node(i) for i in range(150)], Node)._repr_html_()
    assert "50 more" in many


def test_model_list_to_pandas_flattens_with_sensible_dtypes() -> None:
    frame = ModelList([_node(0), _node(1, NodeStatus.OFFLINE)], Node).to_pandas()
    assert frame.shape[0] == 2
    assert frame["status"].dtype == "category"
    assert list(frame["status"].cat.categories) == ["online", "offline", "pending", "planned"]
    assert frame["status"].tolist() == ["online", "offline"]
    assert str(frame["created_at"].dtype).startswith("datetime64") and "UTC" in str(
        frame["created_at"].dtype
    )
    assert "UTC" in str(frame["latest.ts"].dtype)  # float Unix seconds named ts
    assert frame["latest.ts"][1] == pd.Timestamp(1_700_000_001, unit="s", tz="UTC")
    assert frame["latest.cpu_percent"].tolist() == [0.0, 10.0]
    assert frame["fingerprint.os"].tolist()[0] == "Linux" and pd.isna(frame["fingerprint.os"][1])
    assert str(frame["fingerprint.cpu_cores"].dtype) == "Int64"
    assert frame["labels"][0] == {"role": "web"}
    assert str(frame["approved"].dtype) == "boolean"
    empty = ModelList([], Node).to_pandas()
    assert empty.shape == (0, frame.shape[1]) and list(empty.columns) == list(frame.columns)


def test_metric_range_to_pandas_is_one_column_per_series() -> None:
    result = MetricRange(
        metric="cpu",
        start=0,
        end=10,
        step=1,
        agg="avg",
        series=[
            MetricSeries(target="node:a", name="web", start=1, step=1, values=[1.0, 2.0, 3.0]),
            MetricSeries(target="node:b", name="web", start=2, step=1, values=[5.0, None, 7.0]),
        ],
    )
    frame = result.to_pandas()
    assert list(frame.columns) == ["node:a", "node:b"] and frame.index.name == "time"
    assert str(frame.index.tz) == "UTC" and len(frame) == 4
    assert pd.isna(frame["node:a"].iloc[3]) and frame["node:b"].iloc[3] == 7.0
    assert pd.isna(frame["node:b"].iloc[2])  # None is NaN
    assert list(result.to_pandas(label="name").columns) == ["web (node:a)", "web (node:b)"]
    long = result.to_pandas(long=True)
    assert len(long) == 5 and long["value"].tolist() == [1.0, 2.0, 3.0, 5.0, 7.0]
    series = result["node:b"].to_pandas()
    assert series.name == "web" and series.tolist() == [5.0, 7.0]


def test_pandas_is_optional_and_named_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now fails
    nodes = ModelList([_node(0)], Node)
    assert "app-00" in repr(nodes) and "<table" in nodes._repr_html_()  # no pandas needed
    with pytest.raises(ImportError, match=r"gdos\[notebook\]"):
        nodes.to_pandas()
    with pytest.raises(ImportError, match=r"gdos\[notebook\]"):
        MetricRange(metric="cpu", start=0, end=1, step=1, agg="avg").to_pandas()


def test_the_sdk_does_not_import_pandas() -> None:
    import subprocess

    code = (
        "import sys, gdos_sdk, gdos_sdk.client, gdos_sdk.models, gdos_sdk.frames;"
        "assert 'pandas' not in sys.modules and 'numpy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_client_repr_shows_master_user_and_console(cls: type) -> None:
    gdos = cls("http://127.0.0.1:9", retries=0)  # no token: nobody logged in yet
    gdos._user, gdos._user_known = "alice (operator)", True
    text = repr(gdos)
    assert text == (
        f"<{cls.__name__} http://127.0.0.1:9 user=alice (operator) console=http://127.0.0.1:9/>"
    )
    html = gdos._repr_html_()
    assert '<a href="http://127.0.0.1:9/" target="_blank">' in html and "alice" in html
