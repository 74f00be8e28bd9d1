"""HeapKeeper: freezing long-lived objects and the full collection after churn."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gdos_master.heap import HeapKeeper

from ..helpers.clock import FakeClock


class Node:
    """Stands for a connection's objects: a reference cycle."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    yield FakeClock()
    gc.unfreeze()


def test_disabled_keeper_leaves_gc_alone(clock: FakeClock) -> None:
    # Python 3.12+ starts with objects already frozen, 3.11 with none: compare, don't count.
    before = gc.get_freeze_count()
    keeper = HeapKeeper(enabled=False, clock=clock)
    keeper.start()
    clock.now += 3600
    keeper.tick(disconnects=10_000)
    assert gc.get_freeze_count() == before
    assert keeper.full_collections == 0


def test_start_and_periodic_tick_freeze_survivors(clock: FakeClock) -> None:
    keeper = HeapKeeper(clock=clock, freeze_every=60)
    before = gc.get_freeze_count()
    keeper.start()
    first = gc.get_freeze_count()
    assert first > before
    kept = [Node() for _ in range(1000)]
    keeper.tick(disconnects=0)  # not due yet
    assert gc.get_freeze_count() == first
    clock.now += 61
    keeper.tick(disconnects=0)
    assert gc.get_freeze_count() >= first + 1000
    assert keeper.full_collections == 0
    del kept


def test_cycles_of_frozen_objects_wait_for_the_churn_collection(clock: FakeClock) -> None:
    keeper = HeapKeeper(clock=clock, churn_limit=100)
    node = Node()
    ref = weakref.ref(node)
    keeper.start()
    del node
    gc.collect()
    assert ref() is not None, "a frozen cycle is not collected by a routine collection"
    keeper.tick(disconnects=99)
    assert ref() is not None and keeper.full_collections == 0
    keeper.tick(disconnects=100)
    assert ref() is None
    assert keeper.full_collections == 1
    assert keeper.last_full_pause >= 0
    assert gc.get_freeze_count() > 0, "frozen again after the full collection"
    keeper.tick(disconnects=150)  # the mark moved: 50 more is under the limit
    assert keeper.full_collections == 1


def test_full_collection_at_least_every_full_every(clock: FakeClock) -> None:
    keeper = HeapKeeper(clock=clock, full_every=3600)
    keeper.start()
    clock.now += 3601
    keeper.tick(disconnects=0)
    assert keeper.full_collections == 1


def test_a_big_fleet_waits_for_a_fleets_worth_of_churn(clock: FakeClock) -> None:
    """A full collection walks every object (seconds at 10,000 nodes) to free a few KB
    per closed connection: with 10,000 open, it waits for 10,000 disconnects."""
    keeper = HeapKeeper(clock=clock, churn_limit=500)
    keeper.start()
    keeper.tick(disconnects=9_999, connections=10_000)
    assert keeper.full_collections == 0
    keeper.tick(disconnects=10_000, connections=10_000)
    assert keeper.full_collections == 1
    keeper.tick(disconnects=10_500, connections=100)  # a small fleet: the limit itself
    assert keeper.full_collections == 2


def test_the_frozen_count_costs_no_walk_of_the_heap(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting frozen objects walks all of them (0.2-0.36 s at 1.1-1.6 M objects); the
    ingest status asks every few seconds, so it reads the count of the last full one."""
    keeper = HeapKeeper(clock=clock, churn_limit=100)
    keeper.start()
    counted = keeper.frozen()
    assert counted == gc.get_freeze_count() > 0
    walks: list[int] = []
    real = gc.get_freeze_count
    monkeypatch.setattr(gc, "get_freeze_count", lambda: walks.append(1) or real())
    for _ in range(100):
        assert keeper.frozen() == counted
    clock.now += 61
    keeper.tick(disconnects=0)  # the minute's freeze counts nothing
    assert walks == []
    kept = [Node() for _ in range(1000)]
    keeper.tick(disconnects=100)  # a full collection walks the heap anyway: counted then
    assert walks == [1] and keeper.frozen() >= counted + 1000
    del kept
