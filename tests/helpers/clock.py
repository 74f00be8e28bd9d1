"""A clock that stands still until the test moves it."""

from __future__ import annotations


class FakeClock:
    """Pass it where the code under test takes a ``clock`` (or ``monotonic``) callable.

    It returns ``now`` until the test changes it (``clock.now += 5``).
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
