"""Rolling upgrades of a module's instances: the request, the strategy and the job (models only).

A **rollout** moves every instance of a module to another version of its package,
in place: each instance keeps its id, its restart count and its log files, and its
worker switches it to the new version (fetched and extracted beside the running one
first, so it is down only for a stop and a start). At most ``max_parallel`` instances
are being moved at once, and an instance counts as moved once it passes the
``wait`` check. A failure stops the rollout; with ``auto_revert`` every instance it
moved goes back to the version it had. A **rollback** is a rollout to the module's
previous version (or any version still stored). The master runs a rollout as a job
you can watch (``GET /rollouts/<id>``, live topic ``rollout:<id>``) and steer
(pause, resume, promote, abort). The rules are in docs/rollouts.md.

Example::

    job = gdos.rollout(module.id, "1.1.0", max_parallel=2, wait="stable",
                       min_healthy_time=5, auto_revert=True)
    for job in gdos.follow_rollout(job.id):
        print(job.state, [i.state for i in job.items])
"""

from __future__ import annotations

import enum

import attrs

from gdos_sdk.constraints import Check
from gdos_sdk.display import displayed
from gdos_sdk.errors import ValidationError

__all__ = [
    "RollbackRequest",
    "Rollout",
    "RolloutItem",
    "RolloutRequest",
    "RolloutState",
    "RolloutStrategy",
    "RolloutWait",
    "StepState",
]

_VERSION = Check(min_length=1, max_length=64)


class RolloutWait(enum.StrEnum):
    """When a moved instance counts as done (and frees its place for the next one)."""

    RUNNING = "running"  # its worker reports it running the new version
    STABLE = "stable"  # ... and it keeps running, same process, for min_healthy_time
    HEALTHY = "healthy"  # ... its health check passes and holds for min_healthy_time


class RolloutState(enum.StrEnum):
    """Where a rollout stands; the last four are ends."""

    RUNNING = "running"
    PAUSED = "paused"  # no further instance begins until resumed
    AWAITING_PROMOTION = "awaiting_promotion"  # the canaries made it: promote to go on
    REVERTING = "reverting"  # moving the instances it moved back to their version
    DONE = "done"  # every instance moved (instances of offline nodes may be pending)
    FAILED = "failed"  # stopped by a failure, not reverted (or the revert failed too)
    REVERTED = "reverted"  # stopped by a failure or an abort, and reverted
    ABORTED = "aborted"  # stopped by a user, not reverted

    @property
    def ended(self) -> bool:
        return self in _ENDED


_ENDED = frozenset(
    {RolloutState.DONE, RolloutState.FAILED, RolloutState.REVERTED, RolloutState.ABORTED}
)


class StepState(enum.StrEnum):
    """Where one instance of a rollout stands."""

    WAITING = "waiting"  # not begun
    PENDING = "pending"  # its node is offline: moved when it returns
    PREPARING = "preparing"  # its worker fetches and extracts the new version (old one runs)
    STOPPING = "stopping"
    STARTING = "starting"
    VERIFYING = "verifying"  # running the new version; the wait check is under way
    DONE = "done"
    FAILED = "failed"  # ``error`` says why
    ABORTED = "aborted"  # was being moved when the rollout stopped
    REVERTING = "reverting"
    REVERTED = "reverted"  # back on ``from_version``
    SKIPPED = "skipped"  # never begun: the rollout stopped first


@displayed
@attrs.frozen
class RolloutStrategy:
    """How a rollout moves the instances (names as in Nomad's ``update`` block).

    Parameters:
        max_parallel: instances being moved at once (down, starting or being verified).
        wait: when a moved instance counts as done: ``running``; ``stable`` (the same
            process runs for ``min_healthy_time`` seconds); ``healthy`` (its health check
            passes, then holds for ``min_healthy_time``; an instance without a check
            waits as ``stable``).
        min_healthy_time: seconds for ``stable`` and ``healthy``.
        healthy_deadline: seconds one instance may take from its stop to passing ``wait``;
            longer fails it.
        progress_deadline: seconds the rollout may go without an instance finishing (time
            paused or awaiting promotion does not count); longer fails it.
        canary: move this many instances first, then wait for :meth:`promote` (or
            ``auto_promote_after``) before the rest.
        auto_promote_after: seconds after the canaries made it to promote without a user.
        auto_revert: on a failure, move every instance the rollout moved back to the
            version it had.
    """

    max_parallel: int = attrs.field(default=1, validator=Check(minimum=1, maximum=1000))
    wait: RolloutWait = RolloutWait.STABLE
    min_healthy_time: float = attrs.field(default=10.0, validator=Check(minimum=0, maximum=3600))
    healthy_deadline: float = attrs.field(
        default=300.0, validator=Check(exclusive_minimum=0, maximum=86400)
    )
    progress_deadline: float = attrs.field(
        default=600.0, validator=Check(exclusive_minimum=0, maximum=7 * 86400)
    )
    canary: int = attrs.field(default=0, validator=Check(minimum=0, maximum=1000))
    auto_promote_after: float | None = attrs.field(
        default=None, validator=Check(minimum=0, maximum=7 * 86400)
    )
    auto_revert: bool = False

    def __attrs_post_init__(self) -> None:
        # An instance needs min_healthy_time to pass: a deadline that short fails them all.
        if self.wait == RolloutWait.RUNNING:
            return  # min_healthy_time plays no part
        for deadline in ("healthy_deadline", "progress_deadline"):
            if getattr(self, deadline) <= self.min_healthy_time:
                message = (
                    f"{deadline} must be greater than min_healthy_time"
                    f" ({self.min_healthy_time:g} s)"
                )
                raise ValidationError(
                    message, details=[{"path": f"$.{deadline}", "message": message}]
                )


@displayed
@attrs.frozen
class RolloutRequest:
    """Move a module's instances to ``version`` (a stored version of its package)."""

    version: str = attrs.field(validator=_VERSION)
    strategy: RolloutStrategy = attrs.field(factory=RolloutStrategy)


@displayed
@attrs.frozen
class RollbackRequest:
    """Move a module back: to ``version``, or (``""``) to the version it had before."""

    version: str = attrs.field(default="", validator=Check(max_length=64))
    strategy: RolloutStrategy = attrs.field(factory=RolloutStrategy)


@displayed
@attrs.frozen
class RolloutItem:
    """One instance of a rollout."""

    instance_id: str
    node_id: str
    from_version: str  # what it ran when the rollout began; a revert brings it back
    canary: bool = False
    state: StepState = StepState.WAITING
    started_at: float | None = None
    finished_at: float | None = None
    error: str = ""  # why it failed (or why it could not be reverted)
    note: str = ""  # anything else worth knowing (pending: why; caught up later)


@displayed
@attrs.frozen
class Rollout:
    """A rollout (or rollback) of one module and its progress.

    ``revision`` grows with every change, so a follower asks for what is newer
    (``GET /rollouts/<id>?after=<revision>&wait=30``).
    """

    id: str
    module_id: str
    system_id: str
    module: str
    package: str
    from_version: str  # the module's version before
    to_version: str
    kind: str  # "rollout" or "rollback"
    strategy: RolloutStrategy
    state: RolloutState
    user: str
    started_at: float
    items: list[RolloutItem]
    finished_at: float | None = None
    error: str = ""  # why it failed, was aborted or reverted
    unchanged: int = 0  # instances that already had to_version when it began
    promoted_at: float | None = None  # when its canaries were promoted
    revision: int = 0
