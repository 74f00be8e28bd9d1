"""Web terminal sessions on the master: open, relay, reattach, record, audit.

A browser opens ``/api/v1/terminal/<node id>`` (admins only). The master asks
the worker over its agent channel (``terminal_open``) to start a PTY and dial
back ``/api/v1/agent/terminal/<session id>`` with a one-time token; from then
on the terminal's bytes flow browser <-> master <-> worker on those two
sockets, never on the agent channel.

With several masters (docs/scale-out.md) the node may be connected to another master
(its owner). The open request then goes to the owner over the bus (the command relay,
:mod:`gdos_master.relay`) and carries this master's ``server.public_url``; the worker
dials its stream straight back here, if its own ``connect.master_url`` lists that URL
(:func:`gdos_worker.terminal.dial_back_url`). This master holds such a session like any
other: relay, reattach, recording, audit.

The session belongs to the master, not to the browser's socket: when the
browser drops, the worker's stream stays up, output keeps going into a ring
buffer and the recording, and a browser that comes back within
``terminal.reattach_grace`` (``?session=<id>``) gets the recent screen and
carries on. The recording (asciicast v2) is written by the master from what it
relays, to a local file flushed every second, and stored under
``recordings/<session id>.cast`` when the session ends, so a worker killed
mid-session still leaves a closed session (``worker_lost``) with its
recording. Sessions are rows of ``terminal_sessions``; ``terminal.start`` and
``terminal.end`` audit entries carry user, node, duration and recording.

Every way a session ends (the browser's ``{"op": "close"}``, ``DELETE
/terminal/sessions/<id>``, the shell's exit, the worker's stream dropping, the
reattach grace or idle timeout passing, the user losing the right, the master
stopping) goes through :meth:`TerminalRelay.end`, which runs the ending as its
own task: the session is ``ending`` until its recording is stored and its end
audited, and cancelling whoever asked (a browser socket going away) cannot cut
that short.

A session is held by the credential that opened (or last reattached) it. That
credential is checked again every ``REAUTH_INTERVAL`` seconds and at once when
the user's rights or credentials change (disabled, deleted, demoted below admin,
token revoked, password changed, logged out): the session then ends with reason
``revoked``.

Example::

    session = await relay.open(node_id, principal, ip, rows=24, cols=80)
    await relay.attach(session.id, browser)       # send output to the browser
    await relay.input(session.id, b"ls\\r")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs

from gdos_master.audit import record_audit
from gdos_master.auth import Principal
from gdos_sdk.codec import parse_json
from gdos_sdk.errors import (
    AuthError,
    ConflictError,
    GdosError,
    NotFoundError,
    PermissionDenied,
    TransportError,
)
from gdos_sdk.filemodes import PRIVATE_FILE, private_dir
from gdos_sdk.models import Page, Role
from gdos_sdk.protocol import TerminalOpenCommand
from gdos_sdk.terminal import (
    AsciicastRecorder,
    RingBuffer,
    TerminalSession,
    TerminalState,
    control,
    recording_key,
)

if TYPE_CHECKING:
    from gdos_master.app import Master

__all__ = ["Browser", "TerminalRelay"]

log = logging.getLogger("gdos.master.terminal")

SendBytes = Callable[[bytes], Awaitable[None]]
SendText = Callable[[str], Awaitable[None]]
Reauth = Callable[[], Principal]

REAUTH_INTERVAL = 10.0  # an expired session or token loses its terminal this fast

#: Reasons a session ends normally (its terminal.end entry is not an error).
NORMAL_ENDS = frozenset({"exited", "closed", "idle", "detached", "revoked"})


@attrs.define(eq=False)
class Browser:
    """One browser socket attached to a session (send bytes, send text, close)."""

    send_bytes: SendBytes
    send_text: SendText
    close: Callable[[int, str], Awaitable[None]]
    lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)
    gone: asyncio.Event = attrs.field(factory=asyncio.Event)

    async def send(self, data: bytes | str) -> bool:
        """Send one frame; False (and ``gone`` set) if the socket is dead."""
        if self.gone.is_set():
            return False
        try:
            async with self.lock:
                if isinstance(data, bytes):
                    await self.send_bytes(data)
                else:
                    await self.send_text(data)
        except Exception:  # any transport failure means the browser left
            self.gone.set()
            return False
        return True


@attrs.define(eq=False)
class _Session:
    id: str
    node_id: str
    user: str
    user_id: str
    ip: str
    token: str
    rows: int
    cols: int
    started: float  # wall clock
    ring: RingBuffer
    recorder: AsciicastRecorder
    rec_path: Path
    rec_file: IO[str] | None
    state: TerminalState = TerminalState.STARTING
    last_activity: float = 0.0  # monotonic
    detached_at: float | None = None
    browser: Browser | None = None
    worker_send: Callable[[bytes | str], Awaitable[None]] | None = None
    worker_close: Callable[[], Awaitable[None]] | None = None
    worker_ready: asyncio.Future[None] | None = None
    exit_code: int | None = None
    reason: str = ""
    attached_once: bool = False
    closed: asyncio.Event = attrs.field(factory=asyncio.Event)
    worker_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)
    reauth: Reauth | None = None  # checks the holding credential again
    ending: asyncio.Task[None] | None = None  # the ending, once it began

    def record(self, line: str) -> None:
        if line and self.rec_file is not None:
            self.rec_file.write(line)


class TerminalRelay:
    """The master's web terminal sessions."""

    def __init__(self, master: Master) -> None:
        self.master = master
        self.conf = master.settings.terminal
        self.sessions: dict[str, _Session] = {}
        self.tmp_dir = Path(master.settings.server.data_dir) / "tmp" / "recordings"
        master.accounts.on_change.append(self.recheck_user)

    # --- reading ------------------------------------------------------------------------

    def _row_model(self, row: Any) -> TerminalSession:
        live = self.sessions.get(row["id"])
        return TerminalSession(
            id=row["id"],
            node_id=row["node_id"],
            user=row["user"],
            state=live.state if live is not None else TerminalState(row["state"]),
            started_at=datetime.fromtimestamp(row["started_at"], UTC),
            ended_at=(
                datetime.fromtimestamp(row["ended_at"], UTC)
                if row["ended_at"] is not None
                else None
            ),
            reason=row["reason"],
            exit_code=row["exit_code"],
            rows=live.rows if live is not None else row["rows"],
            cols=live.cols if live is not None else row["cols"],
            recording=row["recording"],
            recording_size=row["recording_size"],
            ip=row["ip"],
        )

    def list_sessions(
        self, *, limit: int, offset: int, node_id: str | None = None, live: bool = False
    ) -> Page[TerminalSession]:
        """Sessions newest first (``live``: only those not closed)."""
        where, args = [], []
        if node_id:
            where.append("node_id = ?")
            args.append(node_id)
        if live:
            where.append("state != 'closed'")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        db = self.master.db
        total = int(db.scalar(f"SELECT COUNT(*) FROM terminal_sessions{clause}", args))  # noqa: S608
        rows = db.all(
            f"SELECT * FROM terminal_sessions{clause} ORDER BY started_at DESC LIMIT ? OFFSET ?",  # noqa: S608
            [*args, limit, offset],
        )
        return Page(
            items=[self._row_model(r) for r in rows], total=total, limit=limit, offset=offset
        )

    def get(self, session_id: str) -> TerminalSession:
        row = self.master.db.one("SELECT * FROM terminal_sessions WHERE id = ?", (session_id,))
        if row is None:
            raise NotFoundError(f"no terminal session {session_id}")
        return self._row_model(row)

    async def recording(self, session_id: str) -> bytes:
        """The asciicast text of a session: stored, or as recorded so far while it is live."""
        session = self.get(session_id)
        live = self.sessions.get(session_id)
        if live is not None and live.rec_file is not None:
            live.rec_file.flush()
            return live.rec_path.read_bytes()
        if not session.recording:
            raise NotFoundError(f"terminal session {session_id} has no stored recording")
        storage = self.master.storage
        return b"".join([chunk async for chunk in storage.iter_bytes(session.recording)])

    # --- opening ------------------------------------------------------------------------

    async def open(
        self,
        node_id: str,
        principal: Principal,
        ip: str,
        *,
        rows: int,
        cols: int,
        reauth: Reauth | None = None,
    ) -> TerminalSession:
        """Start a session on ``node_id``: ask the worker, wait for its stream.

        ``reauth`` authenticates the opening credential again (see :meth:`recheck_user`).
        """
        conn = self.master.fleet.connection(node_id)
        if conn is None:
            self.master.nodes.get(node_id)  # NotFoundError for an unknown node
            raise TransportError(f"node {node_id} is offline")
        owner = getattr(conn, "owner", None)  # a RemoteConnection: another master's node
        dial_back = self._dial_back(node_id, owner) if owner is not None else ""
        node_elsewhere, user_elsewhere = self._open_elsewhere(node_id, principal.user_id)
        open_here = node_elsewhere + sum(1 for s in self.sessions.values() if s.node_id == node_id)
        if open_here >= self.conf.max_sessions_per_node:
            raise ConflictError(
                f"node {node_id} already has {open_here} terminal sessions"
                f" (terminal.max_sessions_per_node)"
            )
        held = user_elsewhere + sum(
            1 for s in self.sessions.values() if s.user_id == principal.user_id
        )
        if held >= self.conf.max_sessions_per_user:
            raise ConflictError(
                f"{principal.username} already has {held} terminal sessions open"
                " (terminal.max_sessions_per_user); end one first"
            )
        session_id = uuid.uuid4().hex
        now = time.time()
        private_dir(self.tmp_dir)
        rec_path = self.tmp_dir / f"{session_id}.cast"
        recorder = AsciicastRecorder(
            rows=rows,
            cols=cols,
            started_at=now,
            record_input=self.conf.record_input,
            max_bytes=self.conf.max_recording_bytes,
            title=f"{principal.label} on {node_id}",
        )
        # Private from the first byte: a recording shows everything typed and printed.
        fd = os.open(rec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        rec_file = open(fd, "w", encoding="utf-8")  # noqa: SIM115 - lives with the session
        rec_file.write(recorder.header())
        loop = asyncio.get_running_loop()
        session = _Session(
            id=session_id,
            node_id=node_id,
            user=principal.label,
            user_id=principal.user_id,
            ip=ip,
            token=secrets.token_urlsafe(32),
            rows=rows,
            cols=cols,
            started=now,
            ring=RingBuffer(self.conf.scrollback_bytes),
            recorder=recorder,
            rec_path=rec_path,
            rec_file=rec_file,
            last_activity=loop.time(),
            worker_ready=loop.create_future(),
            reauth=reauth,
        )
        self.sessions[session_id] = session
        self.master.db.execute(
            'INSERT INTO terminal_sessions(id, node_id, "user", user_id, ip, state, started_at,'
            " rows, cols, master_id) VALUES(?,?,?,?,?,?,?,?,?,?)",
            (
                session_id,
                node_id,
                session.user,
                session.user_id,
                ip,
                "starting",
                now,
                rows,
                cols,
                self.master.cluster.master_id,
            ),
        )
        record_audit(
            self.master.db,
            principal=principal,
            ip=ip,
            action="terminal.start",
            target=f"node:{node_id}",
            params={"session_id": session_id, "recording": recording_key(session_id)},
            status=200,
        )
        try:
            timeout = self.conf.open_timeout
            command = TerminalOpenCommand(
                session_id=session_id,
                token=session.token,
                rows=rows,
                cols=cols,
                master_url=dial_back,
            )
            await conn.ask(command, timeout)
            assert session.worker_ready is not None
            await asyncio.wait_for(asyncio.shield(session.worker_ready), timeout)
        except (GdosError, TimeoutError) as exc:
            message = exc.message if isinstance(exc, GdosError) else "worker did not dial back"
            await self.end(session_id, "error", message=message)
            if isinstance(exc, GdosError):
                raise
            raise TransportError(f"node {node_id} did not open the terminal: {message}") from None
        return self.get(session_id)

    def _open_elsewhere(self, node_id: str, user_id: str) -> tuple[int, int]:
        """Open sessions other live masters relay: ``(on node_id, held by user_id)``.

        Read from the shared table, so two opens on two masters at the same moment may
        both pass a cap by one (the caps are approximate across masters). Nothing with
        one master.
        """
        cluster = self.master.cluster
        if not cluster.clustered:
            return 0, 0
        alive = cluster.live_masters() - {cluster.master_id}
        rows = self.master.db.all(
            "SELECT node_id, user_id, master_id FROM terminal_sessions"
            " WHERE state != 'closed' AND master_id <> ? AND (node_id = ? OR user_id = ?)",
            (cluster.master_id, node_id, user_id),
        )
        live = [r for r in rows if r["master_id"] in alive]
        return (
            sum(1 for r in live if r["node_id"] == node_id),
            sum(1 for r in live if r["user_id"] == user_id),
        )

    def _dial_back(self, node_id: str, owner: str) -> str:
        """This master's URL, for a worker connected to master ``owner`` to dial back.

        The open request goes through the owner (the command relay); the worker dials
        its stream straight here, if its ``connect.master_url`` lists this URL.

        Raises:
            TransportError: this master has no ``server.public_url``; the message says so.
        """
        url = self.master.settings.server.public_url.strip().rstrip("/")
        if url.startswith(("http://", "https://")):
            return url
        here = self.master.cluster.master_id
        raise TransportError(
            f"node {node_id} is connected to master {owner}; for its terminal to be opened"
            f" here, this master ({here}) needs its own URL as workers reach it: set"
            " server.public_url (-public_url, OPS_MASTER_SERVER_PUBLIC_URL) to an http(s) URL"
            " listed in the worker's connect.master_url, or open the terminal on master"
            f" {owner}"
        )

    # --- the worker's stream --------------------------------------------------------------

    def check_stream(self, session_id: str, node_id: str, token: str) -> None:
        """Refuse a stream that is not the one the session waits for."""
        session = self.sessions.get(session_id)
        if session is None or session.node_id != node_id:
            raise NotFoundError(f"no terminal session {session_id} waiting for this node")
        if not token or not secrets.compare_digest(token, session.token):
            raise PermissionDenied("wrong terminal session token")
        if session.worker_send is not None:
            raise ConflictError(f"terminal session {session_id} already has its stream")

    async def serve_stream(
        self,
        session_id: str,
        receive: Callable[[], Awaitable[bytes | str]],
        send: Callable[[bytes | str], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        """Relay a worker's stream until it closes; then end the session."""
        session = self.sessions[session_id]
        session.worker_send, session.worker_close = send, close
        session.token = ""  # one use
        self.master.db.execute(
            "UPDATE terminal_sessions SET state = 'detached' WHERE id = ?", (session_id,)
        )
        session.state = TerminalState.DETACHED
        session.detached_at = asyncio.get_running_loop().time()
        if session.worker_ready is not None and not session.worker_ready.done():
            session.worker_ready.set_result(None)
        reason = "worker_lost"
        loop = asyncio.get_running_loop()
        try:
            while not session.closed.is_set():
                frame = await receive()
                if isinstance(frame, bytes):
                    now = loop.time()
                    session.last_activity = now
                    session.ring.append(frame)
                    session.record(session.recorder.output(frame, at=time.time()))
                    browser = session.browser
                    if browser is not None and not await browser.send(frame):
                        self._detach(session, browser)
                    continue
                try:
                    message = _json(frame)
                except ValueError:
                    continue
                if message.get("op") == "exit":
                    code = message.get("code")
                    session.exit_code = code if isinstance(code, int) else None
                    reason = "exited"
                    break
        except asyncio.CancelledError:
            reason = "worker_lost"
            raise
        except Exception as exc:
            log.info("terminal %s: worker stream ended: %r", session_id, exc)
        finally:
            if not session.closed.is_set():
                await asyncio.shield(self.end(session_id, reason))

    # --- the browser --------------------------------------------------------------------

    async def attach(
        self,
        session_id: str,
        principal: Principal,
        browser: Browser,
        *,
        reauth: Reauth | None = None,
    ) -> _Session:
        """Attach a browser (a new one, or one coming back); replay the recent screen.

        From now on the session is held by this browser's credential (``reauth``).
        """
        session = self.sessions.get(session_id)
        if session is None or session.closed.is_set():
            raise NotFoundError(f"terminal session {session_id} is not open (ended or unknown)")
        if session.user_id != principal.user_id:
            raise PermissionDenied("only the user who opened a terminal session can reattach")
        if reauth is not None:
            session.reauth = reauth
        old = session.browser
        reattached, session.attached_once = session.attached_once, True
        if old is not None and old is not browser:
            old.gone.set()
        async with browser.lock:
            # Under the lock: output arriving meanwhile waits, so the screen stays in order.
            # The screen is taken before anything is awaited: output relayed later goes out
            # live after it, so none is sent twice. ``offset`` is where the screen starts in
            # the session's output: a client that counted what it got skips what it has.
            session.browser = browser
            session.state = TerminalState.ATTACHED
            session.detached_at = None
            session.last_activity = asyncio.get_running_loop().time()
            screen = session.ring.getvalue()
            hello = control(
                "session",
                id=session.id,
                node_id=session.node_id,
                reattached=reattached,
                rows=session.rows,
                cols=session.cols,
                offset=session.ring.total - len(screen),
            )
            await browser.send_text(hello)
            if screen:
                await browser.send_bytes(screen)
        if old is not None and old is not browser:
            with contextlib.suppress(Exception):
                await old.close(4000, "terminal taken over by another window")
        self.master.db.execute(
            "UPDATE terminal_sessions SET state = 'attached' WHERE id = ?", (session_id,)
        )
        return session

    def _detach(self, session: _Session, browser: Browser) -> None:
        if session.browser is browser and not session.closed.is_set():
            session.browser = None
            session.state = TerminalState.DETACHED
            session.detached_at = asyncio.get_running_loop().time()
            self.master.db.execute(
                "UPDATE terminal_sessions SET state = 'detached' WHERE id = ?", (session.id,)
            )

    def detach(self, session_id: str, browser: Browser) -> None:
        """The browser's socket closed; the shell waits ``reattach_grace`` seconds."""
        session = self.sessions.get(session_id)
        if session is not None:
            browser.gone.set()
            self._detach(session, browser)

    async def input(self, session_id: str, data: bytes) -> None:
        """Keystrokes from the browser to the PTY."""
        session = self.sessions.get(session_id)
        if session is None or session.worker_send is None:
            return
        session.last_activity = asyncio.get_running_loop().time()
        session.record(session.recorder.input(data, at=time.time()))
        await self._to_worker(session, data)

    async def resize(self, session_id: str, rows: int, cols: int) -> None:
        session = self.sessions.get(session_id)
        if session is None or session.worker_send is None:
            return
        if (rows, cols) == (session.rows, session.cols):
            return
        session.rows, session.cols = rows, cols
        session.record(session.recorder.resize(rows, cols, at=time.time()))
        await self._to_worker(session, control("resize", rows=rows, cols=cols))

    async def _to_worker(self, session: _Session, frame: bytes | str) -> None:
        send = session.worker_send
        if send is None:
            return
        try:
            async with session.worker_lock:
                await send(frame)
        except Exception as exc:
            log.info("terminal %s: cannot reach the worker: %r", session.id, exc)
            await self.end(session.id, "worker_lost")

    # --- rights -------------------------------------------------------------------------

    def _lost_right(self, session: _Session) -> str | None:
        """Why the session's credential may no longer hold it, or None."""
        if session.reauth is None:
            return None
        try:
            principal = session.reauth()
        except AuthError as exc:
            return exc.message
        if not principal.role.allows(Role.ADMIN):
            return f"{principal.username} is no longer an admin"
        if principal.must_change_password:
            return f"{principal.username} must change their password"
        return None

    def recheck_user(self, user_id: str) -> None:
        """The user's rights or credentials changed: end their sessions that lost the right."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop, so no live session either
            return
        for session in list(self.sessions.values()):
            if session.user_id == user_id:
                self._recheck(session)

    def _recheck(self, session: _Session) -> None:
        if session.ending is not None:
            return
        why = self._lost_right(session)
        if why is not None:
            log.info("terminal %s: %s; ending it", session.id, why)
            self._begin_end(session, "revoked", why)

    # --- ending -------------------------------------------------------------------------

    async def end(self, session_id: str, reason: str, *, message: str = "") -> None:
        """End a session (see the module docstring) and wait until it has ended.

        The ending runs as its own task: if the caller is cancelled meanwhile, the
        session still ends completely. Ending a session that is already ending waits
        for that ending.
        """
        session = self.sessions.get(session_id)
        if session is None:
            return
        task = self._begin_end(session, reason, message)
        await asyncio.shield(task)

    def _begin_end(self, session: _Session, reason: str, message: str = "") -> asyncio.Task[None]:
        if session.ending is None:
            session.state = TerminalState.ENDING
            session.closed.set()  # stops the relay loops at once
            session.ending = asyncio.get_running_loop().create_task(
                self._finish(session, reason, message)
            )
        return session.ending

    async def ended(self, session_id: str) -> None:
        """Wait for a session that is ending to have ended (no-op otherwise)."""
        session = self.sessions.get(session_id)
        if session is not None and session.ending is not None:
            await asyncio.shield(session.ending)

    async def _finish(self, session: _Session, reason: str, message: str) -> None:
        try:
            await self._shut(session, reason, message)
        finally:
            # Whatever failed above, the session no longer counts against any limit.
            session.state = TerminalState.CLOSED
            self.sessions.pop(session.id, None)
            log.info("terminal %s on %s ended: %s", session.id, session.node_id, reason)

    async def _shut(self, session: _Session, reason: str, message: str) -> None:
        """Stop the PTY, tell the browser, store the recording, audit."""
        session_id = session.id
        session.reason = reason
        if session.worker_ready is not None and not session.worker_ready.done():
            session.worker_ready.cancel()
        if session.worker_send is not None and reason != "exited":
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await session.worker_send(control("close"))
        if session.worker_close is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await session.worker_close()
        browser = session.browser
        if browser is not None:
            text = control("exit", code=session.exit_code, reason=reason, message=message)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await browser.send(text)
                    await browser.close(1000, reason)
        ended = time.time()
        key, size = await self._store_recording(session)
        self.master.db.execute(
            "UPDATE terminal_sessions SET state = 'closed', ended_at = ?, reason = ?,"
            " exit_code = ?, recording = ?, recording_size = ?, rows = ?, cols = ? WHERE id = ?",
            (ended, reason, session.exit_code, key, size, session.rows, session.cols, session_id),
        )
        record_audit(
            self.master.db,
            principal=None,
            ip=session.ip,
            action="terminal.end",
            target=f"node:{session.node_id}",
            params={
                "session_id": session_id,
                "user": session.user,
                "duration": round(ended - session.started, 3),
                "recording": key,
                "reason": reason,
                "exit_code": session.exit_code,
            },
            status=200 if reason in NORMAL_ENDS else 500,
            message=message or reason,
            actor_kind="user",
            actor=session.user,
        )

    async def _store_recording(self, session: _Session) -> tuple[str, int]:
        if session.rec_file is not None:
            with contextlib.suppress(OSError):
                session.rec_file.close()
            session.rec_file = None
        return await self._upload(session.id, session.rec_path)

    async def _upload(self, session_id: str, path: Path) -> tuple[str, int]:
        key = recording_key(session_id)
        try:
            info = await self.master.storage.put_file(key, path)
        except (GdosError, OSError) as exc:
            log.error("terminal %s: recording kept at %s, not stored: %s", session_id, path, exc)
            return "", 0
        with contextlib.suppress(OSError):
            path.unlink()
        return key, info.size

    async def close_session(self, session_id: str) -> None:
        """An admin ends a live session."""
        if session_id not in self.sessions:
            self.get(session_id)
            raise ConflictError(f"terminal session {session_id} has already ended")
        await self.end(session_id, "closed")

    # --- housekeeping -------------------------------------------------------------------

    async def recover(self, *, orphans: bool = False) -> int:
        """Close sessions left open by a master that is gone; store what was recorded here.

        At start (a master restart) these are this master's own and those of masters
        whose lease ran out; sessions another live master relays are left alone (several
        masters). ``orphans``: only those of dead masters (the leader's sweep, every
        ``REAUTH_INTERVAL`` s, for a relaying master that died). Returns how many closed.
        """
        cluster = self.master.cluster
        here = cluster.master_id
        alive = cluster.live_masters() - {here}
        rows = self.master.db.all(
            "SELECT id, master_id FROM terminal_sessions WHERE state != 'closed'"
        )
        closed = 0
        for row in rows:
            if row["id"] in self.sessions or row["master_id"] in alive:
                continue
            if orphans and row["master_id"] == here:
                continue
            path = self.tmp_dir / f"{row['id']}.cast"
            key, size = await self._upload(row["id"], path) if path.is_file() else ("", 0)
            closed += self.master.db.execute(
                "UPDATE terminal_sessions SET state = 'closed', ended_at = ?,"
                " reason = 'master_restart', recording = ?, recording_size = ?"
                " WHERE id = ? AND state != 'closed'",
                (time.time(), key, size, row["id"]),
            ).rowcount
        return closed

    async def _sweep_orphans(self) -> None:
        if not (self.master.cluster.clustered and self.master.cluster.leader):
            return
        try:
            closed = await self.recover(orphans=True)
        except Exception as exc:  # the database is away: the next sweep tries again
            log.warning("could not close the terminal sessions of lost masters: %s", exc)
            return
        if closed:
            log.info("closed %d terminal sessions of masters that are gone", closed)

    async def run(self, period: float = 1.0) -> None:
        """Flush recordings; end sessions left detached past the grace, idle too long, or
        whose credential expired."""
        await self.recover()
        loop = asyncio.get_running_loop()
        next_recheck = loop.time() + REAUTH_INTERVAL
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            recheck = now >= next_recheck
            if recheck:
                next_recheck = now + REAUTH_INTERVAL
                await self._sweep_orphans()
            for session in list(self.sessions.values()):
                if session.rec_file is not None:
                    with contextlib.suppress(OSError):
                        session.rec_file.flush()
                if session.closed.is_set() or session.state == TerminalState.STARTING:
                    continue
                if recheck:
                    self._recheck(session)
                    if session.closed.is_set():
                        continue
                idle = self.conf.idle_timeout
                if session.detached_at is not None and (
                    now - session.detached_at > self.conf.reattach_grace
                ):
                    await self.end(session.id, "detached")
                elif idle > 0 and now - session.last_activity > idle:
                    await self.end(session.id, "idle")

    async def close(self) -> None:
        """The master stops: end every session (sessions already ending finish first)."""
        for session_id in list(self.sessions):
            with contextlib.suppress(Exception):
                await self.end(session_id, "master_restart")


def _json(text: str) -> dict[str, Any]:
    value = parse_json(text)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value
