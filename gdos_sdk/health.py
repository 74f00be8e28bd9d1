"""Health of an instance as a pure decision (no sockets, no processes, injected times).

The worker runs an instance's check (``http``, ``tcp`` or ``cmd``) and feeds
each result to :meth:`HealthTracker.record`, which says what the instance's
health is now and whether ``check_restart`` asks for a restart:

* health is ``starting`` from a start until the first success, then ``healthy``;
* a failure within ``start_period`` of the start, before any success, does not count;
* ``retries`` consecutive counted failures make it ``unhealthy``; one success
  makes it ``healthy`` again;
* with ``check_restart``, ``limit`` consecutive failures that end at least
  ``grace`` seconds after the start ask for a restart (Nomad's semantics).

:meth:`HealthTracker.delay` is how long to wait before the next check: the
``interval``, or at most one second while a fresh instance is still in its
``start_period``, so a quick service is seen healthy quickly.

Example::

    tracker = HealthTracker.for_check(HealthCheck(type="tcp", port=5432, retries=2))
    tracker.begin(now=0.0)
    tracker.record(False, now=1.0)   # Verdict(health=starting, ...)
    tracker.record(False, now=2.0)   # Verdict(health=unhealthy, ...)
"""

from __future__ import annotations

import attrs

from gdos_sdk.manifest import HealthCheck
from gdos_sdk.states import Health

__all__ = ["HealthTracker", "Verdict"]

FAST_INTERVAL = 1.0  # seconds between checks while a fresh instance is in its start period


@attrs.frozen
class Verdict:
    """The health after one check, and whether ``check_restart`` wants a restart now."""

    health: Health
    restart: bool = False
    failures: int = 0


@attrs.define
class HealthTracker:
    """Consecutive check results of one run of one instance."""

    retries: int = 3
    interval: float = 10.0
    start_period: float = 0.0
    restart_limit: int | None = None  # None: report health, never restart
    restart_grace: float = 1.0
    started: float = 0.0
    health: Health = Health.STARTING
    failures: int = 0  # consecutive counted failures
    restart_failures: int = 0  # consecutive failures after the grace period

    @classmethod
    def for_check(cls, check: HealthCheck) -> HealthTracker:
        """A tracker with ``check``'s thresholds."""
        restart = check.check_restart
        return cls(
            retries=check.retries,
            interval=check.interval,
            start_period=check.start_period,
            restart_limit=None if restart is None else restart.limit,
            restart_grace=0.0 if restart is None else restart.grace,
        )

    def begin(self, now: float) -> None:
        """A new run started (spawn, restart or re-attach): forget the previous one."""
        self.started = now
        self.health = Health.STARTING
        self.failures = 0
        self.restart_failures = 0

    def delay(self, now: float) -> float:
        """Seconds until the next check should run."""
        if self.health == Health.STARTING and now - self.started < self.start_period:
            return min(self.interval, FAST_INTERVAL)
        return self.interval

    def record(self, ok: bool, now: float) -> Verdict:
        """Take one check result at ``now``; return the new health."""
        if ok:
            self.health = Health.HEALTHY
            self.failures = 0
            self.restart_failures = 0
            return Verdict(Health.HEALTHY)
        since = now - self.started
        if self.health == Health.STARTING and since < self.start_period:
            return Verdict(self.health)  # still booting: does not count
        self.failures += 1
        if self.failures >= self.retries:
            self.health = Health.UNHEALTHY
        if since >= self.restart_grace:
            self.restart_failures += 1
        restart = self.restart_limit is not None and self.restart_failures >= self.restart_limit
        if restart:  # asked once per `limit` failures, whatever the runner makes of it
            self.restart_failures = 0
        return Verdict(self.health, restart=restart, failures=self.failures)
