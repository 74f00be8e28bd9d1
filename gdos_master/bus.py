"""Messages between masters: publish/subscribe and request/reply (docs/scale-out.md).

A :class:`Bus` carries small JSON documents between the masters that share one
PostgreSQL. A message reaches the *other* masters, never its sender: a master handles
its own events directly and uses the bus only for what the others must hear (a node's
samples for a browser on another master, a command for a node connected elsewhere, a
cache to drop after a write).

* :class:`LocalBus` (the default): the masters of one process. A master started without
  ``-bus`` gets a network of its own, so a publish finds nobody and costs a dictionary
  lookup; nothing is imported, no thread or socket is opened. Tests join several
  in-process masters through one :class:`LocalNetwork`.
* :class:`NatsBus` (``-bus nats://host:4222``): a NATS server or cluster. The client
  (``nats-py``) is imported only here, when the option is given.

Subjects are dot-separated words; a subscription may end in ``>`` (every subject under
that prefix) or use ``*`` for one word, as in NATS.

Example::

    bus = Bus.open("nats://127.0.0.1:4222", master_id="m1")
    await bus.start()
    await bus.subscribe("gdos.live.>", on_live)
    await bus.publish("gdos.live.fleet", {"data": ...})
    answer = await bus.request("gdos.node.n1.command", {"kind": "stop"}, timeout=30)
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gdos_sdk.errors import ConfigError, TransportError

__all__ = [
    "Bus",
    "Handler",
    "LocalBus",
    "LocalNetwork",
    "NatsBus",
    "Responder",
    "Subscription",
    "subject_matches",
]

log = logging.getLogger("gdos.master.bus")

#: Called with the subject and the document of a message another master published.
Handler = Callable[[str, dict[str, Any]], Awaitable[None]]
#: Answers a request: the document in, the reply out.
Responder = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether ``subject`` falls under ``pattern`` (``*``: one word, ``>``: the rest)."""
    want, have = pattern.split("."), subject.split(".")
    for n, word in enumerate(want):
        if word == ">":
            return len(have) > n
        if n >= len(have) or (word != "*" and word != have[n]):
            return False
    return len(want) == len(have)


