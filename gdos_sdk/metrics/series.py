"""In-memory time series: 1 s samples for a window, 1 min aggregates for a day (pure).

Each value is stored in **two bytes**: ``round(log2(1 + v) * 1000)`` in an unsigned 16-bit
slot (``array('H')``). The relative error is under 0.04 % at any magnitude (a CPU of
42.00 % reads back as 42.01 % at worst; 1 GB/s as 1 GB/s ± 0.4 MB/s), negative values clamp
to 0 (every metric here is a count, a size, a rate or a percentage) and 65535 marks a missing
second. Samples sit in fixed chunks of :data:`CHUNK` seconds keyed by time, so there is no
Python object per sample and a series holds only the chunks its retained samples touch.

The minute tier keeps (avg, min, max) per minute in the same encoding, folded in as each
minute closes, for :attr:`SeriesStore.minute_window` seconds (default 24 h).

Memory is bounded: :meth:`SeriesStore.trim` frees chunks behind the windows and chunks more
than :attr:`SeriesStore.ahead` seconds in the future (a sample from a clock far ahead must
not pin a chunk forever), and the store refuses new series past ``max_series`` in all and
``max_target_metrics`` per target. Callers that take samples from the network also check
timestamps before adding (the master's :class:`~gdos_master.fleet.Fleet` does).

Example::

    store = SeriesStore(window=3600)
    store.add("node:n1", {"cpu": 12.5, "mem_percent": 40.0}, ts=1700000000)
    store.query("node:n1", "cpu", start=1699999000, end=1700000000, step=10, agg="avg")
"""

from __future__ import annotations

import functools
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

__all__ = [
    "CHUNK",
    "MISSING",
    "Agg",
    "Point",
    "Series",
    "SeriesStore",
    "decode",
    "encode",
    "encode_all",
]

CHUNK = 600  # seconds per chunk of the 1 s tier (1.2 KB)
MINUTE_CHUNK = 360  # minutes per chunk of the minute tier (6 h)
MISSING = 0xFFFF
_MAX = 0xFFFE
_SCALE = 1000.0
_log2 = math.log2
# Values from here up (and infinity) take the largest code; the formula would pass it.
_TOP = 2.0 ** ((_MAX - 0.5) / _SCALE) - 1.0
_EMPTY_CHUNK = array("H", [MISSING]) * CHUNK
_EMPTY_MINUTES = array("H", [MISSING]) * (MINUTE_CHUNK * 3)

Agg = Literal["avg", "min", "max", "last"]

Point = tuple[int, float]


def encode(value: float) -> int:
    """A value's 16-bit code (see the module docstring)."""
    if value != value or value <= 0.0:  # NaN or non-positive
        return 0
    if value >= _TOP:  # infinity too
        return _MAX
    code = int(math.log2(1.0 + value) * _SCALE + 0.5)
    return code if code < _MAX else _MAX


def encode_all(values: Sequence[float]) -> list[int]:
    """:func:`encode` of every value, in one comprehension (the ingest's batch path)."""
    if values:
        # The usual column: no value negative, NaN or past the top code, checked in C
        # (a NaN makes the sum NaN); then the formula alone, without a test per value
        # (0 takes code 0 by the formula too).
        total = sum(values)
        if total == total and min(values) >= 0.0 and max(values) < _TOP:
            log2 = _log2
            return [int(log2(1.0 + v) * _SCALE + 0.5) for v in values]
    return [
        _MAX if v >= _TOP else int(_log2(1.0 + v) * _SCALE + 0.5) if v > 0.0 else 0 for v in values
    ]


def _consecutive(seconds: Sequence[int]) -> bool:
    """Whether ``seconds`` counts up by one from its first second."""
    first = seconds[0]
    return seconds[-1] - first == len(seconds) - 1 and list(seconds) == list(
        range(first, first + len(seconds))
    )


def decode(code: int) -> float:
    """The value a code stands for."""
    return float(2.0 ** (code / _SCALE) - 1.0)


@functools.cache
def _powers() -> array[float]:
    """``2 ** (code / 1000)`` of every code: one more than the value it stands for
    (a table lookup is cheaper than the power; built on first use, 512 KB of doubles)."""
    # From a generator: no list of 64 K float objects on the way (it would stay in the
    # process's resident memory as free heap).
    return array("d", (2.0 ** (code / _SCALE) for code in range(MISSING + 1)))


