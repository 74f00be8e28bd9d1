"""The in-memory series: encoding precision, tiers, retention, memory per sample."""

from __future__ import annotations

import math
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdos_sdk.metrics.series import CHUNK, Series, SeriesStore, decode, encode, encode_all

T0 = 1_699_999_980  # a whole minute


@given(st.floats(min_value=0.001, max_value=1e15))
def test_codec_relative_error_is_tiny(value: float) -> None:
    back = decode(encode(value))
    assert abs(back - value) <= value * 0.0004 + 0.0007


def test_codec_edges() -> None:
    assert decode(encode(0.0)) == 0.0
    assert decode(encode(-5.0)) == 0.0  # metrics are never negative
    assert decode(encode(math.nan)) == 0.0
    assert abs(decode(encode(42.0)) - 42.0) < 0.02
    assert decode(encode(1e30)) > 1e19  # clamps instead of wrapping


def test_query_seconds_with_steps_and_aggregates() -> None:
    store = SeriesStore()
    for i in range(120):
        store.add("node:a", {"cpu": float(i % 10)}, T0 + i)
    raw = store.query("node:a", "cpu", start=T0, end=T0 + 10)
    assert [ts for ts, _ in raw] == list(range(T0, T0 + 10))
    assert [round(v, 2) for _, v in raw] == [float(i) for i in range(10)]
    tens = store.query("node:a", "cpu", start=T0, end=T0 + 30, step=10, agg="avg")
    assert [(ts, round(v, 2)) for ts, v in tens] == [(T0, 4.5), (T0 + 10, 4.5), (T0 + 20, 4.5)]
    assert [
        v for _, v in store.query("node:a", "cpu", start=T0, end=T0 + 10, step=10, agg="max")
    ] == [pytest.approx(9.0, rel=1e-3)]
    assert store.query("node:a", "cpu", start=T0, end=T0 + 10, step=10, agg="min")[0][1] == 0.0
    assert store.query("node:a", "nope", start=T0, end=T0 + 10) == []


def test_gaps_are_missing_not_zero() -> None:
    store = SeriesStore()
    store.add("n", {"cpu": 5.0}, T0)
    store.add("n", {"cpu": 7.0}, T0 + 5)
    assert [ts for ts, _ in store.query("n", "cpu", start=T0, end=T0 + 10)] == [T0, T0 + 5]


def test_minute_tier_avg_min_max() -> None:
    store = SeriesStore()
    for i in range(180):  # three minutes: values 0..59 each minute
        store.add("n", {"cpu": float(i % 60)}, T0 + i)
    avg = store.query("n", "cpu", start=T0, end=T0 + 180, step=60, agg="avg")
    assert [ts for ts, _ in avg] == [T0, T0 + 60, T0 + 120]
    assert all(abs(v - 29.5) < 0.05 for _, v in avg)
    assert [
        round(v) for _, v in store.query("n", "cpu", start=T0, end=T0 + 180, step=60, agg="max")
    ] == [59, 59, 59]
    assert [
        round(v) for _, v in store.query("n", "cpu", start=T0, end=T0 + 180, step=120, agg="min")
    ] == [0, 0]


def test_old_ranges_fall_back_to_minutes_and_retention_frees_memory() -> None:
    store = SeriesStore(window=600, minute_window=3600)
    for i in range(1800):
        store.add("n", {"cpu": 50.0}, T0 + i)
    before = store.nbytes()
    store.trim(T0 + 1800)
    assert store.nbytes() < before
    assert store.sample_count() <= 600 + CHUNK
    old = store.query("n", "cpu", start=T0, end=T0 + 300, step=1)
    assert old and all(ts % 60 == 0 for ts, _ in old)  # answered from the minute tier
    store.trim(T0 + 10_000)
    assert store.query("n", "cpu", start=T0, end=T0 + 300, step=60) == []


def test_drop_frees_a_target() -> None:
    store = SeriesStore()
    store.add("instance:x", {"cpu": 1.0, "rss": 2.0}, T0)
    assert store.series_count() == 2
    store.drop("instance:x")
    assert store.series_count() == 0 and store.latest("instance:x") == {}


def test_latest() -> None:
    store = SeriesStore()
    store.add("n", {"cpu": 1.0}, T0)
    store.add("n", {"cpu": 2.0}, T0 + 1)
    store.add("n", {"cpu": 9.0}, T0 - 5)  # a late sample does not become "latest"
    assert store.latest("n") == {"cpu": (T0 + 1, 2.0)}


