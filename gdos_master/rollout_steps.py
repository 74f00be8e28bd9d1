"""The I/O-free parts of a rollout: the order of its instances and when one counts as moved.

:func:`order_instances` spreads a rollout over the nodes (round robin, online nodes
first), so the first instances moved, the canaries above all, are on different
machines. :class:`Verification` decides, from one look at an instance after its
worker switched it, whether the strategy's ``wait`` is met, still pending, or failed;
it keeps what it saw (the process id, since when) and takes the clock as an argument.
:func:`step_for` turns a worker's report during a move into the step shown
(stopping, starting, verifying).

Example::

    check = Verification(strategy, "1.1.0")
    verdict = check.look(orchestrator.get(instance_id), time.time())
    if verdict.failed: ...
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import attrs

from gdos_sdk.models import Instance
from gdos_sdk.protocol import InstanceStatus
from gdos_sdk.rollouts import RolloutStrategy, RolloutWait, StepState
from gdos_sdk.states import DesiredState, Health, InstanceState

__all__ = ["Verdict", "Verification", "order_instances", "step_for"]

S = InstanceState


def order_instances(instances: Iterable[Instance]) -> list[Instance]:
    """One instance per node in turn (nodes online first, then by their first instance)."""
    by_node: dict[str, list[Instance]] = {}
    for instance in sorted(instances, key=lambda i: (i.created_at is None, i.created_at, i.id)):
        by_node.setdefault(instance.node_id, []).append(instance)
    nodes = sorted(by_node.values(), key=lambda group: not group[0].node_online)
    return [i for row in itertools.zip_longest(*nodes) for i in row if i is not None]


@attrs.frozen
class Verdict:
    """``done``, or a ``failed`` reason, or neither (look again later)."""

    done: bool = False
    failed: str = ""
    waiting_for: str = ""  # what it still waits for, for the deadline's message


@attrs.define
class Verification:
    """Whether one instance moved to ``version`` meets the strategy's ``wait``.

    ``stable``: running the new version with one process for ``min_healthy_time``
    seconds (by the worker's start time). ``healthy``: its health check says
    healthy, and stays so with one process for ``min_healthy_time`` (an instance
    without a check waits as ``stable``). A crash, a restart (another pid), a
    ``failed`` state or an ``unhealthy`` check fails it. An instance meant to be
    stopped is done once it has the version.
    """

    strategy: RolloutStrategy
    version: str
    pid: int | None = None
    since: float | None = None  # when its process (or its health) began to count

    def look(self, instance: Instance, now: float) -> Verdict:
        wait = self.strategy.wait
        if instance.version != self.version:
            return Verdict(waiting_for=f"the switch to {self.version}")
        if instance.desired_state == DesiredState.STOPPED:
            return Verdict(done=instance.state in (S.STOPPED, S.FAILED))
        if instance.state == S.FAILED:
            return Verdict(failed=f"failed on {self.version}: {instance.reason}")
        if instance.state == S.BACKOFF or (
            self.pid is not None and instance.pid not in (None, self.pid)
        ):
            return Verdict(failed=f"crashed on {self.version}: {instance.reason}")
        if instance.state != S.RUNNING:
            return Verdict(waiting_for=f"running (it is {instance.state.value})")
        if wait == RolloutWait.RUNNING:
            return Verdict(done=True)
        self.pid = instance.pid
        if wait == RolloutWait.HEALTHY and instance.health != Health.NONE:
            if instance.health == Health.UNHEALTHY:
                return Verdict(failed=f"unhealthy on {self.version}: {instance.reason}")
            if instance.health != Health.HEALTHY:
                self.since = None
                return Verdict(waiting_for="its health check to pass")
            if self.since is None:
                self.since = now
        elif self.since is None:
            self.since = instance.started_at or now
        held = now - self.since
        if held >= self.strategy.min_healthy_time:
            return Verdict(done=True)
        what = "healthy" if wait == RolloutWait.HEALTHY else "running"
        return Verdict(
            waiting_for=f"{what} for {self.strategy.min_healthy_time:g} s (so far {held:.1f} s)"
        )


_STEPS = {
    S.STOPPING: StepState.STOPPING,
    S.STOPPED: StepState.STARTING,  # stopped, switched, about to start
    S.STARTING: StepState.STARTING,
}
_ORDER = [StepState.PREPARING, StepState.STOPPING, StepState.STARTING, StepState.VERIFYING]


def step_for(current: StepState, status: InstanceStatus, version: str) -> StepState:
    """The step a worker's report moves an instance to while it is being moved (never back)."""
    if current not in _ORDER:
        return current
    if status.state == S.RUNNING and status.version == version:
        new = StepState.VERIFYING
    else:
        new = _STEPS.get(status.state, current)
        if status.state == S.STOPPED and status.version != version and current in _ORDER[:1]:
            return current  # stopped before the switch: still on the way
    return new if _ORDER.index(new) > _ORDER.index(current) else current
