"""Which master a worker dials, and how long it waits first (pure; the agent sleeps and dials).

A worker may be given several masters on one database (``-master https://m1,https://m2``).
It is connected to one at a time, starting with the first. When the channel to the current
master fails, whatever the reason (refused, a failed handshake, no pong, closed), the worker
moves to the next master of the list, wrapping around:

* within a round (not every master has failed since the last good session) it waits only a
  random moment in ``[0, spread)``: the workers of a master that died then reach the next one
  spread over that time rather than in the same instant;
* after a full round of failures it waits the jittered, growing delay of a
  :class:`~gdos_sdk.backoff.Backoff` (0.5, 1, 2 ... s up to ``connect.reconnect_max``);
* a good session (the master's welcome arrived) resets both.

With a single master every failure ends a round: the worker waits its backoff and dials the
same master again, as it always did.

Example::

    masters = MasterList(["https://m1", "https://m2"], Backoff(initial=0.5, maximum=30))
    masters.current                 # "https://m1"
    delay = masters.failed()        # in [0, 0.5): m1 failed, m2 not yet tried
    masters.current                 # "https://m2"
    masters.failed()                # about 0.5: a full round failed, back off
    masters.connected()             # a welcome: the next failure starts a new round
"""

from __future__ import annotations

import random
import urllib.parse
from collections.abc import Sequence

from websockets.exceptions import ConnectionClosed, InvalidStatus

from gdos_sdk.backoff import Backoff

__all__ = ["MasterList", "failure_reason", "shown_url"]

KEEPALIVE_CLOSE = 1011  # websockets closes with this code when a ping goes unanswered


def shown_url(url: str) -> str:
    """``url`` without a user name or password, for logs.

    Example::

        shown_url("https://gdos:pw@m1:8443")  # "https://m1:8443"
    """
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def failure_reason(exc: BaseException, *, ping_timeout: float) -> str:
    """Why a channel to a master failed, in the words a worker's log uses.

    Example::

        failure_reason(ConnectionRefusedError(111, "..."), ping_timeout=3)  # "connection refused"
    """
    if isinstance(exc, ConnectionClosed):
        sent, received = exc.sent, exc.rcvd
        if sent is not None and sent.code == KEEPALIVE_CLOSE and "keepalive" in sent.reason:
            return f"no answer to a ping within {ping_timeout:g} s"
        if received is None:
            return "the connection broke (no close frame)"
        said = f": {received.reason}" if received.reason else ""
        return f"the master closed the channel (code {received.code}{said})"
    if isinstance(exc, InvalidStatus):
        return f"the master refused the connection: HTTP {exc.response.status_code}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


class MasterList:
    """The masters a worker may be connected to, the current one, and the waits between dials.

    Parameters:
        urls: the masters, in the order they are tried (at least one).
        backoff: the delays after a full round of failures; reset by :meth:`connected`.
        spread: a move within a round waits a random time in ``[0, spread)`` seconds.
        rng: the random source of that wait (seed it for a repeatable sequence).
    """

    def __init__(
        self,
        urls: Sequence[str],
        backoff: Backoff,
        *,
        spread: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if not urls:
            raise ValueError("a worker needs at least one master URL")
        self.urls = tuple(urls)
        self.backoff = backoff
        self.spread = spread
        self.rng = rng or random.Random()  # noqa: S311 - spreads reconnects, not a secret
        self.index = 0
        self.failures = 0  # channels failed in a row since the last good session

    @property
    def current(self) -> str:
        """The master to dial now."""
        return self.urls[self.index]

    def connected(self) -> None:
        """The current master welcomed us: the next failure starts a new round."""
        self.failures = 0
        self.backoff.reset()

    def failed(self) -> float:
        """The channel to the current master failed: move to the next one.

        Returns:
            Seconds to wait before dialling :attr:`current`.
        """
        self.failures += 1
        self.index = (self.index + 1) % len(self.urls)
        if self.failures % len(self.urls) == 0:
            return self.backoff.next()  # every master failed once more: back off
        return self.rng.uniform(0.0, self.spread)