def _encode(data: dict[str, Any], *, finite: bool = False) -> bytes:
    """``data`` as compact UTF-8 JSON.

    ``finite``: the caller knows ``data`` holds no NaN or infinity (checked samples), so
    orjson may write it (it would write those as ``null``); it is several times faster
    than ``json.dumps`` on the large ``gdos.samples`` documents. An integer past 64 bits
    or a key that is not a string falls back to ``json.dumps``.
    """
    if finite:
        try:
            return orjson.dumps(data)
        except TypeError:
            pass
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _decode(raw: bytes) -> Any:
    """A message's document: orjson (faster), or ``json.loads`` for what orjson refuses.

    orjson refuses ``NaN``/``Infinity`` and integers past 64 bits, which ``json.dumps``
    writes: those messages decode as before.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


class Subscription(abc.ABC):
    """An active subscription; :meth:`stop` ends it."""

    @abc.abstractmethod
    async def stop(self) -> None: ...


class Bus(abc.ABC):
    """The link between masters. See the module docstring."""

    def __init__(self, master_id: str) -> None:
        self.master_id = master_id

    @staticmethod
    def open(url: str, *, master_id: str) -> Bus:
        """The bus ``url`` names (``nats://...``), or a :class:`LocalBus` of its own if empty."""
        if not url:
            return LocalBus(master_id)
        return NatsBus(url, master_id=master_id)

    #: True when other processes can be on the other end (a NATS bus).
    shared: bool = False
    #: Wall-clock time the connection was lost, while it is (a NATS bus; for /healthz).
    lost_since: float | None = None

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """Whether messages can be sent now (a lost NATS connection: False until it is back)."""

    async def start(self) -> None:  # noqa: B027 - nothing to do for the in-process bus
        """Connect (a NATS bus); :class:`ConfigError`/:class:`TransportError` if it cannot."""

    async def close(self) -> None:  # noqa: B027 - overridden where there is something to close
        """Stop every subscription and disconnect."""

    @abc.abstractmethod
    async def publish(self, subject: str, data: dict[str, Any], *, finite: bool = False) -> None:
        """Send ``data`` to every other master subscribed to ``subject`` (no answer).

        ``finite``: ``data`` holds no NaN or infinity (checked samples): encoded faster.
        """

    @abc.abstractmethod
    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        """Call ``handler`` for each message another master publishes under ``subject``."""

    @abc.abstractmethod
    async def request(
        self, subject: str, data: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        """Send ``data`` to the master serving ``subject`` and return its reply.

        Raises:
            TransportError: nobody serves ``subject``, or no reply within ``timeout``.
        """

    @abc.abstractmethod
    async def serve(self, subject: str, responder: Responder) -> Subscription:
        """Answer the requests other masters send to ``subject`` with ``responder``."""


# --- in-process -------------------------------------------------------------------------------


class LocalNetwork:
    """The masters of one process that hear each other (tests; a lone master has its own)."""

    def __init__(self) -> None:
        self.subscriptions: list[_LocalSubscription] = []


class _LocalSubscription(Subscription):
    def __init__(
        self,
        network: LocalNetwork,
        owner: LocalBus,
        pattern: str,
        handler: Handler | None,
        responder: Responder | None,
    ) -> None:
        self.network, self.owner, self.pattern = network, owner, pattern
        self.handler, self.responder = handler, responder

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.network.subscriptions.remove(self)


class LocalBus(Bus):
    """Masters in one process (see the module docstring): messages are handed over directly."""

    def __init__(self, master_id: str, network: LocalNetwork | None = None) -> None:
        super().__init__(master_id)
        # Given a network, other masters of this process may be on it (tests).
        self.shared = network is not None
        self.network = network if network is not None else LocalNetwork()
        self.closed = False

    @property
    def connected(self) -> bool:
        return not self.closed

    async def close(self) -> None:
        self.closed = True
        self.network.subscriptions = [s for s in self.network.subscriptions if s.owner is not self]

    def _others(self, subject: str) -> list[_LocalSubscription]:
        return [
            s
            for s in self.network.subscriptions
            if s.owner is not self and not s.owner.closed and subject_matches(s.pattern, subject)
        ]

    async def publish(self, subject: str, data: dict[str, Any], *, finite: bool = False) -> None:
        if self.closed:
            raise TransportError("the bus is closed")
        if not self.network.subscriptions:  # a lone master: nobody to tell
            return
        for sub in self._others(subject):
            if sub.handler is None:
                continue
            # A copy, as a NATS message would be: the receiver may keep or change it.
            try:
                await sub.handler(subject, _decode(_encode(data, finite=finite)))
            except Exception:
                log.exception("bus handler for %s failed", subject)

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        sub = _LocalSubscription(self.network, self, subject, handler, None)
        self.network.subscriptions.append(sub)
        return sub

    async def request(
        self, subject: str, data: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        if self.closed:
            raise TransportError("the bus is closed")
        serving = [s for s in self._others(subject) if s.responder is not None]
        if not serving:
            raise TransportError(f"no master answers {subject}")
        responder = serving[0].responder
        assert responder is not None
        try:
            reply = await asyncio.wait_for(responder(_decode(_encode(data))), timeout)
        except TimeoutError:
            raise TransportError(f"no answer to {subject} within {timeout:g} s") from None
        return dict(_decode(_encode(reply)))

    async def serve(self, subject: str, responder: Responder) -> Subscription:
        sub = _LocalSubscription(self.network, self, subject, None, responder)
        self.network.subscriptions.append(sub)
        return sub


# --- NATS -------------------------------------------------------------------------------------


class _NatsSubscription(Subscription):
    def __init__(self, sub: Any) -> None:
        self._sub = sub

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()


class NatsBus(Bus):
    """A NATS server or cluster (``-bus``); see the module docstring.

    The connection is opened again by the client after a loss, without end; meanwhile
    :attr:`connected` is False (the health endpoint reports it) and publishes are kept in
    the client's buffer up to its limit. ``no_echo``: a master never hears itself.
    """

    shared = True

    def __init__(self, url: str, *, master_id: str) -> None:
        super().__init__(master_id)
        self.servers = [part.strip() for part in url.split(",") if part.strip()]
        self._nc: Any = None
        self._subs: list[_NatsSubscription] = []
        self.lost_at: float | None = None  # loop time the connection was lost, while it is
        #: Wall-clock time the connection was lost, while it is (for /healthz).
        self.lost_since: float | None = None
        self.connect_wait = 10.0  # seconds the first connection may take (start fails after)

    @property
    def connected(self) -> bool:
        return self._nc is not None and bool(self._nc.is_connected)

    async def start(self) -> None:
        try:
            import nats  # only a master started with -bus needs the client
        except ImportError as exc:  # pragma: no cover - nats-py is a dependency
            raise ConfigError(f"-bus needs the nats-py package ({exc})") from None
        loop = asyncio.get_running_loop()

        async def disconnected() -> None:
            self.lost_at = loop.time()
            if self.lost_since is None:
                self.lost_since = time.time()
            log.error("lost the bus (NATS %s); reconnecting", ", ".join(self.servers))

        async def reconnected() -> None:
            self.lost_at = None
            self.lost_since = None
            log.warning("bus connection back (NATS %s)", self._nc.connected_url.netloc)

        async def error(exc: Exception) -> None:
            log.warning("bus: %s", exc)

        try:
            # The client retries a server it cannot reach without end (it retries lost
            # connections so); the first connection is bounded, so a wrong -bus fails the start.
            self._nc = await asyncio.wait_for(
                self._connect(nats, disconnected, reconnected, error), self.connect_wait
            )
        except Exception as exc:
            raise TransportError(
                f"cannot reach the bus at {', '.join(self.servers)}: {exc or type(exc).__name__}"
            ) from None

    async def _connect(self, nats: Any, disconnected: Any, reconnected: Any, error: Any) -> Any:
        return await nats.connect(
            servers=self.servers,
            name=f"gdos-master {self.master_id}",
            no_echo=True,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            connect_timeout=5,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
        )

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.drain()
            with contextlib.suppress(Exception):
                await nc.close()

    def _client(self) -> Any:
        if self._nc is None:
            raise TransportError("the bus is not connected")
        return self._nc

    async def publish(self, subject: str, data: dict[str, Any], *, finite: bool = False) -> None:
        try:
            await self._client().publish(subject, _encode(data, finite=finite))
        except TransportError:
            raise
        except Exception as exc:
            raise TransportError(f"bus publish to {subject} failed: {exc}") from None

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        async def deliver(msg: Any) -> None:
            try:
                await handler(msg.subject, _decode(msg.data))
            except Exception:
                log.exception("bus handler for %s failed", msg.subject)

        sub = _NatsSubscription(await self._client().subscribe(subject, cb=deliver))
        self._subs.append(sub)
        return sub

    async def request(
        self, subject: str, data: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        from nats.errors import NoRespondersError  # loaded with the client

        try:
            msg = await self._client().request(subject, _encode(data), timeout=timeout)
        except NoRespondersError:
            raise TransportError(f"no master answers {subject}") from None
        except TimeoutError:
            raise TransportError(f"no answer to {subject} within {timeout:g} s") from None
        except TransportError:
            raise
        except Exception as exc:
            raise TransportError(f"bus request to {subject} failed: {exc}") from None
        return dict(_decode(msg.data))

    async def serve(self, subject: str, responder: Responder) -> Subscription:
        async def answer(msg: Any) -> None:
            try:
                reply = await responder(_decode(msg.data))
            except Exception:
                log.exception("bus responder for %s failed", msg.subject)
                reply = {"error": {"code": "internal_error", "message": "see the master log"}}
            with contextlib.suppress(Exception):
                await msg.respond(_encode(reply))

        sub = _NatsSubscription(await self._client().subscribe(subject, cb=answer))
        self._subs.append(sub)
        return sub
