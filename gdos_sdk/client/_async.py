"""The asyncio client: the same endpoints as :class:`~gdos_sdk.Client`, awaited."""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

import anyio
import anyio.to_thread
import httpx

from gdos_sdk.backups import BackupInfo
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
from gdos_sdk.commands import CommandRun
from gdos_sdk.errors import TransportError
from gdos_sdk.logfiles import LogChunk
from gdos_sdk.models import Instance, Me, Package
from gdos_sdk.profiles import resolve
from gdos_sdk.rollouts import Rollout

__all__ = ["AsyncClient"]

P = ParamSpec("P")
T = TypeVar("T")
_CALLS = Calls()


def _endpoint(
    factory: Callable[Concatenate[Calls, P], Call[T]],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.send(factory(_CALLS, *args, **kwargs))

    adopt_signature(method, factory, "AsyncClient")
    return method


class AsyncClient:
    """Talk to a GDOS master from asyncio code (or top-level ``await`` in Jupyter).

    The same methods, parameters and configuration as :class:`~gdos_sdk.Client`, each a
    coroutine. Its repr shows the user once it is known (after :meth:`login` or
    :meth:`me`): a repr cannot wait for the master.

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

        async with AsyncClient() as gdos:           # GDOS_URL + GDOS_TOKEN, or a profile
            nodes = await gdos.list_nodes(status="online")
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        profile: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 120.0,
        verify: bool | str | ssl.SSLContext | None = None,
        retries: int = 3,
    ) -> None:
        found = resolve(base_url, token, profile=profile, verify=verify)
        self.base_url = found.url.rstrip("/")
        headers = {"Authorization": f"Bearer {found.token}"} if found.token else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url + API_PREFIX,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=tls_verify(found.verify),
        )
        self.retry = RetryPolicy(retries=retries)
        self._csrf: str | None = None
        self._user: str | None = None
        self._user_known = not found.token  # without a token nobody is logged in yet

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (a ``with`` block does it for you).

        Returns:
            Nothing.

        Raises:
            Nothing.
        """
        await self._http.aclose()

    def _who(self) -> str | None:
        return self._user

    def __repr__(self) -> str:
        return client_repr("AsyncClient", self.base_url, self._who())

    def _repr_html_(self) -> str:
        return client_html("AsyncClient", self.base_url, self._who())

    async def _request(self, call: Call[Any], content: Any = None) -> httpx.Response:
        headers = dict(call.headers or {})
        if call.mutating and self._csrf:
            headers[CSRF_HEADER] = self._csrf
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    content=content,
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                if self.retry.retry_exception(call, exc, attempt):
                    await anyio.sleep(self.retry.delay(attempt))
                    continue
                raise map_transport_error(exc) from exc
            if self.retry.retry_response(call, response, attempt):
                await anyio.sleep(self.retry.delay(attempt, response))
                continue
            raise_for_error(response)
            return response

    async def send(self, call: Call[T]) -> T:
        """Send one :class:`~gdos_sdk.Call` and parse its answer (the generic escape hatch).

        Returns:
            What the call's ``parse`` makes of the answer.

        Raises:
            GdosError: the error the master answered with, rebuilt as its class.
        """
        return call.parse(await self._request(call))

    # --- endpoints that need more than one request description ------------------------------

    async def login(self, username: str, password: str) -> Me:
        """Log in with a user name and password; later calls use the session.

        Returns:
            Who is logged in.

        Raises:
            AuthError: wrong user name or password, or the user is disabled.
            RateLimitedError: too many failed attempts; wait and try again.
        """
        me = await self.send(_CALLS.login(username, password))
        self._csrf = me.csrf_token
        self._user, self._user_known = user_label(me), True
        return me

    async def me(self) -> Me:
        """Who the client's credential belongs to (remembered for the client's repr).

        Returns:
            The user, how they authenticated (``session`` or ``token``), their role.

        Raises:
            AuthError: no credential, or it expired or was revoked.
        """
        found = await self.send(_CALLS.me())
        self._user, self._user_known = user_label(found), True
        return found

    async def logout(self) -> None:
        """End the browser-style session started by :meth:`login`.

        Raises:
            AuthError: there is no session.
        """
        await self.send(_CALLS.logout())
        self._csrf = None
        self._user = None

    async def change_password(self, current_password: str, new_password: str) -> Me:
        """Change your own password (required first when the master generated it).

        Every browser-style session of yours ends; a client logged in with :meth:`login`
        carries on with the fresh session the master returns. API tokens stay valid.

        Returns:
            Who is logged in, with the new session's CSRF token when it is a session.

        Raises:
            AuthError: ``current_password`` is wrong.
            ValidationError: the new password is too short or the same as the old one.

        Example::

            await gdos.login("admin", printed_password)
            await gdos.change_password(printed_password, "a-new-long-password")
        """
        me = await self.send(_CALLS.change_password(current_password, new_password))
        if me.auth == "session":
            self._csrf = me.csrf_token
        return me

    async def upload_package(
        self, source: str | os.PathLike[str] | bytes | IO[bytes], *, force: bool = False
    ) -> Package:
        """Upload a package zip (a path, bytes or a binary file object) (operators).

        ``force`` replaces an existing version that has other bytes.

        Returns:
            The stored package.

        Raises:
            ManifestError: the zip or its ``service.json`` is invalid (details say where).
            ConflictError: this version exists with other bytes and ``force`` is false.
            TooLargeError: the zip is over the master's limit.

        Example::

            pkg = await gdos.upload_package("dist/web-1.2.0.zip")
        """
        call = _CALLS.upload_package(force=force)
        if isinstance(source, bytes):
            return call.parse(await self._request(call, content=source))
        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as handle:
                return call.parse(await self._request(call, content=_chunks(handle)))
        return call.parse(await self._request(call, content=_chunks(source)))

    async def download_package(self, name: str, version: str, dest: str | os.PathLike[str]) -> Path:
        """Save a package zip to ``dest``.

        Returns:
            The path written.

        Raises:
            NotFoundError: no such package version.
        """
        return await self._download(_CALLS.download_package_path(name, version), dest)

    async def upload_backup(self, source: str | os.PathLike[str] | bytes | IO[bytes]) -> BackupInfo:
        """Upload a backup archive made by another master (checked, stored, not restored).

        Returns:
            The stored backup (kind ``uploaded``).

        Raises:
            BackupError: the archive is corrupt, truncated, foreign or too new.
            ConflictError: a backup with this name exists.
            PermissionDenied: the caller is not an admin.

        Example::

            info = await gdos.upload_backup("gdos-backup-...tar.gz")
            await gdos.restore_backup(info.name)
        """
        call = _CALLS.upload_backup()
        if isinstance(source, bytes):
            return call.parse(await self._request(call, content=source))
        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as handle:
                return call.parse(await self._request(call, content=_chunks(handle)))
        return call.parse(await self._request(call, content=_chunks(source)))

    async def download_backup(self, name: str, dest: str | os.PathLike[str]) -> Path:
        """Save a backup archive to ``dest`` (admins).

        Returns:
            The path written.

        Raises:
            NotFoundError: no backup has this name.
            PermissionDenied: the caller is not an admin.
        """
        return await self._download(_CALLS.download_backup_path(name), dest)

    async def download_log(self, instance_id: str, file: str, dest: str | os.PathLike[str]) -> Path:
        """Save a whole log file of an instance to ``dest`` (operators).

        Returns:
            The path written.

        Raises:
            NotFoundError: no such instance or log file.
            ConflictError: its node is offline.
        """
        url = f"/instances/{instance_id}/logs/download"
        return await self._download(url, dest, params={"file": file})

    async def _download(
        self, url: str, dest: str | os.PathLike[str], params: dict[str, str] | None = None
    ) -> Path:
        path = Path(dest)
        try:
            async with self._http.stream("GET", url, params=params) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise_for_error(response)
                with open(path, "wb") as out:
                    async for chunk in response.aiter_bytes():
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc) from exc
        return path

    async def run_command(
        self, node_ids: list[str], command: str, *, timeout: float = 60.0, wait: bool = True
    ) -> CommandRun:
        """Run ``command`` on ``node_ids`` (admins); with ``wait``, return once all answered.

        Returns:
            The run with every node's exit code and output.

        Raises:
            NotFoundError: a node id is unknown.
            ValidationError: an empty command or node list, or a bad timeout.
            PermissionDenied: the caller is not an admin.

        Example::

            run = await gdos.run_command([node.id], "uptime", timeout=10)
            print({n.node_id: (n.exit_code, n.stdout) for n in run.nodes})
        """
        run = await self.start_command(node_ids, command, timeout=timeout)
        while wait and not run.done:
            run = await self.get_command(run.id, wait=60)
        return run

    async def follow_log(
        self, instance_id: str, file: str = "console.log", *, lines: int = 100, wait: int = 20
    ) -> AsyncIterator[LogChunk]:
        """The last ``lines`` lines, then new text as it is written (across rotations), forever.

        Returns:
            An iterator of chunks; stop iterating to stop following.

        Raises:
            NotFoundError: no such instance or log file.
            ConflictError: its node is offline.

        Example::

            async for chunk in gdos.follow_log(instance.id):
                print(chunk.text, end="")
        """
        chunk = await self.read_log(instance_id, file, lines=lines)
        yield chunk
        while True:
            chunk = await self.read_log(instance_id, file, cursor=chunk.cursor, wait=wait)
            if chunk.text:
                yield chunk

    async def follow_rollout(self, rollout_id: str, *, wait: int = 30) -> AsyncIterator[Rollout]:
        """The rollout now, then again each time it changes, until it ends (the last one).

        Each change is asked for as it happens (a long poll: ``get_rollout(after=...)``),
        so no step is missed and nothing is polled in between. Stop iterating to stop
        following; the rollout goes on.

        Returns:
            An iterator of rollouts (each a whole snapshot; ``revision`` grows).

        Raises:
            NotFoundError: no rollout has this id.

        Example::

            async for job in gdos.follow_rollout(job.id):
                print(job.state, [(i.instance_id[:8], i.state) for i in job.items])
        """
        job = await self.get_rollout(rollout_id)
        yield job
        while not job.state.ended:
            job = await self.get_rollout(rollout_id, wait=wait, after=job.revision)
            yield job

    async def wait_for_instance(
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
        instance = await self.get_instance(instance_id)
        while instance.state.value != state:
            if time.monotonic() > deadline:
                raise TransportError(
                    f"instance {instance_id} is {instance.state.value}, not {state},"
                    f" after {timeout:g} s ({instance.reason})"
                )
            await anyio.sleep(interval)
            try:
                instance = await self.get_instance(instance_id)
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
    deploy = _endpoint(Calls.deploy)
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


async def _chunks(handle: IO[bytes], size: int = 256 * 1024) -> AsyncIterator[bytes]:
    while chunk := await anyio.to_thread.run_sync(handle.read, size):
        yield chunk