def test_memory_per_retained_sample_is_under_four_bytes() -> None:
    """Whole-heap accounting (tracemalloc), including every Python object of the store."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        store = SeriesStore(window=3600)
        for second in range(3600):
            for node in range(8):
                store.add(
                    f"node:{node}",
                    {f"m{k}": float(second % 97 + k) for k in range(10)},
                    T0 + second,
                )
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    samples = store.sample_count()
    assert samples == 3600 * 80
    assert used / samples < 4.0, used / samples


def test_grid_is_the_query_on_a_regular_grid_with_gaps_as_none() -> None:
    store = SeriesStore(window=3600)
    for ts in (100, 101, 103, 104, 160, 230):
        store.add("node:a", {"cpu": float(ts)}, ts)
    first, step, values = store.grid("node:a", "cpu", start=90, end=110)
    assert (first, step) == (100, 1) and values[2] is None and len(values) == 5
    assert values[0] == pytest.approx(100.0, rel=1e-3) and values[4] == pytest.approx(104, rel=1e-3)
    assert [round(v, 1) for v in values if v is not None] == [
        round(v, 1) for _, v in store.query("node:a", "cpu", start=90, end=110)
    ]
    first, step, values = store.grid("node:a", "cpu", start=100, end=240, step=30, agg="max")
    points = store.query("node:a", "cpu", start=100, end=240, step=30, agg="max")
    assert step == 30 and [(first + i * step, v) for i, v in enumerate(values) if v] == points
    assert store.grid("node:b", "cpu", start=0, end=10) == (0, 1, [])


@pytest.mark.parametrize(
    "values",
    [
        [0.0, 1.0, 42.5, 1e6, 3],
        [0.0, -0.0, 0, 2**40],
        [5.0, -1.0, 7.0],
        [1.0, math.nan, 2.0],
        [math.nan, 1.0],
        [1.0, math.inf],
        [-math.inf, math.inf],
        [1e30, 1e19, 1e300],
        [],
    ],
)
def test_encode_all_is_encode_of_each_value(values: list[float]) -> None:
    assert encode_all(values) == [encode(v) for v in values]


def test_minute_aggregates_from_the_table_are_those_of_the_codes() -> None:
    values = [0.0, 1.5, 99.0, 1e9, 3.25, 0.001] * 9 + [2.0, 2.0]  # 56 of a minute's seconds
    series = Series()
    for i, value in enumerate(values):
        series.add(T0 + i + (i > 30) * 4, value)  # four seconds missing
    series.add(T0 + 60, 1.0)  # closes the minute
    codes = [encode(v) for v in values]
    total = sum(2.0 ** (c / 1000) for c in codes) - len(codes)
    expected = {
        "avg": decode(encode(total / len(codes))),
        "min": decode(encode(decode(min(codes)))),
        "max": decode(encode(decode(max(codes)))),
    }
    for agg, value in expected.items():
        assert list(series.minutes(T0, T0 + 60, agg)) == [(T0, value)]  # type: ignore[arg-type]


def test_trim_some_spreads_a_full_trim_over_its_calls() -> None:
    def filled() -> SeriesStore:
        store = SeriesStore(window=600, minute_window=3600)
        for node in range(10):
            for i in range(0, 1800, 7):
                store.add(f"node:{node}", {"cpu": 50.0, "mem": 1.0}, T0 + i)
        return store

    whole, spread = filled(), filled()
    whole.trim(T0 + 1800)
    spread.trim_some(T0 + 1800, parts=4)  # 3 targets of 10
    assert whole.nbytes() < spread.nbytes() < filled().nbytes()
    for _ in range(3):
        spread.trim_some(T0 + 1800, parts=4)
    assert spread.nbytes() == whole.nbytes()
    assert spread.sample_count() == whole.sample_count()
    # A target added during a round is trimmed in the next one.
    spread.add("node:new", {"cpu": 1.0}, T0)
    spread.trim_some(T0 + 10_000, parts=4)  # a new round: node:new among the first three
    assert "node:new" in spread.targets()
    for _ in range(3):
        spread.trim_some(T0 + 10_000, parts=4)
    assert spread.sample_count() == 0
    assert spread.query("node:0", "cpu", start=T0, end=T0 + 300, step=60) == []