@functools.cache
def _wire_values() -> list[float | None]:
    """Every code's value to 5 significant digits, and ``None`` for :data:`MISSING`.

    A code stands for a value to within 0.04 % anyway, so the digits past the fifth are
    noise; without them an hour of 100 nodes is 40 % less JSON, and a table lookup is
    cheaper than the power. Built on first use (64 K floats, about 2 MB).
    """
    return [float(f"{decode(code):.5g}") for code in range(MISSING)] + [None]


class Series:
    """One metric of one target."""

    __slots__ = ("_chunks", "_minutes", "_open_minute", "last_ts", "last_value")

    def __init__(self) -> None:
        self._chunks: dict[int, array[int]] = {}
        self._minutes: dict[int, array[int]] = {}  # 3 codes per minute: avg, min, max
        self._open_minute = -1
        self.last_ts = -1
        self.last_value = math.nan

    # --- writing ----------------------------------------------------------------------------

    def add(self, ts: int, value: float) -> None:
        """Record ``value`` at whole second ``ts`` (a later write to the same second wins)."""
        # The hot path of ingest (every metric of every sample): encode() is inlined.
        index = ts // CHUNK
        chunk = self._chunks.get(index)
        if chunk is None:
            chunk = self._chunks[index] = array("H", _EMPTY_CHUNK)
        if value >= _TOP:
            chunk[ts - index * CHUNK] = _MAX
        elif value > 0.0:  # False for NaN too
            code = int(_log2(1.0 + value) * _SCALE + 0.5)
            chunk[ts - index * CHUNK] = code if code < _MAX else _MAX
        else:
            chunk[ts - index * CHUNK] = 0
        if ts >= self.last_ts:
            self.last_ts = ts
            self.last_value = value
            minute = ts // 60
            if minute != self._open_minute:
                if self._open_minute >= 0:
                    self._close_minute(self._open_minute)
                self._open_minute = minute

    def add_many(
        self, seconds: Sequence[int], values: Sequence[float], *, consecutive: bool | None = None
    ) -> None:
        """:meth:`add` of ``values[i]`` at ``seconds[i]``, for every i, in that order.

        A heartbeat brings a node's samples of consecutive seconds: those are encoded in
        one comprehension and copied into their chunk as one slice, and the minutes they
        close are aggregated once each. Anything else goes value by value.
        ``consecutive``: whether ``seconds`` is known to count up by one (a caller storing
        several metrics of the same seconds checks that once); None: check here.
        """
        count = len(seconds)
        if count == 0:
            return
        first, last = seconds[0], seconds[-1]
        index = first // CHUNK
        if consecutive is None:
            consecutive = _consecutive(seconds)
        if count == 1 or not consecutive or last // CHUNK != index or first < self.last_ts:
            for ts, value in zip(seconds, values, strict=True):
                self.add(ts, value)
            return
        chunk = self._chunks.get(index)
        if chunk is None:
            chunk = self._chunks[index] = array("H", _EMPTY_CHUNK)
        start = first - index * CHUNK
        chunk[start : start + count] = array("H", encode_all(values))
        # What add() does for each newer sample: a sample of a new minute closes the open one.
        open_minute = self._open_minute
        for minute in range(first // 60, last // 60 + 1):
            if minute != open_minute:
                if open_minute >= 0:
                    self._close_minute(open_minute)
                open_minute = minute
        self._open_minute = open_minute
        self.last_ts = last
        self.last_value = values[-1]

    def _aggregate(self, minute: int) -> tuple[float, float, float] | None:
        """(avg, min, max) of a minute's stored 1 s samples, or None if it has none."""
        index = minute * 60 // CHUNK
        chunk = self._chunks.get(index)
        if chunk is None:
            return None
        first = minute * 60 - index * CHUNK
        codes = chunk[first : first + 60]
        if MISSING in codes:
            codes = array("H", [c for c in codes if c != MISSING])
            if not codes:
                return None
        # This runs for every series once a minute: the powers come from a table, and
        # min and max compare the codes (their order is the values' order).
        total = sum(map(_powers().__getitem__, codes)) - len(codes)
        return total / len(codes), decode(min(codes)), decode(max(codes))

    def _close_minute(self, minute: int) -> None:
        found = self._aggregate(minute)
        if found is None:
            return
        index, offset = divmod(minute, MINUTE_CHUNK)
        chunk = self._minutes.get(index)
        if chunk is None:
            chunk = self._minutes[index] = array("H", _EMPTY_MINUTES)
        chunk[offset * 3] = encode(found[0])
        chunk[offset * 3 + 1] = encode(found[1])
        chunk[offset * 3 + 2] = encode(found[2])

    def trim(self, now: int, window: int, minute_window: int, ahead: int | None = None) -> None:
        """Drop chunks that lie wholly before the retention windows (or, with ``ahead``,
        wholly after ``now + ahead``)."""
        oldest = (now - window) // CHUNK
        newest = None if ahead is None else (now + ahead) // CHUNK
        for index in [i for i in self._chunks if i < oldest or (newest is not None and i > newest)]:
            del self._chunks[index]
        oldest_minutes = (now - minute_window) // 60 // MINUTE_CHUNK
        newest_minutes = None if ahead is None else (now + ahead) // 60 // MINUTE_CHUNK
        for index in [
            i
            for i in self._minutes
            if i < oldest_minutes or (newest_minutes is not None and i > newest_minutes)
        ]:
            del self._minutes[index]
        if ahead is not None and self.last_ts > now + ahead:
            # The newest sample came from the future: forget it, or later samples (which
            # are "older") would never become the latest value.
            self.last_ts = -1
            self.last_value = math.nan
            self._open_minute = -1

    # --- reading ----------------------------------------------------------------------------

    def seconds(self, start: int, end: int) -> Iterable[Point]:
        """Every stored 1 s sample with ``start <= ts < end``."""
        ts = start
        while ts < end:
            index = ts // CHUNK
            stop = min(end, (index + 1) * CHUNK)
            chunk = self._chunks.get(index)
            if chunk is not None:
                for t in range(ts, stop):
                    code = chunk[t - index * CHUNK]
                    if code != MISSING:
                        yield t, decode(code)
            ts = stop

    def grid(self, start: int, end: int) -> list[float | None]:
        """One value per second of ``[start, end)``, ``None`` where none is stored.

        Read a chunk at a time through a table of every code's value (to 5 significant
        digits, see :func:`_wire_values`): no Python call per second.
        """
        table = _wire_values()
        out: list[float | None] = []
        ts = start
        while ts < end:
            index = ts // CHUNK
            stop = min(end, (index + 1) * CHUNK)
            chunk = self._chunks.get(index)
            if chunk is None:
                out += [None] * (stop - ts)
            else:
                out += [table[c] for c in chunk[ts - index * CHUNK : stop - index * CHUNK]]
            ts = stop
        return out

    def minutes(self, start: int, end: int, agg: Agg) -> Iterable[Point]:
        """Minute aggregates whose minute starts in ``[start, end)``; ``agg`` picks the column."""
        column = {"avg": 0, "min": 1, "max": 2, "last": 0}[agg]
        first = -(-start // 60)
        for minute in range(first, -(-end // 60)):
            index, offset = divmod(minute, MINUTE_CHUNK)
            chunk = self._minutes.get(index)
            code = MISSING if chunk is None else chunk[offset * 3 + column]
            if code != MISSING:
                yield minute * 60, decode(code)
            elif minute == self._open_minute:  # the open minute: aggregate it now
                found = self._aggregate(minute)
                if found is not None:
                    yield minute * 60, found[column]

    @property
    def nbytes(self) -> int:
        """Bytes held by sample storage (the arrays' buffers)."""
        size = sum(c.buffer_info()[1] * c.itemsize for c in self._chunks.values())
        return size + sum(c.buffer_info()[1] * c.itemsize for c in self._minutes.values())

    def count(self) -> int:
        """Retained 1 s samples."""
        return sum(CHUNK - c.count(MISSING) for c in self._chunks.values())


def _bucket(points: Iterable[Point], start: int, step: int, agg: Agg) -> list[Point]:
    out: list[Point] = []
    current = -1
    values: list[float] = []

    def flush() -> None:
        if not values:
            return
        if agg == "avg":
            out.append((current, sum(values) / len(values)))
        elif agg == "min":
            out.append((current, min(values)))
        elif agg == "max":
            out.append((current, max(values)))
        else:
            out.append((current, values[-1]))

    for ts, value in points:
        bucket = start + (ts - start) // step * step
        if bucket != current:
            flush()
            current, values = bucket, []
        values.append(value)
    flush()
    return out


class SeriesStore:
    """Every series of every target, bounded by the retention windows.

    Parameters:
        window: seconds of 1 s samples to keep (default 1 h).
        minute_window: seconds of minute aggregates to keep (default 24 h).
        ahead: seconds after "now" beyond which :meth:`trim` frees chunks (default 1 min).
        max_series: series held in all; a sample of a new series past it is refused.
        max_target_metrics: series held per target (a node's metric names include its
            interfaces and mount points; past this, new names are refused).
    """

    def __init__(
        self,
        *,
        window: int = 3600,
        minute_window: int = 86400,
        ahead: int = 60,
        max_series: int = 1_000_000,
        max_target_metrics: int = 256,
    ) -> None:
        self.window = window
        self.minute_window = minute_window
        self.ahead = ahead
        self.max_series = max_series
        self.max_target_metrics = max_target_metrics
        self._targets: dict[str, dict[str, Series]] = {}
        self._series = 0
        self.samples_ingested = 0
        self.refused = 0  # values refused because a cap was reached
        self._last_trim = 0
        self._trim_queue: list[str] = []  # targets trim_some has yet to trim this round

    def add(self, target: str, values: Mapping[str, float], ts: float) -> int:
        """Record one sample of several metrics of ``target`` at time ``ts``.

        Returns how many of the values were refused because a new series would pass
        ``max_series`` or ``max_target_metrics`` (0 normally).
        """
        second = int(ts)
        series = self._targets.get(target)
        if series is None:
            series = self._targets[target] = {}
        refused = 0
        for metric, value in values.items():
            one = series.get(metric)
            if one is None:
                if self._series >= self.max_series or len(series) >= self.max_target_metrics:
                    refused += 1
                    continue
                one = series[metric] = Series()
                self._series += 1
            one.add(second, value)
        if not series:  # nothing could be stored: keep no empty target around
            del self._targets[target]
        self.samples_ingested += len(values) - refused
        self.refused += refused
        return refused

    def add_columns(
        self, target: str, columns: Iterable[tuple[str, Sequence[int], Sequence[float]]]
    ) -> int:
        """Record several samples of ``target`` at once: ``(metric, seconds, values)`` each.

        ``values[i]`` of a metric is at whole second ``seconds[i]``. The same as
        :meth:`add` sample by sample (oldest first), in far fewer calls; returns how many
        values were refused by the caps.
        """
        series = self._targets.get(target)
        if series is None:
            series = self._targets[target] = {}
        refused = stored = 0
        # The metrics of a heartbeat share one list of seconds: check it once.
        checked: Sequence[int] | None = None
        consecutive = False
        for metric, seconds, values in columns:
            one = series.get(metric)
            if one is None:
                if self._series >= self.max_series or len(series) >= self.max_target_metrics:
                    refused += len(values)
                    continue
                one = series[metric] = Series()
                self._series += 1
            if seconds is not checked:
                checked = seconds
                consecutive = bool(seconds) and _consecutive(seconds)
            one.add_many(seconds, values, consecutive=consecutive)
            stored += len(values)
        if not series:
            del self._targets[target]
        self.samples_ingested += stored
        self.refused += refused
        return refused

    def trim(self, now: float) -> None:
        """Free chunks past the windows, and any in the future (call about once a minute)."""
        for series in self._targets.values():
            for one in series.values():
                one.trim(int(now), self.window, self.minute_window, self.ahead)
        self._last_trim = int(now)
        self._trim_queue = []

    def trim_some(self, now: float, parts: int) -> None:
        """:meth:`trim` of the next ``1/parts`` of the targets, in turn: called ``parts``
        times, it trims every target once (those added meanwhile in the next round).

        A full trim of 10,000 nodes' series (150,000) in one call is a stall of the
        master's event loop; spread over a minute, each call does a small part of it.
        """
        if not self._trim_queue:
            self._trim_queue = list(self._targets)
        count = -(-len(self._targets) // max(1, parts))
        second = int(now)
        for target in self._trim_queue[-count:]:
            for one in self._targets.get(target, {}).values():
                one.trim(second, self.window, self.minute_window, self.ahead)
        del self._trim_queue[-count:]
        # Every target trimmed so far was trimmed at ``now`` or before: reads bound by it
        # never reach into a freed chunk.
        self._last_trim = max(self._last_trim, second)

    def drop(self, target: str) -> None:
        """Forget a target (a deleted node or destroyed instance): its memory is freed."""
        dropped = self._targets.pop(target, None)
        if dropped is not None:
            self._series -= len(dropped)

    def targets(self) -> list[str]:
        return sorted(self._targets)

    def metrics(self, target: str) -> list[str]:
        return sorted(self._targets.get(target, {}))

    def latest(self, target: str) -> dict[str, tuple[int, float]]:
        """Each metric's newest (ts, value)."""
        return {
            m: (s.last_ts, s.last_value)
            for m, s in self._targets.get(target, {}).items()
            if s.last_ts >= 0
        }

    def query(
        self,
        target: str,
        metric: str,
        *,
        start: float,
        end: float,
        step: int = 1,
        agg: Agg = "avg",
    ) -> list[Point]:
        """Points in ``[start, end)``, one per ``step`` seconds, aggregated by ``agg``.

        Steps under a minute read the 1 s tier (when the range lies in its window);
        otherwise the minute tier is used and ``step`` is rounded up to whole minutes.
        """
        series = self._targets.get(target, {}).get(metric)
        if series is None:
            return []
        begin, stop = int(start), math.ceil(end)
        step = max(1, int(step))
        newest = series.last_ts
        if step < 60 and begin >= newest - self.window:
            return _bucket(series.seconds(begin, stop), begin, step, agg)
        step = max(60, -(-step // 60) * 60)
        # Chunks are freed whole; never answer from the part of one that is past retention.
        begin = max(begin, self._last_trim - self.minute_window)
        return _bucket(series.minutes(begin, stop, agg), begin - begin % 60, step, agg)

    def grid(
        self,
        target: str,
        metric: str,
        *,
        start: float,
        end: float,
        step: int = 1,
        agg: Agg = "avg",
    ) -> tuple[int, int, list[float | None]]:
        """:meth:`query` as ``(first, step, values)``: ``values[i]`` is at ``first + i*step``.

        ``None`` marks a step without samples; steps before the first and after the last
        value are left out. One-second steps inside the 1 s window are read straight from
        the chunks (:meth:`Series.grid`); an hour of a series costs about a millisecond.
        """
        series = self._targets.get(target, {}).get(metric)
        begin, stop = int(start), math.ceil(end)
        if series is None:
            return begin, max(1, int(step)), []
        if int(step) <= 1 and begin >= series.last_ts - self.window:
            values = series.grid(begin, stop)
            first = next((i for i, v in enumerate(values) if v is not None), len(values))
            last = next((i for i in range(len(values) - 1, -1, -1) if values[i] is not None), -1)
            return begin + first, 1, values[first : last + 1]
        points = self.query(target, metric, start=start, end=end, step=step, agg=agg)
        if not points:
            return begin, max(1, int(step)), []
        # As query() does: past the 1 s tier, the step is rounded up to whole minutes.
        size = max(1, int(step))
        if not (size < 60 and begin >= series.last_ts - self.window):
            size = max(60, -(-size // 60) * 60)
        first = points[0][0]
        out: list[float | None] = [None] * ((points[-1][0] - first) // size + 1)
        for ts, value in points:
            out[(ts - first) // size] = value
        return first, size, out

    def nbytes(self) -> int:
        return sum(s.nbytes for series in self._targets.values() for s in series.values())

    def sample_count(self) -> int:
        return sum(s.count() for series in self._targets.values() for s in series.values())

    def series_count(self) -> int:
        return self._series
