"""The web terminal from Python: a shell on a node, with resize and reattach.

:meth:`Client.open_terminal <gdos_sdk.Client.open_terminal>` returns a :class:`Terminal`
and :meth:`AsyncClient.open_terminal <gdos_sdk.AsyncClient.open_terminal>` an
:class:`AsyncTerminal` (asyncio). Both speak the terminal socket of docs/terminal.md:
typed bytes go out as binary frames, the screen comes back as binary frames, and
``resize``/``close`` are JSON text frames.

When the connection drops (network, proxy, laptop lid), the next :meth:`~Terminal.read`
or :meth:`~Terminal.write` reattaches to the same session with ``?session=<id>``
within ``reattach_timeout`` seconds (the master keeps the shell for
``terminal.reattach_grace``, 60 s by default). The master replays its recent screen on
reattach and says where that screen starts in the session's output (``offset``), so
only the bytes this client has not seen yet are returned: nothing twice, and what the
shell printed meanwhile is not lost (up to ``terminal.scrollback_bytes``).

Example::

    with gdos.open_terminal(node.id, rows=40, cols=120) as term:
        term.write("uname -a; exit\\r")
        while chunk := term.read():
            print(chunk.decode(errors="replace"), end="")
    print(term.exit_code, term.reason)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import attrs
from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection as SyncConnection
from websockets.sync.client import connect as sync_connect

from gdos_sdk.errors import (
    AuthError,
    ConflictError,
    GdosError,
    NotFoundError,
    TransportError,
    ValidationError,
    error_from_body,
)
from gdos_sdk.terminal import MAX_COLS, MAX_ROWS, TerminalSession, control

__all__ = [
    "AsyncTerminal",
    "Terminal",
    "TerminalLink",
    "TerminalNotice",
    "terminal_link",
    "terminal_url",
]

#: waits between reattach attempts (the last one repeats until the deadline)
REATTACH_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)
#: a WebSocket frame of screen output may be this large (the worker sends up to 1 MiB)
MAX_FRAME = 4 * 1024 * 1024
#: statuses that mean "this session will never come back" (or "you may not"): stop trying
FINAL_STATUSES = frozenset({400, 401, 403, 404, 409, 422})


@attrs.frozen
class TerminalNotice:
    """What happened to the connection: ``dropped`` (reattaching) or ``reattached``."""

    kind: str
    message: str
    attempt: int = 0


Notice = Callable[[TerminalNotice], None]


@attrs.frozen
class TerminalLink:
    """How to reach the terminal socket of a master: URL, headers, TLS (from a client)."""

    base_url: str
    headers: dict[str, str]
    ssl: ssl.SSLContext | None
    origin: str | None = None

    def url(self, node_id: str, rows: int, cols: int, session_id: str | None = None) -> str:
        return terminal_url(self.base_url, node_id, rows=rows, cols=cols, session_id=session_id)


def terminal_link(
    base_url: str,
    *,
    authorization: str | None,
    cookies: dict[str, str],
    verify: bool | str | ssl.SSLContext,
) -> TerminalLink:
    """The terminal socket of a client's master, with the client's credential and TLS.

    A token goes as ``Authorization``; a browser-style session (``Client.login``) as its
    cookie, with the ``Origin`` the master expects of a session.
    """
    headers: dict[str, str] = {}
    origin = None
    if authorization:
        headers["Authorization"] = authorization
    elif cookies:
        headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
        origin = base_url.rstrip("/")
    context: ssl.SSLContext | None = None
    if base_url.startswith("https://"):
        if isinstance(verify, ssl.SSLContext):
            context = verify
        elif isinstance(verify, str):
            context = ssl.create_default_context(cafile=verify)
        else:
            context = ssl.create_default_context()
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
    return TerminalLink(base_url=base_url, headers=headers, ssl=context, origin=origin)


def terminal_url(
    base_url: str, node_id: str, *, rows: int, cols: int, session_id: str | None = None
) -> str:
    """The WebSocket URL of a node's terminal: ``ws(s)://host/api/v1/terminal/<node>?...``.

    Example::

        terminal_url("https://gdos.example.com", "n1", rows=24, cols=80)
        # 'wss://gdos.example.com/api/v1/terminal/n1?rows=24&cols=80'
    """
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    query: dict[str, str | int] = {"rows": rows, "cols": cols}
    if session_id:
        query["session"] = session_id
    return f"{base}/api/v1/terminal/{node_id}?{urlencode(query)}"


def _check_size(rows: int, cols: int) -> None:
    if not (1 <= rows <= MAX_ROWS and 1 <= cols <= MAX_COLS):
        raise ValidationError(
            f"terminal size {rows}x{cols} is out of range (1-{MAX_ROWS} rows, 1-{MAX_COLS} columns)"
        )


def _refusal(exc: InvalidStatus) -> GdosError:
    """The master's HTTP refusal of the upgrade, as the error class it names."""
    response = exc.response
    try:
        body = json.loads(response.body or b"")
    except ValueError:
        body = None
    return error_from_body(response.status_code, body)


