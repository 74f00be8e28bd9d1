"""When a deploy is done: ``deploy(wait=...)`` as a pure decision over observed instances.

The client sends the deploy, then reads the instance every :data:`POLL_INTERVAL` seconds
and hands each reading to :meth:`DeployWatch.observe` with the time (monotonic seconds).
The watch answers ``None`` (keep waiting), the instance (done) or raises
:class:`~gdos_sdk.errors.DeployFailed`. No I/O, no clock of its own: tested with made-up
readings.

What each ``wait`` means (Nomad's words where they fit)::

    started  the deploy is under way: the master's answer as it is (``running``, or
             ``deploying`` when the worker is slow, or ``unknown`` when the node is
             offline and the deploy waits for it); nothing is waited for
    running  the worker reports the service running (a ``deploying`` answer is
             waited through)
    stable   running, and no exit or restart for ``min_healthy_time`` seconds
    healthy  stable, and its health check passed (a service without a health check:
             the same as stable); an ``unhealthy`` verdict fails the deploy

A deploy with ``start=False`` is done, for any wait but ``started``, once the worker has
installed it (``stopped``). A service that exits, restarts, or ends ``failed`` or
``stopped`` while being waited for fails the deploy. So does an offline node (``unknown``)
for any wait but ``started``: the record stays, and the worker deploys it when it is back.

Example::

    watch = DeployWatch("stable", start=True, min_healthy_time=5.0, deadline=now + 120)
    watch.observe(instance, now)   # None: keep reading; an Instance: done
"""

from __future__ import annotations

from typing import Literal

import attrs

from gdos_sdk.errors import DeployFailed, DeployTimeout, ValidationError
from gdos_sdk.models import Instance
from gdos_sdk.states import DesiredState, Health, InstanceState

__all__ = [
    "DEFAULT_MIN_HEALTHY_TIME",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WAIT",
    "LOG_LINES",
    "POLL_INTERVAL",
    "WAITS",
    "DeployWait",
    "DeployWatch",
]

DeployWait = Literal["started", "running", "stable", "healthy"]
WAITS: tuple[str, ...] = ("started", "running", "stable", "healthy")

#: what ``deploy()`` waits for unless told otherwise: a service that works, as far as GDOS
#: can tell (docs/python.md, "Deploying and waiting")
DEFAULT_WAIT: DeployWait = "healthy"
#: seconds a service must run without an exit or restart to count as stable. Nomad uses
#: 10 s; most start-up failures (a bad setting, a port in use, a missing module) show in
#: the first seconds, and a notebook should not wait longer than it must.
DEFAULT_MIN_HEALTHY_TIME = 5.0
DEFAULT_TIMEOUT = 120.0
POLL_INTERVAL = 0.25
LOG_LINES = 20

_S = InstanceState


def check_wait(wait: str, min_healthy_time: float, timeout: float) -> DeployWait:
    """``wait`` if it is one of :data:`WAITS` and the times make sense; else ValidationError."""
    if wait not in WAITS:
        raise ValidationError(
            f"unknown wait {wait!r}; one of {', '.join(WAITS)}",
            details=[{"path": "wait", "message": "unknown wait", "allowed": list(WAITS)}],
        )
    if not min_healthy_time >= 0:
        raise ValidationError(
            f"min_healthy_time must be 0 or more, not {min_healthy_time!r}",
            details=[{"path": "min_healthy_time", "message": "must be >= 0"}],
        )
    if not timeout > 0:
        raise ValidationError(
            f"timeout must be more than 0, not {timeout!r}",
            details=[{"path": "timeout", "message": "must be > 0"}],
        )
    return wait  # type: ignore[return-value]


def _run_of(instance: Instance) -> tuple[int | None, float | None, int]:
    """What tells one run of a process from the next."""
    return (instance.pid, instance.started_at, instance.restarts)


