"""Live streams over ``/api/v1/live``: a blocking one and an asyncio one, same behaviour.

:class:`LiveStream` uses the ``websockets`` library's synchronous client (a background
thread reads the socket; no event loop is needed, so it works in scripts and Jupyter);
:class:`AsyncLiveStream` its asyncio client. Both:

* connect, subscribe to every topic and wait for each topic's first answer, so that an
  unknown or forbidden topic raises at once (its snapshot is the first frame read);
* after a dropped socket (master restarted, network cut, the master dropped a client that
  fell behind), connect again with backoff (0.25 s doubling to 5 s) for up to
  :data:`RECONNECT_FOR` seconds and subscribe again: every topic starts over with a fresh
  snapshot (``frame.snapshot``), and :attr:`reconnects` counts these;
* raise :class:`~gdos_sdk.AuthError` when the master refuses the credential, and
  :class:`~gdos_sdk.TransportError` when it stays unreachable.

What the frames mean is :mod:`gdos_sdk.live`.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from gdos_sdk.client._base import RetryPolicy
from gdos_sdk.errors import AuthError, GdosError, TransportError, error_from_body
from gdos_sdk.live import CLOSE_AUTH, MAX_FRAME, Frame, Session

__all__ = ["RECONNECT_FOR", "AsyncLiveStream", "LiveStream", "aiter_frames", "iter_frames"]

#: seconds a stream keeps trying to reconnect before it raises TransportError
RECONNECT_FOR = 300.0
OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
_BACKOFF = RetryPolicy(backoff=0.25, maximum=5.0)


def _refused(exc: InvalidStatus) -> GdosError:
    """A handshake the master answered with an HTTP error, as its GdosError."""
    response = exc.response
    try:
        body = json.loads(response.body or b"")
    except ValueError:
        body = None
    return error_from_body(response.status_code, body)


def _dropped(exc: BaseException) -> GdosError:
    """A socket that closed under us, as the error to raise when no reconnect follows."""
    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
        code, reason = exc.rcvd.code, exc.rcvd.reason
        if code == CLOSE_AUTH:
            return AuthError(f"the master closed the live channel: {reason or 'credential gone'}")
        return TransportError(f"the live channel closed ({code} {reason})".rstrip())
    return TransportError(f"the live channel broke: {exc or type(exc).__name__}")


def _fatal(exc: GdosError) -> bool:
    """Errors that another connection attempt would only repeat."""
    return exc.status in (400, 401, 403, 404, 422)


class _Base:
    """What both streams keep: the URL, the handshake, the topics, frames read ahead."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        ssl_context: Any,
        topics: tuple[str, ...],
        *,
        reconnect: bool,
        origin: str | None,
    ) -> None:
        self.url = url
        self._headers = headers
        self._ssl = ssl_context
        self._origin = origin
        self.reconnect = reconnect
        self.reconnects = 0
        self.session = Session()
        for topic in topics:
            self.session.add(topic)
        self._ahead: collections.deque[Frame] = collections.deque()
        self._closed = False

    @property
    def topics(self) -> list[str]:
        """The subscribed topics."""
        return list(self.session.topics)

    @property
    def closed(self) -> bool:
        return self._closed

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "additional_headers": self._headers,
            "open_timeout": OPEN_TIMEOUT,
            "close_timeout": CLOSE_TIMEOUT,
            "max_size": MAX_FRAME,
        }
        if self._ssl is not None:
            options["ssl"] = self._ssl
        if self._origin is not None:
            options["origin"] = self._origin
        return options

    def _take(self, text: str | bytes) -> None:
        frame = self.session.read(text)
        if frame is not None:
            self._ahead.append(frame)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        shown = ", ".join(self.session.topics)
        if len(shown) > 60:
            shown = shown[:59] + "…"
        return f"<{type(self).__name__} {state} topics=[{shown}] reconnects={self.reconnects}>"


