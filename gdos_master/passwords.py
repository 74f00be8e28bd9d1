"""Password hashing off the event loop, a few at a time.

A scrypt hash at OWASP's cost takes about half a second of CPU and 128 MiB of
memory. Run on the event loop it would stall every socket of the master; run
in the default thread pool (40 threads) a login flood would take gigabytes.
:class:`PasswordHasher` runs hashes in its own small pool (``auth.hash_workers``
threads, at a lower CPU priority than the event loop's thread on Linux), lets
``auth.hash_queue`` more wait, and answers 429 at once beyond that. So the
master's memory for hashing is at most ``hash_workers`` x 128 MiB, and its loop
only ever hands work over.

Unknown user names are checked against a dummy hash of the same cost, on the
same code path, so a wrong name takes as long as a wrong password.

Example::

    hasher = PasswordHasher(cost=17, workers=2, queue=32)
    stored = await hasher.hash("s3cret-password")
    await hasher.verify("s3cret-password", stored)  # True
    await hasher.verify("anything", None)           # False, after a full-cost check
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from gdos_master.security import dummy_password_hash, hash_password, verify_password
from gdos_sdk.errors import RateLimitedError

__all__ = ["PasswordHasher"]

T = TypeVar("T")

#: How much nicer than the event loop a hashing thread runs (Linux: per thread).
HASH_NICENESS = 10


def _lower_priority() -> None:
    # On Linux each thread has its own nice value: hashing yields the CPU to the
    # event loop's thread, so a login flood cannot slow the rest of the master.
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICENESS)


class PasswordHasher:
    """Hash and check passwords in a bounded pool; see the module docstring.

    Parameters:
        cost: log2 of scrypt's N (17: N=2^17, 128 MiB per hash).
        workers: hashes computed at once (threads).
        queue: hashes allowed to wait for a thread; more get :class:`RateLimitedError`.
    """

    def __init__(self, *, cost: int, workers: int, queue: int) -> None:
        self.cost = cost
        self.workers = max(1, workers)
        self.queue = max(0, queue)
        self.dummy = dummy_password_hash(cost=cost)
        self.computed = 0  # hashes and checks done, for tests and metrics
        self.refused = 0  # requests turned away because the queue was full
        self._pending = 0
        self._pool = ThreadPoolExecutor(
            max_workers=self.workers,
            thread_name_prefix="gdos-password",
            initializer=_lower_priority,
        )

    @property
    def pending(self) -> int:
        """Hashes running or waiting now."""
        return self._pending

    async def _run(self, fn: Callable[..., T], *args: str) -> T:
        if self._pending >= self.workers + self.queue:
            self.refused += 1
            raise RateLimitedError(
                "too many logins are being checked at once; retry in a second",
                details={"retry_after": 1},
            )
        self._pending += 1
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._pending -= 1
        self.computed += 1
        return result

    def _hash(self, password: str) -> str:
        return hash_password(password, cost=self.cost)

    async def hash(self, password: str) -> str:
        """The storage form of ``password`` at the current cost."""
        return await self._run(self._hash, password)

    async def verify(self, password: str, stored: str | None) -> bool:
        """Check ``password`` against ``stored``; ``None`` (no such user) costs the same."""
        ok = await self._run(verify_password, password, stored or self.dummy)
        return ok and stored is not None

    def close(self) -> None:
        """Stop the pool; hashes still queued are dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)
