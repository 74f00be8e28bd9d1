"""The blocking client: works in scripts and Jupyter without an event loop."""

from __future__ import annotations

import io
import os
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Concatenate, Literal, ParamSpec, TypeVar

import httpx

from gdos_sdk.backups import BackupInfo
from gdos_sdk.batches import BatchJob
from gdos_sdk.client._base import (
    API_PREFIX,
    CSRF_HEADER,
    Call,
    RetryPolicy,
    adopt_signature,
    client_html,
    client_repr,
    map_transport_error,
    raise_for_error,
    tls_verify,
    user_label,
)
from gdos_sdk.client._calls import Calls
from gdos_sdk.client._live import LiveStream, iter_frames
from gdos_sdk.commands import CommandRun, NodeCommandResult
from gdos_sdk.deploywait import (
    DEFAULT_MIN_HEALTHY_TIME,
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT,
    LOG_LINES,
    POLL_INTERVAL,
    DeployWait,
    DeployWatch,
    check_wait,
)
from gdos_sdk.errors import DeployFailed, GdosError, TransportError
from gdos_sdk.follow import (
    AlertTracker,
    BatchTracker,
    CommandTracker,
    RolloutTracker,
    SampleTracker,
)
from gdos_sdk.live import (
    AlertChange,
    handshake_headers,
    live_url,
    origin_of,
    ws_ssl_context,
)
from gdos_sdk.logfiles import LogChunk
from gdos_sdk.models import Instance, InstanceSample, Me, NodeSample, Package
from gdos_sdk.profiles import resolve
from gdos_sdk.progress import ProgressArg, Reporter, reporter, upload_size
from gdos_sdk.rollouts import Rollout
from gdos_sdk.terminal_client import Terminal, TerminalNotice, terminal_link

__all__ = ["Client"]

P = ParamSpec("P")
T = TypeVar("T")
_CALLS = Calls()


def _endpoint(
    factory: Callable[Concatenate[Calls, P], Call[T]],
) -> Callable[Concatenate[Client, P], T]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.send(factory(_CALLS, *args, **kwargs))

    adopt_signature(method, factory, "Client")
    return method


