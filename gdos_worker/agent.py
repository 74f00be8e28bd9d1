"""The worker's end of the agent channel: dial out, hello, heartbeats, commands, reconnect.

The worker always dials the master (never the reverse). ``connect.master_url`` may
list several masters on one database: the worker is connected to one at a time, and
after any failure of the channel it moves to the next one (:class:`MasterList`: a short
random wait within a round, a jittered, exponentially growing delay capped by
``connect.reconnect_max`` after every master failed). Its ``hello`` carries the full
instance inventory, so the master it reaches can reconcile whatever happened meanwhile.
Instances never depend on the channel: they keep running while it is down, and a move to
another master restarts nothing. Package downloads and terminal streams go to the master
the worker is connected to at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections import deque
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from gdos_sdk.backoff import Backoff
from gdos_sdk.config import WorkerSettings, check_master_url, master_url_list
from gdos_sdk.errors import AuthError, GdosError, ProtocolError, TransportError
from gdos_sdk.metrics import NodeSampler, ProcessTreeSampler, collect_fingerprint, local_addresses
from gdos_sdk.models import InstanceSample, NodeSample
from gdos_sdk.protocol import (
    MAX_FRAME,
    PROTOCOL_VERSION,
    CandidatesCommand,
    CommandOutput,
    Configure,
    ErrorInfo,
    ErrorMessage,
    Heartbeat,
    Hello,
    InstanceEvent,
    InstanceStatus,
    LogListCommand,
    LogReadCommand,
    LogSearchCommand,
    Request,
    Response,
    RunCommand,
    TerminalOpenCommand,
    Welcome,
    decode,
    encode,
    heartbeat_frames,
)
from gdos_worker.commands import run_fleet_command
from gdos_worker.logview import LogViewer
from gdos_worker.masters import MasterList, failure_reason, shown_url
from gdos_worker.state import Identity, WorkDir
from gdos_worker.supervisor import Supervisor
from gdos_worker.terminal import TerminalHost

__all__ = ["BUFFER_SECONDS", "Agent"]

BUFFER_SECONDS = 300
# Seconds the close handshake of a dead channel may take before we abort it. A master that
# stopped answering pings will not answer a close either: this is added to the time a silent
# master takes to be noticed, so it is short.
CLOSE_TIMEOUT = 1.0

log = logging.getLogger("gdos.worker.agent")


class Agent:
    """Holds the channel to the master and feeds the supervisor its commands."""

    def __init__(
        self, settings: WorkerSettings, workdir: WorkDir, identity: Identity, version: str
    ) -> None:
        self.settings = settings
        self.workdir = workdir
        self.identity = identity
        self.version = version
        self.supervisor: Supervisor | None = None
        self.connected = asyncio.Event()
        self.ws: ClientConnection | None = None
        self.push_interval = settings.runtime.sample_interval
        # Samples wait here until the next push; bounded so a long outage costs little memory
        # (and the master still gets the last few minutes of 1 s history on reconnect).
        self._node_buffer: deque[NodeSample] = deque(maxlen=BUFFER_SECONDS)
        self._instance_buffer: deque[list[InstanceSample]] = deque(maxlen=BUFFER_SECONDS)
        self._push_now = asyncio.Event()
        self._rephase = False
        self.node_sampler = NodeSampler.from_fingerprint(collect_fingerprint())
        self.tree_sampler = ProcessTreeSampler()
        self.last_error = ""
        self._tasks: set[asyncio.Task[Any]] = set()
        check_master_url(settings.connect)  # no plain HTTP off loopback unless told so
        self.masters = MasterList(
            master_url_list(settings.connect.master_url),
            Backoff(
                initial=settings.connect.reconnect_initial,
                maximum=settings.connect.reconnect_max,
            ),
            spread=settings.connect.reconnect_initial,
        )
        self._ssl: ssl.SSLContext | None = None
        if any(url.startswith("https://") for url in self.masters.urls):
            self._ssl = ssl.create_default_context(cafile=settings.connect.ca_file or None)
        self.terminals = TerminalHost(
            master_url=self.masters.current,
            shell=settings.terminal.shell,
            cwd=str(Path.home()) if Path.home().is_dir() else str(workdir.root),
            ssl_context=self._ssl,
            masters=self.masters.urls,
        )

    @property
    def master_url(self) -> str:
        """The master this worker is connected to (or dials next)."""
        return self.masters.current

    @property
    def ws_url(self) -> str:
        """The agent channel's URL on :attr:`master_url`."""
        return "ws" + self.master_url[len("http") :] + "/api/v1/agent/ws"

    # --- identity ---------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        # A planned node's claim token beats the join token: it names this very node.
        connect = self.settings.connect
        secret = self.identity.credential or connect.claim_token or connect.join_token
        if not secret:
            raise AuthError(
                "this worker has no node credential yet; give it a planned node's claim token"
                " (-claim_token or OPS_WORKER_CONNECT_CLAIM_TOKEN) or the cluster join token"
                " (-join_token or OPS_WORKER_CONNECT_JOIN_TOKEN)"
            )
        return {"Authorization": f"Bearer {secret}", "X-GDOS-Node-Id": self.identity.node_id}

    # --- package downloads ------------------------------------------------------------------

    async def download(self, path: str, dest: Path) -> None:
        """Fetch a package from the master (or a presigned URL) into ``dest``."""
        url = path if path.startswith(("http://", "https://")) else self.master_url + path
        headers = {} if path.startswith(("http://", "https://")) else self._auth_headers()
        verify: ssl.SSLContext | bool = self._ssl if self._ssl is not None else True
        try:
            async with (
                httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=120.0), verify=verify) as client,
                client.stream("GET", url, headers=headers) as response,
            ):
                if response.status_code != 200:
                    body = (await response.aread())[:300].decode(errors="replace")
                    raise TransportError(f"download failed: HTTP {response.status_code} {body}")
                with open(dest, "wb") as out:
                    async for chunk in response.aiter_bytes(256 * 1024):
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise TransportError(f"download failed: {exc}") from exc

    # --- the channel ------------------------------------------------------------------------

    def on_instance_change(self, status: InstanceStatus) -> None:
        """Report a state change now if connected; the next hello covers it otherwise."""
        ws = self.ws
        if ws is None:
            return
        self._spawn(self._send(ws, encode(InstanceEvent(status=status))))

    async def _send(self, ws: ClientConnection, text: str) -> None:
        with contextlib.suppress(WebSocketException, OSError):
            await ws.send(text)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _hello(self) -> Hello:
        assert self.supervisor is not None
        return Hello(
            protocol=PROTOCOL_VERSION,
            node_id=self.identity.node_id,
            hostname=self.settings.runtime.node_name or socket.gethostname(),
            agent_version=self.version,
            fingerprint=collect_fingerprint(),
            addresses=local_addresses(),
            instances=self.supervisor.inventory(),
        )

    async def run(self) -> None:
        """Connect, serve, and reconnect forever (until cancelled), moving between masters."""
        ping_timeout = self.settings.connect.ping_timeout
        while True:
            master = shown_url(self.master_url)
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except InvalidStatus as exc:
                self.last_error = failure_reason(exc, ping_timeout=ping_timeout)
                body = exc.response.body.decode(errors="replace")[:300] if exc.response.body else ""
                log.error("%s: %s %s", master, self.last_error, body)
            except (OSError, WebSocketException, TimeoutError, GdosError) as exc:
                self.last_error = failure_reason(exc, ping_timeout=ping_timeout)
                log.warning("agent channel to %s: %s (%s)", master, self.last_error, exc)
            finally:
                self.ws = None
                self.connected.clear()
            delay = self.masters.failed()
            following = shown_url(self.master_url)
            if following == master:
                log.info("reconnecting to %s in %.1f s", following, delay)
            else:
                log.warning(
                    "moving to master %s in %.1f s (%s: %s)",
                    following,
                    delay,
                    master,
                    self.last_error,
                )
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        settings = self.settings.connect
        url = self.ws_url
        async with connect(
            url,
            additional_headers=self._auth_headers(),
            open_timeout=10,
            # Our heartbeats tell the master we live; pings tell us the master does. A path
            # that went silent without a FIN or RST (a dead NAT entry, a cut cable) would
            # otherwise keep this socket "open" until TCP gives up, many minutes later.
            ping_interval=settings.ping_interval or None,
            ping_timeout=settings.ping_timeout or None,
            close_timeout=CLOSE_TIMEOUT,
            compression=None,  # small JSON frames: deflate costs both ends more CPU than it saves
            max_size=16 * 1024 * 1024,
            ssl=self._ssl if url.startswith("wss://") else None,
        ) as ws:
            await ws.send(encode(self._hello()))
            reply = decode(await asyncio.wait_for(ws.recv(), 15))
            if isinstance(reply, ErrorMessage):
                raise ProtocolError(f"master refused hello: {reply.message}")
            if not isinstance(reply, Welcome):
                raise ProtocolError(f"expected welcome, got {reply.type}")
            self._accept_welcome(reply)
            self._pace_pings(ws)
            self.masters.connected()
            self.terminals.master_url = self.master_url
            self.ws = ws
            self.last_error = ""
            self.connected.set()
            log.info(
                "connected to %s as node %s", shown_url(self.master_url), self.identity.node_id
            )
            beats = asyncio.get_running_loop().create_task(self._heartbeats(ws))
            try:
                async for frame in ws:
                    self._dispatch(ws, frame)
            finally:
                beats.cancel()
                with contextlib.suppress(BaseException):
                    await beats
            raise TransportError("master closed the agent channel")

    def _accept_welcome(self, welcome: Welcome) -> None:
        self.push_interval = welcome.heartbeat_interval
        changed = False
        node_id = self.identity.node_id
        credential = self.identity.credential
        if welcome.credential:
            credential, changed = welcome.credential, True
        if welcome.node_id != node_id:  # the master matched us to a planned node
            node_id, changed = welcome.node_id, True
        if changed:
            self.identity = Identity(node_id=node_id, credential=credential)
            self.workdir.save_identity(self.identity)
            if self.supervisor is not None:
                self.supervisor.node_id = node_id
        if not welcome.approved:
            log.warning("node %s is waiting for an admin's approval", node_id)

    def _pace_pings(self, ws: ClientConnection) -> None:
        """Ping every ``connect.ping_interval`` seconds, or every half push interval if longer.

        A node of a large fleet pushes less often (``fleet.heartbeat_budget``); its pings
        follow, so the master's pongs (about 65 µs of its CPU each) stay a small share of its
        work however many nodes it holds: at 10,000 nodes (15 s pushes) one ping per node
        every 7.5 s, fewer than the fixed 5 s of before. A watched node (1 s pushes) pings
        every ``ping_interval``.
        """
        configured = self.settings.connect.ping_interval
        if configured and ws.ping_interval is not None:
            ws.ping_interval = max(configured, self.push_interval / 2)

    def _dispatch(self, ws: ClientConnection, frame: str | bytes) -> None:
        try:
            message = decode(frame)
        except ProtocolError as exc:
            log.warning("bad frame from master: %s", exc.message)
            return
        if isinstance(message, Request):
            self._spawn(self._handle(ws, message))
        elif isinstance(message, Configure):
            old, self.push_interval = self.push_interval, max(0.2, message.push_interval)
            # Shorter (someone started watching): push at once. Longer (the fleet grew): the
            # master told every node at the same moment, so move to a random phase or the
            # whole fleet would push in the same second, every interval.
            self._rephase = self.push_interval > old
            self._push_now.set()
            self._pace_pings(ws)
        elif isinstance(message, ErrorMessage):
            log.warning("master reported: %s", message.message)

    async def _handle(self, ws: ClientConnection, request: Request) -> None:
        assert self.supervisor is not None
        try:
            tool = await self._answer_tool(ws, request)
            if tool is not None:
                response = tool
            elif isinstance(request.command, CandidatesCommand):
                found = await self.supervisor.candidates(request.command.adoption)
                response = Response(id=request.id, ok=True, candidates=found)
            else:
                result = await self.supervisor.execute(request.command)
                response = Response(id=request.id, ok=True, result=result)
        except GdosError as exc:
            response = Response(
                id=request.id, ok=False, error=ErrorInfo(code=exc.code, message=exc.message)
            )
        except Exception as exc:  # a bug must not kill the channel; report it
            log.exception("command %s failed", request.command.kind)
            response = Response(
                id=request.id, ok=False, error=ErrorInfo(code="internal", message=str(exc))
            )
        text = encode(response)
        if len(text) > MAX_FRAME:
            # The master would close the channel on a frame this large: say so instead.
            message = (
                f"the answer to {request.command.kind} is {len(text)} bytes, over the agent"
                f" channel's limit of {MAX_FRAME} bytes; ask for less"
            )
            log.warning("%s", message)
            error = ErrorInfo(code="too_large", message=message)
            text = encode(Response(id=request.id, ok=False, error=error))
        await self._send(ws, text)

    async def _answer_tool(self, ws: ClientConnection, request: Request) -> Response | None:
        """Answer a fleet command or a log request; None for the supervisor's commands."""
        assert self.supervisor is not None
        command = request.command
        if isinstance(command, RunCommand):
            # Output goes out in order, and all of it before the response.
            queue: asyncio.Queue[CommandOutput | None] = asyncio.Queue()

            async def pump() -> None:
                while (item := await queue.get()) is not None:
                    await self._send(ws, encode(item))

            sender = asyncio.get_running_loop().create_task(pump())
            try:
                result = await run_fleet_command(
                    command,
                    cwd=self.workdir.root,
                    executor=self.supervisor.executor,
                    emit=queue.put_nowait,
                )
            finally:
                queue.put_nowait(None)
                await sender
            return Response(id=request.id, ok=True, command_exit=result)
        if isinstance(command, TerminalOpenCommand):
            await self.terminals.open(command, self._auth_headers())
            return Response(id=request.id, ok=True)
        viewer = LogViewer(self.supervisor)
        if isinstance(command, LogListCommand):
            return Response(id=request.id, ok=True, log_files=viewer.list_files(command))
        if isinstance(command, LogReadCommand):
            return Response(id=request.id, ok=True, log_chunk=await viewer.read(command))
        if isinstance(command, LogSearchCommand):
            return Response(id=request.id, ok=True, log_search=await viewer.search(command))
        return None

    async def sample_forever(self) -> None:
        """Take a node sample and the instance samples every ``runtime.sample_interval``."""
        assert self.supervisor is not None
        interval = self.settings.runtime.sample_interval
        while True:
            began = time.monotonic()
            self._node_buffer.append(self.node_sampler.sample())
            self._instance_buffer.append(self.supervisor.samples(self.tree_sampler))
            await asyncio.sleep(max(0.05, interval - (time.monotonic() - began)))

    async def _heartbeats(self, ws: ClientConnection) -> None:
        while True:
            nodes = list(self._node_buffer)
            self._node_buffer.clear()
            instances = [s for batch in self._instance_buffer for s in batch]
            self._instance_buffer.clear()
            beat = Heartbeat(ts=time.time(), node_samples=nodes, instance_samples=instances)
            # A backlog after an outage is split so every frame stays far under MAX_FRAME.
            for frame in heartbeat_frames(beat):
                await ws.send(frame)
            self._push_now.clear()
            wait = self.push_interval
            while True:
                try:
                    await asyncio.wait_for(self._push_now.wait(), wait)
                except TimeoutError:
                    break
                self._push_now.clear()
                if not self._rephase:
                    break
                self._rephase = False
                wait = random.uniform(0.1, self.push_interval)  # noqa: S311 - a phase, not a secret

    async def close(self) -> None:
        await self.terminals.close()
        for task in list(self._tasks):
            task.cancel()
