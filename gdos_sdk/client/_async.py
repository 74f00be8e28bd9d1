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
    Calls,
    map_transport_error,
    raise_for_error,
    tls_verify,
)
from gdos_sdk.commands import CommandRun
from gdos_sdk.errors import TransportError
from gdos_sdk.logfiles import LogChunk
from gdos_sdk.models import Instance, Me, Package

__all__ = ["AsyncClient"]

P = ParamSpec("P")
T = TypeVar("T")
_CALLS = Calls()


def _endpoint(
    factory: Callable[Concatenate[Calls, P], Call[T]],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.send(factory(_CALLS, *args, **kwargs))

    method.__name__ = factory.__name__
    method.__doc__ = factory.__doc__
    return method


class AsyncClient:
    """Talk to a GDOS master from asyncio code (or top-level ``await`` in Jupyter).

    Parameters:
        base_url: the master's URL, e.g. ``http://127.0.0.1:8080``.
        token: an API token (``gdos_...``); or call :meth:`login` instead.
        transport: an httpx transport (tests pass ``httpx.MockTransport`` or an ASGI one).
        timeout: seconds per request (deploys wait for the worker: keep it generous).
        verify: check the master's certificate (default, against the system's CAs), a CA
            bundle file or an ``ssl.SSLContext`` to check it against, or False (do not).

    Example::

        async with AsyncClient("http://127.0.0.1:8080", token=token) as gdos:
            nodes = await gdos.list_nodes()
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 120.0,
        verify: bool | str | ssl.SSLContext = True,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + API_PREFIX,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=tls_verify(verify),
        )
        self._csrf: str | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, call: Call[Any], content: Any = None) -> httpx.Response:
        headers = dict(call.headers or {})
        if call.mutating and self._csrf:
            headers[CSRF_HEADER] = self._csrf
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
            raise map_transport_error(exc) from exc
        raise_for_error(response)
        return response

    async def send(self, call: Call[T]) -> T:
        """Send one :class:`Call` and parse its answer (the generic escape hatch)."""
        return call.parse(await self._request(call))

    # --- endpoints that need more than one request description ------------------------------

    async def login(self, username: str, password: str) -> Me:
        """Log in with a user name and password; later calls use the session."""
        me = await self.send(_CALLS.login(username, password))
        self._csrf = me.csrf_token
        return me

    async def logout(self) -> None:
        """End the browser-style session started by :meth:`login`."""
        await self.send(_CALLS.logout())
        self._csrf = None

    async def change_password(self, current_password: str, new_password: str) -> Me:
        """Change your own password (required first when the master generated it).

        Every browser-style session of yours ends; a client logged in with :meth:`login`
        carries on with the fresh session the master returns. API tokens stay valid.

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
        """Upload a package zip (a path, bytes or a binary file object).

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
        """Save a package zip to ``dest``; returns the path."""
        path = Path(dest)
        try:
            async with self._http.stream(
                "GET", _CALLS.download_package_path(name, version)
            ) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise_for_error(resp)
                with open(path, "wb") as out:
                    async for chunk in resp.aiter_bytes():
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc) from exc
        return path

    async def upload_backup(self, source: str | os.PathLike[str] | bytes | IO[bytes]) -> BackupInfo:
        """Upload a backup archive made by another master (checked, stored, not restored).

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
        """Save a backup archive to ``dest``; returns the path."""
        path = Path(dest)
        try:
            async with self._http.stream("GET", _CALLS.download_backup_path(name)) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise_for_error(resp)
                with open(path, "wb") as out:
                    async for chunk in resp.aiter_bytes():
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc) from exc
        return path

    async def run_command(
        self, node_ids: list[str], command: str, *, timeout: float = 60.0, wait: bool = True
    ) -> CommandRun:
        """Run ``command`` on ``node_ids``; with ``wait``, return once every node answered.

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
        """The last ``lines`` lines, then new text as it is written (across rotations), forever."""
        chunk = await self.read_log(instance_id, file, lines=lines)
        yield chunk
        while True:
            chunk = await self.read_log(instance_id, file, cursor=chunk.cursor, wait=wait)
            if chunk.text:
                yield chunk

    async def download_log(self, instance_id: str, file: str, dest: str | os.PathLike[str]) -> Path:
        """Save a whole log file to ``dest``."""
        path = Path(dest)
        url = f"/instances/{instance_id}/logs/download"
        try:
            async with self._http.stream("GET", url, params={"file": file}) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise_for_error(response)
                with open(path, "wb") as out:
                    async for chunk in response.aiter_bytes():
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc) from exc
        return path

    async def wait_for_instance(
        self, instance_id: str, state: str, *, timeout: float = 30.0, interval: float = 0.2
    ) -> Instance:
        """Poll until the instance reaches ``state``; TransportError after ``timeout``."""
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

    me = _endpoint(Calls.me)
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
