"""Jittered exponential backoff (pure; the caller sleeps).

Example::

    backoff = Backoff(initial=0.5, maximum=30)
    delay = backoff.next()   # about 0.5, then 1, 2, 4 ... capped at 30
    backoff.reset()          # after a success
"""

from __future__ import annotations

import random

import attrs

__all__ = ["Backoff"]


@attrs.define
class Backoff:
    """Delays that double from ``initial`` to ``maximum``, each scaled by a random jitter.

    Jitter spreads the reconnects of a thousand workers after a master restart
    over time instead of one thundering second.
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2  # each delay is multiplied by a value in [1 - jitter, 1 + jitter]
    rng: random.Random = attrs.field(factory=random.Random)
    attempts: int = 0

    def peek(self) -> float:
        """The un-jittered delay the next call will be based on."""
        return min(self.maximum, self.initial * self.factor**self.attempts)

    def next(self) -> float:
        base = self.peek()
        self.attempts += 1
        spread = self.rng.uniform(1 - self.jitter, 1 + self.jitter)
        return float(min(self.maximum, base * spread))

    def reset(self) -> None:
        self.attempts = 0