class Client:
    """Talk to a GDOS master from Python: every REST operation is a method.

    Parameters:
        base_url: the master's URL, e.g. ``http://127.0.0.1:8080``. Default: ``GDOS_URL``,
            else the current profile of ``~/.config/gdos/config.toml`` (see
            :mod:`gdos_sdk.profiles`).
        token: an API token (``gdos_...``); default ``GDOS_TOKEN`` or the profile's; or
            call :meth:`login` instead.
        profile: the name of a saved profile to use (default ``GDOS_PROFILE``, else the
            file's current one).
        transport: an httpx transport (tests pass ``httpx.MockTransport`` or an ASGI one).
        timeout: seconds per request (deploys wait for the worker: keep it generous).
        verify: TLS verification: True (the system's CAs), False, a CA bundle path or an
            ``ssl.SSLContext`` (default: the profile's, else True).
        retries: how many times a request that is safe to repeat (GET, HEAD, PUT,
            DELETE) is sent again after a connection failure or a 502/503 answer, with
            jittered exponential backoff from 0.25 s; 0 turns retries off. POSTs are
            never repeated unless the call is marked safe.

    Every method may raise, besides the errors its docstring names:
    :class:`~gdos_sdk.AuthError` (no or bad credential), :class:`~gdos_sdk.PermissionDenied`
    (the role does not allow it), :class:`~gdos_sdk.ValidationError` (bad input: the
    details name the field) and :class:`~gdos_sdk.TransportError` (the master cannot be
    reached, after the retries). All derive from :class:`~gdos_sdk.GdosError`.

    Example::

        with Client() as gdos:                      # GDOS_URL + GDOS_TOKEN, or a profile
            for node in gdos.list_nodes(status="online"):
                print(node.hostname, node.latest.cpu_percent if node.latest else None)
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        profile: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 120.0,
        verify: bool | str | ssl.SSLContext | None = None,
        retries: int = 3,
    ) -> None:
        found = resolve(base_url, token, profile=profile, verify=verify)
        self.base_url = found.url.rstrip("/")
        headers = {"Authorization": f"Bearer {found.token}"} if found.token else {}
        self._verify = tls_verify(found.verify)
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=self._verify,
        )
        self.retry = RetryPolicy(retries=retries)
        self._csrf: str | None = None
        self._user: str | None = None
        self._user_known = not found.token  # without a token nobody is logged in yet

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections (a ``with`` block does it for you).

        Returns:
            Nothing.

        Raises:
            Nothing.
        """
        self._http.close()

    def _who(self) -> str | None:
        if not self._user_known:
            self._user_known = True  # ask once; a repr must not keep failing slowly
            try:
                response = self._http.get("/auth/me", timeout=2.0)
                raise_for_error(response)
                self._user = user_label(_CALLS.me().parse(response))
            except (httpx.HTTPError, GdosError):
                self._user = None
        return self._user

    def __repr__(self) -> str:
        return client_repr("Client", self.base_url, self._who())

    def _repr_html_(self) -> str:
        return client_html("Client", self.base_url, self._who())

    def _request(self, call: Call[Any], content: Any = None) -> httpx.Response:
        headers = dict(call.headers or {})
        if call.mutating and self._csrf:
            headers[CSRF_HEADER] = self._csrf
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    call.method,
                    call.url(self.base_url),
                    params=call.params,
                    json=call.json,
                    content=content,
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                if self.retry.retry_exception(call, exc, attempt):
                    time.sleep(self.retry.delay(attempt))
                    continue
                raise map_transport_error(exc) from exc
            if response.status_code in call.answers:
                return response
            if self.retry.retry_response(call, response, attempt):
                time.sleep(self.retry.delay(attempt, response))
                continue
            raise_for_error(response)
            return response

    def send(self, call: Call[T]) -> T:
        """Send one :class:`~gdos_sdk.Call` and parse its answer (the generic escape hatch).

        Returns:
            What the call's ``parse`` makes of the answer.

        Raises:
            GdosError: the error the master answered with, rebuilt as its class.
        """
        return call.parse(self._request(call))

    # --- endpoints that need more than one request description ------------------------------

    def login(self, username: str, password: str) -> Me:
        """Log in with a user name and password; later calls use the session.

        Returns:
            Who is logged in.

        Raises:
            AuthError: wrong user name or password, or the user is disabled.
            RateLimitedError: too many failed attempts; wait and try again.
        """
        me = self.send(_CALLS.login(username, password))
        self._csrf = me.csrf_token
        self._user, self._user_known = user_label(me), True
        return me

    def me(self) -> Me:
        """Who the client's credential belongs to (remembered for the client's repr).

        Returns:
            The user, how they authenticated (``session`` or ``token``), their role.

        Raises:
            AuthError: no credential, or it expired or was revoked.
        """
        found = self.send(_CALLS.me())
        self._user, self._user_known = user_label(found), True
        return found

    def logout(self) -> None:
        """End the browser-style session started by :meth:`login`.

        Raises:
            AuthError: there is no session.
        """
        self.send(_CALLS.logout())
        self._csrf = None
        self._user = None

    def change_password(self, current_password: str, new_password: str) -> Me:
        """Change your own password (required first when the master generated it).

        Every browser-style session of yours ends; a client logged in with :meth:`login`
        carries on with the fresh session the master returns. API tokens stay valid.

        Returns:
            Who is logged in, with the new session's CSRF token when it is a session.

        Raises:
            AuthError: ``current_password`` is wrong.
            ValidationError: the new password is too short or the same as the old one.

        Example::

            gdos.login("admin", printed_password)
            gdos.change_password(printed_password, "a-new-long-password")
        """
        me = self.send(_CALLS.change_password(current_password, new_password))
        if me.auth == "session":
            self._csrf = me.csrf_token
        return me

    def upload_package(
        self,
        source: str | os.PathLike[str] | bytes | IO[bytes],
        *,
        force: bool = False,
        progress: ProgressArg = None,
    ) -> Package:
        """Upload a package zip (a path, bytes or a binary file object) (operators).

        ``force`` replaces an existing version that has other bytes. ``progress``: a
        callback taking :class:`~gdos_sdk.progress.Progress` (bytes sent), or True for a
        tqdm bar.

        Returns:
            The stored package.

        Raises:
            ManifestError: the zip or its ``service.json`` is invalid (details say where).
            ConflictError: this version exists with other bytes and ``force`` is false.
            TooLargeError: the zip is over the master's limit.

        Example::

            pkg = gdos.upload_package("dist/web-1.2.0.zip", progress=True)
        """
        call = _CALLS.upload_package(force=force)
        with reporter(progress, "upload") as report:
            if isinstance(source, bytes) and not report.active:
                return call.parse(self._request(call, content=source))
            total = upload_size(source)
            if isinstance(source, str | os.PathLike):
                with open(source, "rb") as handle:
                    chunks = _chunks(handle, report=report, total=total)
                    return call.parse(self._request(call, content=chunks))
            stream: IO[bytes] = io.BytesIO(source) if isinstance(source, bytes) else source
            chunks = _chunks(stream, report=report, total=total)
            return call.parse(self._request(call, content=chunks))

    def download_package(self, name: str, version: str, dest: str | os.PathLike[str]) -> Path:
        """Save a package zip to ``dest``.

        Returns:
            The path written.

        Raises:
            NotFoundError: no such package version.
        """
        return self._download(_CALLS.download_package_path(name, version), dest)

    def upload_backup(self, source: str | os.PathLike[str] | bytes | IO[bytes]) -> BackupInfo:
        """Upload a backup archive made by another master (checked, stored, not restored).

        Returns:
            The stored backup (kind ``uploaded``).

        Raises:
            BackupError: the archive is corrupt, truncated, foreign or too new.
            ConflictError: a backup with this name exists.
            PermissionDenied: the caller is not an admin.

        Example::

            info = gdos.upload_backup("gdos-backup-...tar.gz")
            gdos.restore_backup(info.name)
        """
        call = _CALLS.upload_backup()
        if isinstance(source, bytes):
            return call.parse(self._request(call, content=source))
        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as handle:
                return call.parse(self._request(call, content=_chunks(handle)))
        return call.parse(self._request(call, content=_chunks(source)))

    def download_backup(self, name: str, dest: str | os.PathLike[str]) -> Path:
        """Save a backup archive to ``dest`` (admins).

        Returns:
            The path written.

        Raises:
            NotFoundError: no backup has this name.
            PermissionDenied: the caller is not an admin.
        """
        return self._download(_CALLS.download_backup_path(name), dest)

    def download_log(self, instance_id: str, file: str, dest: str | os.PathLike[str]) -> Path:
        """Save a whole log file of an instance to ``dest`` (operators).

        Returns:
            The path written.

        Raises:
            NotFoundError: no such instance or log file.
            ConflictError: its node is offline.
        """
        url = f"/instances/{instance_id}/logs/download"
        return self._download(url, dest, params={"file": file})

    def _download(
        self, url: str, dest: str | os.PathLike[str], params: dict[str, str] | None = None
    ) -> Path:
        path = Path(dest)
        try:
            with self._http.stream("GET", url, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise_for_error(response)
                with open(path, "wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc) from exc
        return path

    def run_command(
        self,
        node_ids: list[str],
        command: str,
        *,
        timeout: float = 60.0,
        wait: bool = True,
        progress: ProgressArg = None,
    ) -> CommandRun:
        """Run ``command`` on ``node_ids`` (admins); with ``wait``, return once all answered.

        ``progress``: a callback taking :class:`~gdos_sdk.progress.Progress` (nodes
        answered), or True for a tqdm bar; see :meth:`iter_command` for each node's
        result as it arrives.

        Returns:
            The run with every node's exit code and output.

        Raises:
            NotFoundError: a node id is unknown.
            ValidationError: an empty command or node list, or a bad timeout.
            PermissionDenied: the caller is not an admin.

        Example::

            run = gdos.run_command([node.id], "uptime", timeout=10)
            print({n.node_id: (n.exit_code, n.stdout) for n in run.nodes})
        """
        with reporter(progress, "command") as report:
            run = self.start_command(node_ids, command, timeout=timeout)
            if not wait:
                return run
            if not report.active:
                while not run.done:
                    run = self.get_command(run.id, wait=60)
                return run
            total = len(run.nodes)
            report(0, total, "node")
            for count, result in enumerate(self.follow_command(run.id), 1):
                report(count, total, "node", f"{result.node_id[:8]} {result.state.value}")
            return self.get_command(run.id)

    def iter_command(
        self, node_ids: list[str], command: str, *, timeout: float = 60.0
    ) -> Iterator[NodeCommandResult]:
        """Run ``command`` on ``node_ids`` (admins); yield each node's result as it ends.

        Like salt's ``cmd_iter``: a fast node's result comes at once, a slow one's when it
        ends; each node once, with its whole output. The iteration ends when every node
        answered. Over the live channel (a dropped socket is taken up again).

        Returns:
            An iterator of node results (``exit_code``, ``stdout``, ``stderr``, ``error``).

        Raises:
            NotFoundError: a node id is unknown.
            ValidationError: an empty command or node list, or a bad timeout.
            PermissionDenied: the caller is not an admin.

        Example::

            for result in gdos.iter_command(ids, "uname -r", timeout=10):
                print(result.node_id, result.exit_code, result.stdout.strip())
        """
        run = self.start_command(node_ids, command, timeout=timeout)
        yield from self.follow_command(run.id)

    def follow_command(self, run_id: str) -> Iterator[NodeCommandResult]:
        """Each node's result of a fleet command run as it ends, until all have (admins).

        Returns:
            An iterator of node results, each node once, with its whole output.

        Raises:
            NotFoundError: no run has this id (the master keeps the last runs only).
            PermissionDenied: the caller is not an admin.
        """
        tracker = CommandTracker()
        with self.watch(f"command:{run_id}") as stream:
            for frame in stream:
                yield from tracker.feed(frame)  # type: ignore[arg-type]
                if tracker.done:
                    return

    def run_batch(
        self,
        system_id: str,
        action: Literal["start", "stop"],
        *,
        concurrency: int = 4,
        wait_healthy: bool = True,
        tier_timeout: float = 120.0,
        min_running: float = 1.0,
        progress: ProgressArg = None,
    ) -> BatchJob:
        """Start (or stop) a system tier by tier (operators) and wait until the batch ends.

        :meth:`start_batch` with the same parameters, then wait. ``progress``: a callback
        taking :class:`~gdos_sdk.progress.Progress` (instances done), or True for a tqdm
        bar; :meth:`follow_batch` yields the job as it moves.

        Returns:
            The ended job: ``state`` ``done``, or ``failed`` with ``error`` and the items.

        Raises:
            NotFoundError: no system has this id.
            ConflictError: a batch of this system is already running.
            ValidationError: an unknown action or a bad setting.

        Example::

            job = gdos.run_batch(system.id, "start", progress=True)
            assert job.state.value == "done", job.error
        """
        with reporter(progress, f"batch {action}") as report:
            job = self.start_batch(
                system_id,
                action,
                concurrency=concurrency,
                wait_healthy=wait_healthy,
                tier_timeout=tier_timeout,
                min_running=min_running,
            )
            if not report.active:
                while job.finished_at is None:
                    job = self.get_batch(job.id, wait=600)
                return job
            for moved in self.follow_batch(job.id):
                report(*BatchTracker.progress(moved), "instance", moved.state.value)
                job = moved
            return job

    def follow_batch(self, batch_id: str) -> Iterator[BatchJob]:
        """A batch job each time it moves, until it ends (``done`` or ``failed``).

        Returns:
            An iterator of jobs; the last one has ended.

        Raises:
            NotFoundError: no batch has this id.
        """
        tracker = BatchTracker()
        with self.watch(f"batch:{batch_id}") as stream:
            for frame in stream:
                yield from tracker.feed(frame)  # type: ignore[arg-type]
                if tracker.done:
                    return

    # --- the live channel ---------------------------------------------------------------------

    def watch(self, *topics: str, reconnect: bool = True) -> LiveStream:
        """Open the live channel, subscribed to ``topics``; iterate it for typed frames.

        Topics: ``fleet``, ``nodes``, ``node:<id>``, ``instances``, ``system:<id>``,
        ``instance:<id>``, ``alerts``, ``audit`` (admins), ``command:<id>`` (admins),
        ``batch:<id>``, ``rollout:<id>``; :mod:`gdos_sdk.live` says what each frame holds.
        Each topic
        first gives a snapshot (``frame.snapshot``), then changes. With ``reconnect``, a
        dropped socket is opened again (backoff up to 5 s, for up to 5 minutes) and
        every topic starts over with a fresh snapshot.

        Returns:
            A connected :class:`~gdos_sdk.client.LiveStream` (close it, or use ``with``).

        Raises:
            ValidationError: a topic that does not exist.
            NotFoundError: the node, instance, system, run, batch or rollout named does not
                exist.
            PermissionDenied: the role does not allow a topic.

        Example::

            with gdos.watch(f"node:{node.id}") as stream:
                for frame in stream:
                    print([s.cpu_percent for s in frame.samples])
        """
        url = live_url(self.base_url)
        cookies = [(c.name, c.value or "") for c in self._http.cookies.jar]
        return LiveStream(
            url,
            handshake_headers(self._http.headers, cookies),
            ws_ssl_context(url, self._verify),
            topics,
            reconnect=reconnect,
            origin=origin_of(self.base_url) if cookies else None,
        )

    def follow_node_samples(
        self, node_id: str, *, duration: float | None = None
    ) -> Iterator[NodeSample]:
        """A node's samples as they arrive (about one a second while followed).

        The last samples the master holds come first (up to two minutes of them, when
        someone followed the node before); then each new one, once, in time order, across
        reconnects. ``duration``: stop after that many seconds (None: never).

        Returns:
            An iterator of :class:`~gdos_sdk.models.NodeSample`.

        Raises:
            NotFoundError: no node has this id.

        Example::

            for sample in gdos.follow_node_samples(node.id, duration=10):
                print(sample.cpu_percent, sample.mem_percent)
        """
        tracker = SampleTracker()
        with self.watch(f"node:{node_id}") as stream:
            for frame in iter_frames(stream, duration):
                yield from tracker.feed(frame)  # type: ignore[arg-type]

    def follow_instance_samples(
        self, instance_id: str, *, duration: float | None = None
    ) -> Iterator[InstanceSample]:
        """An instance's samples (CPU, memory, I/O of its process tree) as they arrive.

        As :meth:`follow_node_samples`, for one instance.

        Returns:
            An iterator of :class:`~gdos_sdk.models.InstanceSample`.

        Raises:
            NotFoundError: no instance has this id.
        """
        tracker = SampleTracker()
        with self.watch(f"instance:{instance_id}") as stream:
            for frame in iter_frames(stream, duration):
                yield from tracker.feed(frame)  # type: ignore[arg-type]

    def follow_alerts(self, *, duration: float | None = None) -> Iterator[AlertChange]:
        """Alerts as they change: ``pending``, ``firing``, ``resolved``, ``cancelled``.

        Changes from the first step of the iteration on, when the stream opens
        (:meth:`active_alerts` has what is active already). After a
        dropped socket, what changed meanwhile comes as changes too (an alert gone
        meanwhile as ``resolved``). ``duration``: stop after that many seconds.

        Returns:
            An iterator of :class:`~gdos_sdk.live.AlertChange` (``change`` and ``alert``).

        Raises:
            PermissionDenied: the caller may not read alerts.

        Example::

            for change in gdos.follow_alerts():
                print(change.change, change.alert.rule_name, change.alert.target_name)
        """
        tracker = AlertTracker()
        with self.watch("alerts") as stream:
            tracker.resync(self.active_alerts(), quiet=True)
            first = True
            for frame in iter_frames(stream, duration):
                changes = tracker.feed(frame)  # type: ignore[arg-type]
                if changes is None:
                    if first:
                        first = False
                        continue
                    changes = tracker.resync(self.active_alerts())
                first = False
                yield from changes

    # --- deploy and wait ----------------------------------------------------------------------

    def deploy(
        self,
        module_id: str,
        node_id: str,
        *,
        start: bool = True,
        wait: DeployWait = DEFAULT_WAIT,
        timeout: float = DEFAULT_TIMEOUT,
        min_healthy_time: float = DEFAULT_MIN_HEALTHY_TIME,
        progress: ProgressArg = None,
    ) -> Instance:
        """Deploy a module onto a node (operators); by default, wait until it is healthy.

        ``wait`` says when to return (:mod:`gdos_sdk.deploywait`):

        * ``"started"``: at once, with the master's answer: ``running``, ``deploying``
          (the worker is slow; the record follows it) or ``unknown`` (the node is offline:
          deployed when it returns);
        * ``"running"``: once the worker reports it running;
        * ``"stable"``: once it ran ``min_healthy_time`` seconds (default 5) without an
          exit or restart;
        * ``"healthy"`` (the default): stable, and its health check passed (a service
          without one: stable).

        With ``start=False`` every wait but ``"started"`` returns once it is installed
        (``stopped``). ``timeout``: seconds from the call to the state asked for.
        ``progress``: a callback taking :class:`~gdos_sdk.progress.Progress`, or True for
        a tqdm bar.

        Returns:
            The instance in the state asked for.

        Raises:
            DeployFailed: it exited, restarted, failed its health check or was stopped
                while waited for, or its node is offline; ``state``, ``reason``,
                ``exit_code`` and ``log_lines`` (the end of its console log) say why.
                The instance record stays.
            DeployTimeout: it was not there within ``timeout`` (a DeployFailed too).
            NotFoundError: no such module or node.
            ConflictError: the node is not approved.
            RemoteError: the worker could not deploy it (details say why).

        Example::

            instance = gdos.deploy(module.id, node.id)             # running and healthy
            instance = gdos.deploy(module.id, node.id, wait="started")  # fire and forget
        """
        wanted = check_wait(wait, min_healthy_time, timeout)
        deadline = time.monotonic() + timeout
        with reporter(progress, "deploy") as report:
            instance = self.send(_CALLS.deploy(module_id, node_id, start=start))
            watch = DeployWatch(wanted, start, min_healthy_time, deadline)
            try:
                while True:
                    now = time.monotonic()
                    done = watch.observe(instance, now)
                    report(watch.stable_for(now), _window(watch), "s", watch.stage)
                    if done is not None:
                        return done
                    time.sleep(POLL_INTERVAL)
                    try:
                        instance = self.get_instance(instance.id)
                    except TransportError:
                        continue
            except DeployFailed as exc:
                exc.log_lines = self._log_tail(instance.id)
                raise

    def _log_tail(self, instance_id: str) -> list[str]:
        try:
            chunk = self.read_log(instance_id, "console.log", lines=LOG_LINES)
        except GdosError:
            return []
        return chunk.text.splitlines()[-LOG_LINES:]

    def follow_log(
        self, instance_id: str, file: str = "console.log", *, lines: int = 100, wait: int = 20
    ) -> Iterator[LogChunk]:
        """The last ``lines`` lines, then new text as it is written (across rotations), forever.

        Returns:
            An iterator of chunks; stop iterating to stop following.

        Raises:
            NotFoundError: no such instance or log file.
            ConflictError: its node is offline.

        Example::

            for chunk in gdos.follow_log(instance.id):
                print(chunk.text, end="")
        """
        chunk = self.read_log(instance_id, file, lines=lines)
        yield chunk
        while True:
            chunk = self.read_log(instance_id, file, cursor=chunk.cursor, wait=wait)
            if chunk.text:
                yield chunk

    def open_terminal(
        self,
        node_id: str,
        *,
        rows: int = 24,
        cols: int = 80,
        session_id: str | None = None,
        reattach_timeout: float = 60.0,
        on_notice: Callable[[TerminalNotice], None] | None = None,
    ) -> Terminal:
        """Open a shell on a node (the web terminal; admins), or reattach to ``session_id``.

        The terminal reattaches by itself after a dropped connection, for up to
        ``reattach_timeout`` seconds; ``on_notice`` hears of each drop and reattach. See
        :mod:`gdos_sdk.terminal_client`.

        Returns:
            The open terminal: ``read``, ``write``, ``resize``, ``close``, ``detach``.

        Raises:
            NotFoundError: no node has this id (or the session ended).
            ConflictError: the node or the user has too many terminal sessions.
            PermissionDenied: the caller is not an admin.
            TransportError: the master or the node cannot be reached (node offline).

        Example::

            with gdos.open_terminal(node.id, rows=40, cols=120) as term:
                term.write("uptime; exit\r")
                while chunk := term.read():
                    print(chunk.decode(errors="replace"), end="")
        """
        link = terminal_link(
            self.base_url,
            authorization=self._http.headers.get("Authorization"),
            cookies=dict(self._http.cookies.items()),
            verify=self._verify,
        )
        return Terminal(
            link,
            node_id,
            rows=rows,
            cols=cols,
            session_id=session_id,
            reattach_timeout=reattach_timeout,
            on_notice=on_notice,
            fetch_session=self.get_terminal_session,
        )

    def follow_rollout(self, rollout_id: str) -> Iterator[Rollout]:
        """The rollout now, then again each time the master publishes a change, until it
        ends (the last one yielded has ended).

        Follows the live topic ``rollout:<id>``. Each rollout yielded is newer (a higher
        ``revision``) than the one before, each once, also across a reconnect (a dropped
        socket or a master restart brings a fresh snapshot, yielded only if it is newer).
        The master publishes at most about twice a second, so steps closer together than
        that come merged: ``revision`` may jump, and a state that lasted less than that
        may never be seen; the final state always is. Stop iterating to stop following
        (the rollout goes on); ``get_rollout(id, wait=...)`` waits for the end without a
        socket.

        Returns:
            An iterator of rollouts (each a whole snapshot).

        Raises:
            NotFoundError: no rollout has this id.
            TransportError: the master stayed unreachable for 5 minutes.

        Example::

            for job in gdos.follow_rollout(job.id):
                print(job.state, [(i.instance_id[:8], i.state) for i in job.items])
        """
        tracker = RolloutTracker()
        with self.watch(f"rollout:{rollout_id}") as stream:
            for frame in stream:
                yield from tracker.feed(frame)  # type: ignore[arg-type]
                if tracker.done:
                    return

    def wait_for_instance(
        self, instance_id: str, state: str, *, timeout: float = 30.0, interval: float = 0.2
    ) -> Instance:
        """Poll until the instance reaches ``state`` (e.g. ``running``).

        Returns:
            The instance in that state.

        Raises:
            NotFoundError: no instance has this id.
            TransportError: it was not in ``state`` after ``timeout`` seconds (the message
                says where it was, and why).
        """
        deadline = time.monotonic() + timeout
        instance = self.get_instance(instance_id)
        while instance.state.value != state:
            if time.monotonic() > deadline:
                raise TransportError(
                    f"instance {instance_id} is {instance.state.value}, not {state},"
                    f" after {timeout:g} s ({instance.reason})"
                )
            time.sleep(interval)
            try:
                instance = self.get_instance(instance_id)
            except TransportError:
                continue
        return instance

    list_users = _endpoint(Calls.list_users)
    create_user = _endpoint(Calls.create_user)
    get_user = _endpoint(Calls.get_user)
    update_user = _endpoint(Calls.update_user)
    delete_user = _endpoint(Calls.delete_user)
    list_tokens = _endpoint(Calls.list_tokens)
    create_token = _endpoint(Calls.create_token)
    revoke_token = _endpoint(Calls.revoke_token)
    list_nodes = _endpoint(Calls.list_nodes)
    get_node = _endpoint(Calls.get_node)
    update_node = _endpoint(Calls.update_node)
    plan_node = _endpoint(Calls.plan_node)
    new_claim_token = _endpoint(Calls.new_claim_token)
    approve_node = _endpoint(Calls.approve_node)
    delete_node = _endpoint(Calls.delete_node)
    list_packages = _endpoint(Calls.list_packages)
    package_versions = _endpoint(Calls.package_versions)
    get_package = _endpoint(Calls.get_package)
    get_manifest = _endpoint(Calls.get_manifest)
    delete_package = _endpoint(Calls.delete_package)
    list_systems = _endpoint(Calls.list_systems)
    create_system = _endpoint(Calls.create_system)
    get_system = _endpoint(Calls.get_system)
    update_system = _endpoint(Calls.update_system)
    delete_system = _endpoint(Calls.delete_system)
    start_system = _endpoint(Calls.start_system)
    stop_system = _endpoint(Calls.stop_system)
    start_batch = _endpoint(Calls.start_batch)
    get_batch = _endpoint(Calls.get_batch)
    list_batches = _endpoint(Calls.list_batches)
    rollout = _endpoint(Calls.rollout)
    rollback = _endpoint(Calls.rollback)
    get_rollout = _endpoint(Calls.get_rollout)
    list_rollouts = _endpoint(Calls.list_rollouts)
    pause = _endpoint(Calls.pause)
    resume = _endpoint(Calls.resume)
    promote = _endpoint(Calls.promote)
    abort = _endpoint(Calls.abort)
    list_modules = _endpoint(Calls.list_modules)
    create_module = _endpoint(Calls.create_module)
    create_adopted_module = _endpoint(Calls.create_adopted_module)
    adoption_candidates = _endpoint(Calls.adoption_candidates)
    get_module = _endpoint(Calls.get_module)
    update_module = _endpoint(Calls.update_module)
    delete_module = _endpoint(Calls.delete_module)
    list_instances = _endpoint(Calls.list_instances)
    get_instance = _endpoint(Calls.get_instance)
    start_instance = _endpoint(Calls.start_instance)
    stop_instance = _endpoint(Calls.stop_instance)
    restart_instance = _endpoint(Calls.restart_instance)
    destroy_instance = _endpoint(Calls.destroy_instance)
    start_command = _endpoint(Calls.start_command)
    get_command = _endpoint(Calls.get_command)
    list_commands = _endpoint(Calls.list_commands)
    list_log_files = _endpoint(Calls.list_log_files)
    read_log = _endpoint(Calls.read_log)
    search_log = _endpoint(Calls.search_log)
    query_range = _endpoint(Calls.query_range)
    latest = _endpoint(Calls.latest)
    master_health = _endpoint(Calls.master_health)
    ingest_status = _endpoint(Calls.ingest_status)
    list_alert_rules = _endpoint(Calls.list_alert_rules)
    create_alert_rule = _endpoint(Calls.create_alert_rule)
    get_alert_rule = _endpoint(Calls.get_alert_rule)
    replace_alert_rule = _endpoint(Calls.replace_alert_rule)
    delete_alert_rule = _endpoint(Calls.delete_alert_rule)
    active_alerts = _endpoint(Calls.active_alerts)
    alert_history = _endpoint(Calls.alert_history)
    list_silences = _endpoint(Calls.list_silences)
    create_silence = _endpoint(Calls.create_silence)
    expire_silence = _endpoint(Calls.expire_silence)
    list_receivers = _endpoint(Calls.list_receivers)
    create_receiver = _endpoint(Calls.create_receiver)
    update_receiver = _endpoint(Calls.update_receiver)
    delete_receiver = _endpoint(Calls.delete_receiver)
    test_receiver = _endpoint(Calls.test_receiver)
    list_terminal_sessions = _endpoint(Calls.list_terminal_sessions)
    get_terminal_session = _endpoint(Calls.get_terminal_session)
    get_terminal_recording = _endpoint(Calls.get_terminal_recording)
    close_terminal_session = _endpoint(Calls.close_terminal_session)
    list_audit = _endpoint(Calls.list_audit)
    get_settings = _endpoint(Calls.get_settings)
    rotate_join_token = _endpoint(Calls.rotate_join_token)
    list_backups = _endpoint(Calls.list_backups)
    create_backup = _endpoint(Calls.create_backup)
    delete_backup = _endpoint(Calls.delete_backup)
    restore_backup = _endpoint(Calls.restore_backup)
    list_orphans = _endpoint(Calls.list_orphans)
    remove_orphans = _endpoint(Calls.remove_orphans)
    get_backup_schedule = _endpoint(Calls.get_backup_schedule)
    set_backup_schedule = _endpoint(Calls.set_backup_schedule)
    health = _endpoint(Calls.health)
    openapi = _endpoint(Calls.openapi)


def _chunks(
    handle: IO[bytes],
    size: int = 256 * 1024,
    *,
    report: Reporter | None = None,
    total: int | None = None,
) -> Iterator[bytes]:
    sent = 0
    while chunk := handle.read(size):
        yield chunk
        sent += len(chunk)
        if report is not None:
            report(sent, total, "B")


def _window(watch: DeployWatch) -> float | None:
    """The progress total of a deploy wait: the stable window, when there is one."""
    return watch.min_healthy_time if watch.wait in ("stable", "healthy") else None
