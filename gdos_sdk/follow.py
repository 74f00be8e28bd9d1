"""What the follow helpers make of live frames: pure trackers, fed one frame at a time.

Each tracker takes the frames of one topic (snapshots included: a reconnect brings a
fresh one) and says what the caller should yield, so that nothing is yielded twice and
nothing is lost across a dropped socket:

* :class:`SampleTracker`: samples newer than the last one yielded, oldest first;
* :class:`CommandTracker`: each node's final result of a fleet command once, with its
  whole output, as nodes end (salt's ``cmd_iter``);
* :class:`BatchTracker`: the batch job each time it moved, until it ended;
* :class:`RolloutTracker`: each newer revision of a rollout, once, until it ended;
* :class:`AlertTracker`: alert changes, and after a gap (a reconnect or a ``reload``
  frame) the differences between the alerts it knew and the active ones now.

The clients' ``follow_*`` methods feed them from a :class:`~gdos_sdk.client.LiveStream`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from gdos_sdk.alerts import ActiveAlert
from gdos_sdk.batches import BatchJob, BatchState
from gdos_sdk.commands import NodeCommandResult, NodeRunState
from gdos_sdk.live import (
    AlertChange,
    AlertsFrame,
    BatchFrame,
    CommandFrame,
    InstanceSamplesFrame,
    NodeSamplesFrame,
    RolloutFrame,
)
from gdos_sdk.rollouts import Rollout

__all__ = ["AlertTracker", "BatchTracker", "CommandTracker", "RolloutTracker", "SampleTracker"]


@attrs.define
class SampleTracker:
    """Samples of one node or instance, each yielded once, in time order."""

    last_ts: float = float("-inf")

    def feed(self, frame: NodeSamplesFrame | InstanceSamplesFrame) -> list[Any]:
        fresh = sorted((s for s in frame.samples if s.ts > self.last_ts), key=lambda s: s.ts)
        if fresh:
            self.last_ts = fresh[-1].ts
        return fresh


@attrs.define
class CommandTracker:
    """A fleet command's node results, each once, with the node's whole output.

    ``total`` is the number of nodes (known from the first snapshot); ``done`` is true
    once the run finished and every node's result was handed out.
    """

    output: dict[str, dict[str, list[str]]] = attrs.field(factory=dict)
    ended: dict[str, NodeCommandResult] = attrs.field(factory=dict)
    total: int = 0
    finished: bool = False

    @property
    def done(self) -> bool:
        return self.finished and len(self.ended) >= self.total

    def feed(self, frame: CommandFrame) -> list[NodeCommandResult]:
        if frame.run is not None:  # a snapshot: the whole run so far
            self.total = len(frame.run.nodes)
            self.output = {
                n.node_id: {"stdout": [n.stdout], "stderr": [n.stderr]} for n in frame.run.nodes
            }
            results = [n for n in frame.run.nodes if n.state != NodeRunState.RUNNING]
            self.finished = frame.run.finished_at is not None
        else:
            for piece in frame.output:
                streams = self.output.setdefault(piece.node_id, {"stdout": [], "stderr": []})
                streams.setdefault(piece.stream, []).append(piece.data)
            results = [self._with_output(n) for n in frame.nodes]
            self.finished = self.finished or frame.finished_at is not None
        fresh = [r for r in results if r.node_id not in self.ended]
        for result in fresh:
            self.ended[result.node_id] = result
        return fresh

    def _with_output(self, result: NodeCommandResult) -> NodeCommandResult:
        streams = self.output.get(result.node_id, {})
        return attrs.evolve(
            result,
            stdout="".join(streams.get("stdout", [])),
            stderr="".join(streams.get("stderr", [])),
        )


_ENDED = (BatchState.DONE, BatchState.FAILED)


@attrs.define
class BatchTracker:
    """A batch job each time it moved; ``done`` once it ended (done or failed)."""

    last: BatchJob | None = None

    @property
    def done(self) -> bool:
        return self.last is not None and self.last.state in _ENDED

    def feed(self, frame: BatchFrame) -> list[BatchJob]:
        if frame.job == self.last:
            return []
        self.last = frame.job
        return [frame.job]

    @staticmethod
    def progress(job: BatchJob) -> tuple[int, int]:
        """(items ended, items) of a job."""
        ended = sum(1 for i in job.items if i.state not in (BatchState.PENDING, BatchState.RUNNING))
        return ended, len(job.items)


@attrs.define
class RolloutTracker:
    """A rollout each time its revision grew; ``done`` once it ended.

    The revision is the rollout's own counter (kept across master restarts), so a fresh
    snapshot after a reconnect is yielded only if the rollout changed meanwhile, and an
    older frame never comes after a newer one.
    """

    last: Rollout | None = None

    @property
    def done(self) -> bool:
        return self.last is not None and self.last.state.ended

    def feed(self, frame: RolloutFrame) -> list[Rollout]:
        if self.last is not None and frame.rollout.revision <= self.last.revision:
            return []
        self.last = frame.rollout
        return [frame.rollout]


def _key(alert: ActiveAlert) -> tuple[str, str]:
    return (alert.rule_id, alert.target)


@attrs.define
class AlertTracker:
    """Alert changes as they come; after a gap, what changed meanwhile.

    :meth:`feed` returns ``None`` when the caller must read the active alerts and hand
    them to :meth:`resync`: at the first frame, after a reconnect (a snapshot frame holds
    only counts) and after a ``reload`` frame.
    """

    known: dict[tuple[str, str], ActiveAlert] = attrs.field(factory=dict)

    def feed(self, frame: AlertsFrame) -> list[AlertChange] | None:
        if frame.snapshot or frame.reload:
            return None
        for change in frame.changes:
            key = _key(change.alert)
            if change.change in ("pending", "firing"):
                self.known[key] = change.alert
            else:
                self.known.pop(key, None)
        return list(frame.changes)

    def resync(self, active: Iterable[ActiveAlert], *, quiet: bool = False) -> list[AlertChange]:
        """Take the active alerts now; the changes since the last known set.

        An alert that is new or changed state counts as that state (``pending`` or
        ``firing``); one that is gone as ``resolved``. ``quiet`` takes the set as the
        starting point without reporting it.
        """
        current = {_key(a): a for a in active}
        changes: list[AlertChange] = []
        if not quiet:
            for key, alert in current.items():
                before = self.known.get(key)
                if before is None or before.state != alert.state:
                    changes.append(AlertChange(change=alert.state.value, alert=alert))
            for key, alert in self.known.items():
                if key not in current:
                    changes.append(AlertChange(change="resolved", alert=alert))
        self.known = current
        return changes
