"""The restart policy as a pure decision (no processes, no sleeping, injected times).

After an instance's main process exits unexpectedly, :meth:`RestartTracker.on_exit`
says whether to restart, after what delay, or to give up (``failed``):

* policy ``never``: never; ``on-failure``: only after a non-zero or unknown exit;
  ``always``: after any unexpected exit. A deliberate stop never reaches here.
* a run shorter than ``start_seconds`` is a failed start: the backoff grows
  (initial, 2x, 4x ... up to ``backoff_max``); a longer run resets it.
* more than ``max_restarts`` restarts within ``window_seconds``: give up.

Example::

    tracker = RestartTracker(policy="always", max_restarts=3, window_seconds=60,
                             backoff_initial=1, backoff_max=30, start_seconds=1)
    decision = tracker.on_exit(now=10.0, ran_for=0.2, exit_code=1)
"""

from __future__ import annotations

from collections import deque

import attrs

__all__ = ["RestartDecision", "RestartTracker"]


@attrs.frozen
class RestartDecision:
    restart: bool
    delay: float = 0.0
    give_up: bool = False
    reason: str = ""


@attrs.define
class RestartTracker:
    """Remembers recent restarts of one instance and decides the next one."""

    policy: str = "always"
    max_restarts: int = 5
    window_seconds: float = 60.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    start_seconds: float = 1.0
    _recent: deque[float] = attrs.field(factory=deque, alias="_recent")
    _quick_failures: int = attrs.field(default=0, alias="_quick_failures")

    def on_exit(self, *, now: float, ran_for: float, exit_code: int | None) -> RestartDecision:
        """Decide what follows an unexpected exit at time ``now`` after ``ran_for`` seconds."""
        failed = exit_code != 0
        if self.policy == "never" or (self.policy == "on-failure" and not failed):
            return RestartDecision(restart=False, reason=f"restart policy is {self.policy}")
        while self._recent and self._recent[0] <= now - self.window_seconds:
            self._recent.popleft()
        if len(self._recent) >= self.max_restarts:
            return RestartDecision(
                restart=False,
                give_up=True,
                reason=f"restarted {len(self._recent)} times within {self.window_seconds:g} s;"
                " giving up",
            )
        if ran_for < self.start_seconds:
            self._quick_failures += 1
        else:
            self._quick_failures = 0
        delay = 0.0
        if self._quick_failures:
            delay = min(self.backoff_max, self.backoff_initial * 2 ** (self._quick_failures - 1))
        self._recent.append(now)
        return RestartDecision(restart=True, delay=delay, reason="restarting after exit")

    def reset(self) -> None:
        """Forget history (after an operator's start)."""
        self._recent.clear()
        self._quick_failures = 0

    @property
    def recent_restarts(self) -> int:
        return len(self._recent)