@attrs.define
class DeployWatch:
    """The state of one ``deploy(wait=...)``: feed it readings, it says when it is done."""

    wait: DeployWait
    start: bool
    min_healthy_time: float
    deadline: float
    #: when the current run was first seen running (monotonic), and which run it was
    since: float | None = None
    run: tuple[int | None, float | None, int] | None = None
    last: Instance | None = None

    def observe(self, instance: Instance, now: float) -> Instance | None:
        """Take one reading at ``now``: the instance when done, ``None`` to keep waiting.

        Raises:
            DeployFailed: it crashed, restarted, failed its check, was stopped, or its
                node is offline.
            DeployTimeout: ``now`` is past the deadline and it is not done.
        """
        self.last = instance
        if self.wait == "started":
            return instance
        state = instance.state
        if state == _S.UNKNOWN and not instance.node_online:
            raise self.failed(
                "its node is offline: the deploy is recorded and happens when the node"
                " returns (pass wait='started' not to wait for it)"
            )
        if not self.start:
            if state == _S.STOPPED:
                return instance
            if state == _S.FAILED:
                raise self.failed("the worker could not install it")
            return self._pending(now)
        if instance.desired_state == DesiredState.STOPPED:
            raise self.failed("it was stopped while the deploy waited")
        if state == _S.RUNNING:
            return self._running(instance, now)
        if state in (_S.BACKOFF, _S.FAILED, _S.STOPPING):
            raise self.failed(f"it is {state.value}")
        if state == _S.STOPPED and (self.run is not None or instance.exit_code is not None):
            raise self.failed("it exited and was not restarted")
        return self._pending(now)  # deploying, starting, unknown, or not started yet

    def _running(self, instance: Instance, now: float) -> Instance | None:
        run = _run_of(instance)
        if self.run is None:
            self.run, self.since = run, now
        elif run != self.run:
            raise self.failed(
                f"it restarted within {self.min_healthy_time:g} s (restarts: {instance.restarts})"
            )
        if self.wait == "running":
            return instance
        if self.wait == "healthy" and instance.health == Health.UNHEALTHY:
            raise self.failed("its health check failed")
        assert self.since is not None
        if now - self.since < self.min_healthy_time:
            return self._pending(now)
        if self.wait == "healthy" and instance.health not in (Health.HEALTHY, Health.NONE):
            return self._pending(now)  # stable, its check has not passed yet
        return instance

    def _pending(self, now: float) -> Instance | None:
        """Not there yet: keep waiting (None), unless the deadline passed."""
        if now >= self.deadline:
            raise self.timed_out()
        return None

    @property
    def stage(self) -> str:
        """Where the deploy is, in a few words (for a progress display)."""
        instance = self.last
        if instance is None:
            return "deploying"
        if self.run is None:
            return instance.state.value
        if self.wait == "healthy" and instance.health == Health.STARTING:
            return "running, health check pending"
        return "running"

    def stable_for(self, now: float) -> float:
        """Seconds the current run has been seen running (0 before it was)."""
        return 0.0 if self.since is None else max(0.0, now - self.since)

    def _message(self, why: str) -> str:
        instance = self.last
        if instance is None:
            return f"deploy failed: {why}"
        where = f"{instance.package} {instance.version} on node {instance.node_id}"
        reason = f" ({instance.reason})" if instance.reason else ""
        return f"instance {instance.id} of {where} is {instance.state.value}{reason}: {why}"

    def _details(self, why: str) -> dict[str, object]:
        instance = self.last
        details: dict[str, object] = {"wait": self.wait, "why": why}
        if instance is not None:
            details.update(
                instance_id=instance.id,
                state=instance.state.value,
                health=instance.health.value,
                reason=instance.reason,
                exit_code=instance.exit_code,
                restarts=instance.restarts,
            )
        return details

    def failed(self, why: str) -> DeployFailed:
        """The error for a deploy that went wrong (log lines are added by the client)."""
        return DeployFailed(self._message(why), details=self._details(why), instance=self.last)

    def timed_out(self) -> DeployTimeout:
        """The error for a deploy that was not done by the deadline."""
        why = f"not {self.wait} within the timeout"
        return DeployTimeout(self._message(why), details=self._details(why), instance=self.last)
