"""Keep Python's cyclic garbage collector from stalling the event loop on a big fleet.

Every agent connection holds a few hundred objects that live as long as the
connection (Hypercorn's protocol, wsproto's decoder, Quart's websocket, tasks,
futures), and the metric series hold a few more per node. With 5,000 nodes that
is well over a million tracked objects, and a full collection walks all of them
while the loop waits: more than a second on a small machine, long enough for
heartbeats to queue up behind it.

:class:`HeapKeeper` moves what has survived into CPython's permanent generation
(:func:`gc.freeze`) once a minute, after collecting the young generations (cheap),
so routine collections only look at recent objects. Frozen objects are
still freed by reference counting; only reference cycles among them wait. Those
come from closed connections (Hypercorn's protocol objects: about 35 objects, a few
KB, per connection), so after as many disconnects as there are open connections (at
least ``churn_limit``), or every ``full_every`` seconds, the keeper thaws everything,
runs one full collection, logs how long it took and freezes again. That pause walks
every object (seconds at 10,000 nodes), so it is paid per fleet's worth of churn, not
per few megabytes of garbage; a steady fleet never pays it. The master's liveness
clock does not run during the pause (:meth:`gdos_master.fleet.Fleet.loop_late`), so no
node is dropped for it.

The number of frozen objects (:meth:`HeapKeeper.frozen`) is counted at start and after
each full collection only: counting walks the whole permanent generation (a third of
a second at a million objects), which the ingest status polled every few seconds must
not do.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

import attrs

__all__ = ["HeapKeeper"]

log = logging.getLogger("gdos.master.heap")


@attrs.define
class HeapKeeper:
    """Decides when to freeze and when to run a full collection."""

    enabled: bool = True
    churn_limit: int = 500
    freeze_every: float = 60.0
    full_every: float = 6 * 3600.0
    clock: Callable[[], float] = time.monotonic
    full_collections: int = 0
    last_full_pause: float = 0.0
    frozen_objects: int = 0  # counted at start and after each full collection
    _last_freeze: float = attrs.field(default=0.0, alias="_last_freeze")
    _last_full: float = attrs.field(default=0.0, alias="_last_full")
    _churn_mark: int = attrs.field(default=0, alias="_churn_mark")

    def start(self, disconnects: int = 0) -> None:
        """Freeze what start-up built (modules, the app, caches)."""
        self._last_freeze = self._last_full = self.clock()
        self._churn_mark = disconnects
        if self.enabled:
            gc.collect()
            gc.freeze()
            self.frozen_objects = gc.get_freeze_count()  # a small heap yet: cheap

    def tick(self, disconnects: int, connections: int = 0) -> None:
        """Call now and then with the fleet's disconnect counter and its open connections;
        cheap when nothing is due."""
        if not self.enabled:
            return
        now = self.clock()
        churn = max(self.churn_limit, connections)
        if disconnects - self._churn_mark >= churn or now - self._last_full >= self.full_every:
            self.full_collect(disconnects)
        elif now - self._last_freeze >= self.freeze_every:
            self._last_freeze = now
            # Collect the young generations (cheap), then freeze everything that is left.
            # Garbage cycles that already reached the old generation are frozen too and
            # wait for the next full collection, like any cycle of a closed connection.
            gc.collect(1)
            gc.freeze()

    def full_collect(self, disconnects: int) -> float:
        """Thaw, collect everything, freeze again; returns the pause in seconds."""
        began = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        gc.freeze()
        pause = time.perf_counter() - began
        # The heap was just walked; counting adds a tenth to a pause that is rare.
        self.frozen_objects = gc.get_freeze_count()
        self._last_full = self._last_freeze = self.clock()
        self._churn_mark = disconnects
        self.full_collections += 1
        self.last_full_pause = pause
        log.info("full garbage collection: %d objects freed in %.3f s", freed, pause)
        return pause

    def frozen(self) -> int:
        """Objects in the permanent generation, as counted at start or the last full
        collection (cheap: see the module docstring)."""
        return self.frozen_objects
