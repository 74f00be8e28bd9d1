"""Instance states and the transitions between them (stdlib only).

The worker's supervisor is the only writer of an instance's actual state; it
calls :func:`check_transition` from its one ``_set_state`` method, so an
impossible move is a bug caught at once rather than a confusing UI.

::

    deploying -> stopped | failed
    stopped   -> starting
    starting  -> running | backoff | failed | stopped
    running   -> stopping | backoff | stopped | failed
    backoff   -> starting | stopped | failed
    stopping  -> stopped
    failed    -> starting | stopped
    unknown   -> anything   (the master's view of an unreachable node)
"""

from __future__ import annotations

import enum

__all__ = [
    "DesiredState",
    "Health",
    "InstanceState",
    "InvalidTransition",
    "check_transition",
]


class InstanceState(enum.StrEnum):
    """The actual state of an instance, as its worker last reported it."""

    DEPLOYING = "deploying"
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    BACKOFF = "backoff"
    FAILED = "failed"
    UNKNOWN = "unknown"


class DesiredState(enum.StrEnum):
    """What the operator asked for; the worker converges the actual state to it."""

    RUNNING = "running"
    STOPPED = "stopped"


class Health(enum.StrEnum):
    """Result of an instance's health check (``none`` when it has none)."""

    NONE = "none"
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


_S = InstanceState

_ALLOWED: dict[InstanceState, frozenset[InstanceState]] = {
    _S.DEPLOYING: frozenset({_S.STOPPED, _S.FAILED}),
    _S.STOPPED: frozenset({_S.STARTING}),
    _S.STARTING: frozenset({_S.RUNNING, _S.BACKOFF, _S.FAILED, _S.STOPPED}),
    _S.RUNNING: frozenset({_S.STOPPING, _S.BACKOFF, _S.STOPPED, _S.FAILED}),
    _S.BACKOFF: frozenset({_S.STARTING, _S.STOPPED, _S.FAILED}),
    _S.STOPPING: frozenset({_S.STOPPED}),
    _S.FAILED: frozenset({_S.STARTING, _S.STOPPED}),
    _S.UNKNOWN: frozenset(set(_S) - {_S.UNKNOWN}),
}


class InvalidTransition(RuntimeError):
    """A state change the machine does not allow (a programming error)."""


def check_transition(old: InstanceState, new: InstanceState) -> None:
    """Raise :class:`InvalidTransition` unless ``old -> new`` is allowed.

    Example::

        check_transition(InstanceState.STOPPED, InstanceState.STARTING)  # fine
    """
    if old == new:
        return
    if new not in _ALLOWED[old]:
        raise InvalidTransition(f"instance state cannot go from {old} to {new}")