@attrs.define
class _Screen:
    """The frames of one session, without I/O: what to show, and how the session stands.

    ``received`` counts output bytes handed to the caller; a ``session`` frame's
    ``offset`` says where the replayed screen that follows it starts, so the part of it
    already handed out is skipped.
    """

    node_id: str
    rows: int
    cols: int
    id: str | None = None
    reattached: bool = False
    received: int = 0
    skip: int = 0
    ended: bool = False
    exit_code: int | None = None
    reason: str = ""
    error: GdosError | None = None

    def feed(self, frame: bytes | str) -> bytes:
        if isinstance(frame, bytes):
            if self.skip:
                dropped = min(self.skip, len(frame))
                self.skip -= dropped
                frame = frame[dropped:]
            self.received += len(frame)
            return frame
        try:
            message = json.loads(frame)
        except ValueError:
            return b""
        if not isinstance(message, dict):
            return b""
        op = message.get("op")
        if op == "session":
            self.id = str(message.get("id") or self.id or "")
            self.reattached = bool(message.get("reattached"))
            offset = message.get("offset")
            self.skip = max(0, self.received - offset) if isinstance(offset, int) else 0
        elif op == "exit":
            self.ended = True
            code = message.get("code")
            self.exit_code = code if isinstance(code, int) else None
            self.reason = str(message.get("reason") or "")
        elif op == "error":  # the reason of a close that follows (or of a refused frame)
            self.error = GdosError(str(message.get("message") or "terminal error"))
        return b""

    def ended_from(self, session: TerminalSession) -> None:
        """The session ended while this client was away: take its end from the API."""
        self.ended = True
        self.exit_code = session.exit_code
        self.reason = session.reason or "closed"

    def closed_for_good(self, exc: ConnectionClosed) -> GdosError | None:
        """An error when the master closed the socket on purpose (no reattach then)."""
        code = exc.rcvd.code if exc.rcvd is not None else None
        if code is not None and code >= 4000:
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            return self.error or ConflictError(reason or f"terminal closed (code {code})")
        return None


def _deadline_delays(timeout: float) -> Iterator[float]:
    deadline = time.monotonic() + timeout
    index = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        yield min(left, REATTACH_DELAYS[min(index, len(REATTACH_DELAYS) - 1)])
        index += 1