class LiveStream(_Base):
    """Frames of the subscribed topics, as they arrive (blocking; iterate it).

    Made by :meth:`Client.watch <gdos_sdk.Client.watch>`; it is connected when you get it.
    ``for frame in stream`` blocks for the next frame; :meth:`receive` takes a timeout.
    Close it (or use ``with``) when done; a stream that is garbage-collected closes too.

    Example::

        with gdos.watch("fleet", f"node:{node.id}") as stream:
            for frame in stream:
                print(frame)
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        ssl_context: Any,
        topics: tuple[str, ...],
        *,
        reconnect: bool = True,
        origin: str | None = None,
    ) -> None:
        super().__init__(url, headers, ssl_context, topics, reconnect=reconnect, origin=origin)
        self._ws: ClientConnection | None = None
        self._open()

    def _open(self) -> None:
        try:
            # Entered as a context manager: websockets 17.1+ warns about a bare connect()
            # (closing is ours: close()); older versions return the same connection.
            ws = connect(self.url, **self._options()).__enter__()
        except InvalidStatus as exc:
            raise _refused(exc) from exc
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise TransportError(f"cannot open the live channel {self.url}: {exc}") from exc
        self._ws = ws
        try:
            for text in self.session.subscribe_all():
                ws.send(text)
            deadline = time.monotonic() + OPEN_TIMEOUT
            while self.session.waiting:
                self._take(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        except TimeoutError as exc:
            ws.close()
            raise TransportError("the live channel did not answer the subscriptions") from exc
        except (ConnectionClosed, OSError) as exc:
            raise _dropped(exc) from exc
        except BaseException:
            ws.close()
            raise

    def _reopen(self, cause: BaseException) -> None:
        """Connect again after ``cause`` dropped the socket, with backoff, or raise."""
        if self._ws is not None:
            self._ws.close()
        if not self.reconnect:
            raise _dropped(cause) from cause
        give_up = time.monotonic() + RECONNECT_FOR
        attempt = 0
        while True:
            attempt += 1
            time.sleep(_BACKOFF.delay(attempt))
            if self._closed:
                return
            try:
                self._open()
            except GdosError as exc:
                if _fatal(exc) or time.monotonic() > give_up:
                    raise
                continue
            self.reconnects += 1
            return

    def subscribe(self, topic: str) -> None:
        """Add a topic; its snapshot is among the next frames.

        Raises:
            ValidationError: not a topic name.
            GdosError: the master refused it (NotFoundError, PermissionDenied ...).
        """
        message = self.session.add(topic)
        if message is None or self._ws is None:
            return
        self._ws.send(message)
        deadline = time.monotonic() + OPEN_TIMEOUT
        while topic in self.session.waiting:
            self._take(self._ws.recv(timeout=max(0.01, deadline - time.monotonic())))

    def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic`` (frames already read stay in line)."""
        message = self.session.remove(topic)
        if message is not None and self._ws is not None:
            self._ws.send(message)

    def receive(self, timeout: float | None = None) -> Frame:
        """The next frame; waits at most ``timeout`` seconds (None: as long as it takes).

        Raises:
            TimeoutError: no frame within ``timeout``.
            GdosError: the master refused a topic, or the credential (AuthError).
            TransportError: the socket broke and could not be opened again.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._ahead:
                return self._ahead.popleft()
            if self._closed or self._ws is None:
                raise TransportError("the live stream is closed")
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                self._take(self._ws.recv(timeout=left))
            except TimeoutError:
                raise
            except (ConnectionClosed, OSError) as exc:
                if self._closed:
                    raise TransportError("the live stream is closed") from None
                self._reopen(exc)

    def __iter__(self) -> LiveStream:
        return self

    def __next__(self) -> Frame:
        if self._closed and not self._ahead:
            raise StopIteration
        try:
            return self.receive()
        except TransportError:
            if self._closed:
                raise StopIteration from None
            raise

    def close(self) -> None:
        """Close the socket (iteration then ends)."""
        self._closed = True
        if self._ws is not None:
            self._ws.close()

    def __enter__(self) -> LiveStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None and not getattr(self, "_closed", True):
            try:
                ws.close()
            except Exception:  # noqa: S110 - nothing to tell anyone during collection
                pass


class AsyncLiveStream(_Base):
    """Frames of the subscribed topics, as they arrive (``async for`` it).

    Made by :meth:`AsyncClient.watch <gdos_sdk.AsyncClient.watch>`; it connects on first
    use (``async with`` or the first ``async for`` step). Close it with ``aclose()`` or
    ``async with``.

    Example::

        async with gdos.watch(f"node:{node.id}") as stream:
            async for frame in stream:
                print(frame.samples)
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        ssl_context: Any,
        topics: tuple[str, ...],
        *,
        reconnect: bool = True,
        origin: str | None = None,
    ) -> None:
        super().__init__(url, headers, ssl_context, topics, reconnect=reconnect, origin=origin)
        self._ws: AsyncConnection | None = None

    async def open(self) -> AsyncLiveStream:
        """Connect and subscribe (done for you by ``async with`` and ``async for``).

        Raises:
            GdosError: the master refused the credential or a topic.
            TransportError: the master cannot be reached.
        """
        if self._ws is None and not self._closed:
            await self._open()
        return self

    async def _open(self) -> None:
        try:
            ws = await async_connect(self.url, **self._options())
        except InvalidStatus as exc:
            raise _refused(exc) from exc
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise TransportError(f"cannot open the live channel {self.url}: {exc}") from exc
        self._ws = ws
        try:
            for text in self.session.subscribe_all():
                await ws.send(text)
            with anyio.fail_after(OPEN_TIMEOUT):
                while self.session.waiting:
                    self._take(await ws.recv())
        except TimeoutError as exc:
            await ws.close()
            raise TransportError("the live channel did not answer the subscriptions") from exc
        except (ConnectionClosed, OSError) as exc:
            raise _dropped(exc) from exc
        except BaseException:
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await ws.close()
            raise

    async def _reopen(self, cause: BaseException) -> None:
        if self._ws is not None:
            await self._ws.close()
        if not self.reconnect:
            raise _dropped(cause) from cause
        give_up = time.monotonic() + RECONNECT_FOR
        attempt = 0
        while True:
            attempt += 1
            await anyio.sleep(_BACKOFF.delay(attempt))
            if self._closed:
                return
            try:
                await self._open()
            except GdosError as exc:
                if _fatal(exc) or time.monotonic() > give_up:
                    raise
                continue
            self.reconnects += 1
            return

    async def subscribe(self, topic: str) -> None:
        """Add a topic; its snapshot is among the next frames.

        Raises:
            ValidationError: not a topic name.
            GdosError: the master refused it (NotFoundError, PermissionDenied ...).
        """
        message = self.session.add(topic)
        if message is None or self._ws is None:
            return
        await self._ws.send(message)
        with anyio.fail_after(OPEN_TIMEOUT):
            while topic in self.session.waiting:
                self._take(await self._ws.recv())

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic`` (frames already read stay in line)."""
        message = self.session.remove(topic)
        if message is not None and self._ws is not None:
            await self._ws.send(message)

    async def receive(self, timeout: float | None = None) -> Frame:
        """The next frame; waits at most ``timeout`` seconds (None: as long as it takes).

        Raises:
            TimeoutError: no frame within ``timeout``.
            GdosError: the master refused a topic, or the credential (AuthError).
            TransportError: the socket broke and could not be opened again.
        """
        await self.open()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._ahead:
                return self._ahead.popleft()
            if self._closed or self._ws is None:
                raise TransportError("the live stream is closed")
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                with anyio.fail_after(left):
                    text = await self._ws.recv()
            except TimeoutError:
                raise
            except (ConnectionClosed, OSError) as exc:
                if self._closed:
                    raise TransportError("the live stream is closed") from None
                await self._reopen(exc)
                continue
            self._take(text)

    def __aiter__(self) -> AsyncLiveStream:
        return self

    async def __anext__(self) -> Frame:
        if self._closed and not self._ahead:
            raise StopAsyncIteration
        try:
            return await self.receive()
        except TransportError:
            if self._closed:
                raise StopAsyncIteration from None
            raise

    async def aclose(self) -> None:
        """Close the socket (iteration then ends)."""
        self._closed = True
        if self._ws is not None:
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await self._ws.close()

    async def __aenter__(self) -> AsyncLiveStream:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None and not getattr(self, "_closed", True):
            transport = getattr(ws, "transport", None)
            if transport is not None:
                transport.abort()


def iter_frames(stream: LiveStream, duration: float | None) -> Iterator[Frame]:
    """The stream's frames, for ``duration`` seconds (None: until it ends)."""
    deadline = None if duration is None else time.monotonic() + duration
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        try:
            yield stream.receive(timeout=left)
        except TimeoutError:
            return
        except TransportError:
            if stream.closed:
                return
            raise


async def aiter_frames(stream: AsyncLiveStream, duration: float | None) -> AsyncIterator[Frame]:
    """The stream's frames, for ``duration`` seconds (None: until it ends)."""
    deadline = None if duration is None else time.monotonic() + duration
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        try:
            yield await stream.receive(timeout=left)
        except TimeoutError:
            return
        except TransportError:
            if stream.closed:
                return
            raise