class Terminal:
    """A shell on a node through the master (blocking); from :meth:`Client.open_terminal`.

    Attributes: ``id`` (the session id), ``node_id``, ``rows``/``cols``, ``ended``,
    ``exit_code`` and ``reason`` once it ended (``exited``, ``closed``, ``idle``, ...).
    Thread-safe: one thread may read while another writes and resizes.

    Example::

        term = gdos.open_terminal(node.id)
        term.write(b"echo hi\\r")
        print(term.read(timeout=5))
        term.close()
    """

    def __init__(
        self,
        link: TerminalLink,
        node_id: str,
        *,
        rows: int = 24,
        cols: int = 80,
        session_id: str | None = None,
        reattach_timeout: float = 60.0,
        on_notice: Notice | None = None,
        fetch_session: Callable[[str], TerminalSession] | None = None,
        open_timeout: float = 30.0,
    ) -> None:
        _check_size(rows, cols)
        self._link = link
        self._screen = _Screen(node_id=node_id, rows=rows, cols=cols, id=session_id)
        self.reattach_timeout = reattach_timeout
        self._on_notice = on_notice
        self._fetch = fetch_session
        self._open_timeout = open_timeout
        self._lock = threading.Lock()
        self._generation = 0
        self._pending = b""
        self._detached = False
        self._ws: SyncConnection | None = None
        self._ws = self._connect(session_id)

    # --- what the session is ---------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._screen.id or ""

    @property
    def node_id(self) -> str:
        return self._screen.node_id

    @property
    def rows(self) -> int:
        return self._screen.rows

    @property
    def cols(self) -> int:
        return self._screen.cols

    @property
    def ended(self) -> bool:
        return self._screen.ended

    @property
    def exit_code(self) -> int | None:
        return self._screen.exit_code

    @property
    def reason(self) -> str:
        return self._screen.reason

    def __repr__(self) -> str:
        state = f"ended {self.reason}" if self.ended else "open"
        return f"<Terminal {self.id} node={self.node_id} {self.rows}x{self.cols} {state}>"

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- connection ------------------------------------------------------------------------

    def _connect(self, session_id: str | None) -> SyncConnection:
        screen = self._screen
        url = self._link.url(screen.node_id, screen.rows, screen.cols, session_id)
        try:
            opener = sync_connect(
                url,
                additional_headers=self._link.headers,
                origin=self._link.origin,  # type: ignore[arg-type]
                ssl=self._link.ssl,
                open_timeout=self._open_timeout,
                compression=None,
                max_size=MAX_FRAME,
            )
            # Entered as a context manager, which every websockets release since 13 allows
            # (17 warns otherwise); the connection is closed by detach() or close().
            ws = opener.__enter__()
        except InvalidStatus as exc:
            raise _refusal(exc) from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise TransportError(f"cannot open the terminal: {exc}") from exc
        try:
            first = ws.recv(timeout=self._open_timeout)
        except (ConnectionClosed, TimeoutError) as exc:
            ws.close()
            raise TransportError(f"the terminal closed before it started: {exc}") from exc
        screen.feed(first)
        if screen.error is not None:
            ws.close()
            raise screen.error
        return ws

    def _reattach(self, seen: int, cause: BaseException) -> None:
        """Reconnect after a drop (once, whichever thread notices first)."""
        with self._lock:
            if self._generation != seen or self._screen.ended or self._detached:
                return  # another thread reattached (or the end is known) meanwhile
            if self._ws is not None:
                with contextlib.suppress(Exception):
                    self._ws.close()
            self._notify(TerminalNotice("dropped", f"connection lost ({cause}); reattaching"))
            last: BaseException = cause
            for attempt, delay in enumerate(_deadline_delays(self.reattach_timeout), 1):
                try:
                    self._ws = self._connect(self._screen.id)
                except GdosError as exc:
                    if exc.status in FINAL_STATUSES:
                        self._gone(exc)
                        return
                    last = exc
                    time.sleep(delay)
                    continue
                self._generation += 1
                self._notify(TerminalNotice("reattached", f"reattached to {self.id}", attempt))
                return
            raise TransportError(
                f"lost the terminal and could not reattach within {self.reattach_timeout:g} s:"
                f" {last}"
            )

    def _gone(self, exc: GdosError) -> None:
        """The master no longer has the session: learn how it ended, or raise why not."""
        if isinstance(exc, AuthError) or self._fetch is None or not self._screen.id:
            raise exc
        try:
            session = self._fetch(self._screen.id)
        except NotFoundError:
            raise exc from None
        if session.ended_at is None:
            raise exc
        self._screen.ended_from(session)
        self._ws = None

    def _notify(self, notice: TerminalNotice) -> None:
        if self._on_notice is not None:
            self._on_notice(notice)

    # --- I/O -------------------------------------------------------------------------------

    def read(self, timeout: float | None = None) -> bytes:
        """The next output of the shell; ``b""`` once the session has ended.

        Returns:
            Bytes as the PTY wrote them (may split UTF-8 characters).

        Raises:
            TimeoutError: nothing came within ``timeout`` seconds.
            TransportError: the connection dropped and could not be reattached in time.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._pending:
                data, self._pending = self._pending, b""
                return data
            ws, generation = self._ws, self._generation
            if self._screen.ended or ws is None:
                return b""
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                frame = ws.recv(timeout=left)
            except TimeoutError:
                raise TimeoutError("no terminal output within the timeout") from None
            except ConnectionClosed as exc:
                if self._screen.ended or self._detached:
                    return b""
                final = self._screen.closed_for_good(exc)
                if final is not None:
                    raise final from exc
                self._reattach(generation, exc)
                continue
            data = self._screen.feed(frame)
            if data:
                return data

    def write(self, data: bytes | str) -> None:
        """Type ``data`` (a ``str`` is sent as UTF-8); waits for a reattach if one is due.

        Raises:
            TransportError: the connection dropped and could not be reattached in time.
        """
        payload = data.encode() if isinstance(data, str) else bytes(data)
        self._send(payload)

    def resize(self, rows: int, cols: int) -> None:
        """Tell the shell the window is now ``rows`` x ``cols`` (SIGWINCH on the node).

        Raises:
            ValidationError: a size out of range (1-1000 rows, 1-2000 columns).
        """
        _check_size(rows, cols)
        self._screen.rows, self._screen.cols = rows, cols
        self._send(control("resize", rows=rows, cols=cols))

    def _send(self, frame: bytes | str) -> None:
        for _ in range(3):
            ws, generation = self._ws, self._generation
            if self._screen.ended or ws is None:
                return
            try:
                ws.send(frame)
                return
            except ConnectionClosed as exc:
                final = self._screen.closed_for_good(exc)
                if final is not None:
                    raise final from exc
                self._reattach(generation, exc)

    def close(self) -> None:
        """End the session (the shell is hung up) and close the connection.

        Raises:
            Nothing: a connection already gone is fine.
        """
        ws = self._ws
        if ws is None:
            return
        if not self._screen.ended:
            with contextlib.suppress(Exception):
                ws.send(control("close"))
                deadline = time.monotonic() + 5
                while not self._screen.ended and time.monotonic() < deadline:
                    frame = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
                    self._pending += self._screen.feed(frame)
        self.detach()

    def detach(self) -> None:
        """Close the connection but leave the shell running for a later reattach.

        ``gdos_sdk.Client.open_terminal(node_id, session_id=term.id)`` reattaches within
        the master's ``terminal.reattach_grace``.

        Raises:
            Nothing.
        """
        self._detached = True
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()


class AsyncTerminal:
    """A shell on a node through the master (asyncio); from :meth:`AsyncClient.open_terminal`.

    The same behaviour as :class:`Terminal`, awaited; open it with ``await`` (or
    ``async with``). One task may read while others write and resize.

    Example::

        async with await gdos.open_terminal(node.id) as term:
            await term.write("echo hi\\r")
            print(await term.read())
    """

    def __init__(
        self,
        link: TerminalLink,
        node_id: str,
        *,
        rows: int = 24,
        cols: int = 80,
        session_id: str | None = None,
        reattach_timeout: float = 60.0,
        on_notice: Notice | None = None,
        fetch_session: Callable[[str], Awaitable[TerminalSession]] | None = None,
        open_timeout: float = 30.0,
    ) -> None:
        _check_size(rows, cols)
        self._link = link
        self._screen = _Screen(node_id=node_id, rows=rows, cols=cols, id=session_id)
        self.reattach_timeout = reattach_timeout
        self._on_notice = on_notice
        self._fetch = fetch_session
        self._open_timeout = open_timeout
        self._lock = asyncio.Lock()
        self._generation = 0
        self._pending = b""
        self._detached = False
        self._ws: AsyncConnection | None = None

    async def start(self) -> AsyncTerminal:
        """Open the socket (``open_terminal`` does it); returns the terminal.

        Returns:
            This terminal, attached.

        Raises:
            NotFoundError: no node (or session) with this id.
            ConflictError: too many sessions on the node or for the user.
            TransportError: the master or the node cannot be reached.
        """
        self._ws = await self._connect(self._screen.id)
        return self

    @property
    def id(self) -> str:
        return self._screen.id or ""

    @property
    def node_id(self) -> str:
        return self._screen.node_id

    @property
    def rows(self) -> int:
        return self._screen.rows

    @property
    def cols(self) -> int:
        return self._screen.cols

    @property
    def ended(self) -> bool:
        return self._screen.ended

    @property
    def exit_code(self) -> int | None:
        return self._screen.exit_code

    @property
    def reason(self) -> str:
        return self._screen.reason

    def __repr__(self) -> str:
        state = f"ended {self.reason}" if self.ended else "open"
        return f"<AsyncTerminal {self.id} node={self.node_id} {self.rows}x{self.cols} {state}>"

    async def __aenter__(self) -> AsyncTerminal:
        if self._ws is None and not self.ended:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connect(self, session_id: str | None) -> AsyncConnection:
        screen = self._screen
        url = self._link.url(screen.node_id, screen.rows, screen.cols, session_id)
        extra: dict[str, Any] = {"ssl": self._link.ssl} if self._link.ssl is not None else {}
        try:
            ws = await async_connect(
                url,
                additional_headers=self._link.headers,
                origin=self._link.origin,  # type: ignore[arg-type]
                open_timeout=self._open_timeout,
                compression=None,
                max_size=MAX_FRAME,
                **extra,
            )
        except InvalidStatus as exc:
            raise _refusal(exc) from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise TransportError(f"cannot open the terminal: {exc}") from exc
        try:
            async with asyncio.timeout(self._open_timeout):
                first = await ws.recv()
        except (ConnectionClosed, TimeoutError) as exc:
            await ws.close()
            raise TransportError(f"the terminal closed before it started: {exc}") from exc
        screen.feed(first)
        if screen.error is not None:
            await ws.close()
            raise screen.error
        return ws

    async def _reattach(self, seen: int, cause: BaseException) -> None:
        async with self._lock:
            if self._generation != seen or self._screen.ended or self._detached:
                return
            if self._ws is not None:
                with contextlib.suppress(Exception):
                    await self._ws.close()
            self._notify(TerminalNotice("dropped", f"connection lost ({cause}); reattaching"))
            last: BaseException = cause
            for attempt, delay in enumerate(_deadline_delays(self.reattach_timeout), 1):
                try:
                    self._ws = await self._connect(self._screen.id)
                except GdosError as exc:
                    if exc.status in FINAL_STATUSES:
                        await self._gone(exc)
                        return
                    last = exc
                    await asyncio.sleep(delay)
                    continue
                self._generation += 1
                self._notify(TerminalNotice("reattached", f"reattached to {self.id}", attempt))
                return
            raise TransportError(
                f"lost the terminal and could not reattach within {self.reattach_timeout:g} s:"
                f" {last}"
            )

    async def _gone(self, exc: GdosError) -> None:
        if isinstance(exc, AuthError) or self._fetch is None or not self._screen.id:
            raise exc
        try:
            session = await self._fetch(self._screen.id)
        except NotFoundError:
            raise exc from None
        if session.ended_at is None:
            raise exc
        self._screen.ended_from(session)
        self._ws = None

    def _notify(self, notice: TerminalNotice) -> None:
        if self._on_notice is not None:
            self._on_notice(notice)

    async def read(self, timeout: float | None = None) -> bytes:
        """The next output of the shell; ``b""`` once the session has ended.

        Returns:
            Bytes as the PTY wrote them (may split UTF-8 characters).

        Raises:
            TimeoutError: nothing came within ``timeout`` seconds.
            TransportError: the connection dropped and could not be reattached in time.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._pending:
                data, self._pending = self._pending, b""
                return data
            ws, generation = self._ws, self._generation
            if self._screen.ended or ws is None:
                return b""
            try:
                async with asyncio.timeout_at(deadline):
                    frame = await ws.recv()
            except TimeoutError:
                raise TimeoutError("no terminal output within the timeout") from None
            except ConnectionClosed as exc:
                if self._screen.ended or self._detached:
                    return b""
                final = self._screen.closed_for_good(exc)
                if final is not None:
                    raise final from exc
                await self._reattach(generation, exc)
                continue
            data = self._screen.feed(frame)
            if data:
                return data

    async def write(self, data: bytes | str) -> None:
        """Type ``data`` (a ``str`` is sent as UTF-8); waits for a reattach if one is due.

        Raises:
            TransportError: the connection dropped and could not be reattached in time.
        """
        await self._send(data.encode() if isinstance(data, str) else bytes(data))

    async def resize(self, rows: int, cols: int) -> None:
        """Tell the shell the window is now ``rows`` x ``cols`` (SIGWINCH on the node).

        Raises:
            ValidationError: a size out of range (1-1000 rows, 1-2000 columns).
        """
        _check_size(rows, cols)
        self._screen.rows, self._screen.cols = rows, cols
        await self._send(control("resize", rows=rows, cols=cols))

    async def _send(self, frame: bytes | str) -> None:
        for _ in range(3):
            ws, generation = self._ws, self._generation
            if self._screen.ended or ws is None:
                return
            try:
                await ws.send(frame)
                return
            except ConnectionClosed as exc:
                final = self._screen.closed_for_good(exc)
                if final is not None:
                    raise final from exc
                await self._reattach(generation, exc)

    async def close(self) -> None:
        """End the session (the shell is hung up) and close the connection.

        Raises:
            Nothing: a connection already gone is fine.
        """
        ws = self._ws
        if ws is None:
            return
        if not self._screen.ended:
            with contextlib.suppress(Exception):
                await ws.send(control("close"))
                async with asyncio.timeout(5):
                    while not self._screen.ended:
                        self._pending += self._screen.feed(await ws.recv())
        await self.detach()

    async def detach(self) -> None:
        """Close the connection but leave the shell running for a later reattach.

        Raises:
            Nothing.
        """
        self._detached = True
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
