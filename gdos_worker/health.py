"""Running one health check: ``http``, ``tcp`` or ``cmd``, never blocking the event loop.

:func:`probe` answers ``(ok, detail)``; it never raises for a failing service
(a refused connection, a timeout, a missing program are all just "not
healthy", with the reason in ``detail``). The decision what a result means
lives in :class:`gdos_sdk.health.HealthTracker`.

``${VAR}`` in the URL and in the command's arguments is replaced from the
instance's environment, so one package can check ``http://127.0.0.1:${PORT}/``
with ``PORT`` set per module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import string
import sys
from pathlib import Path

import httpx

from gdos_sdk.errors import SpawnError
from gdos_sdk.executors.accounts import Account, switch_arguments
from gdos_sdk.manifest import HealthCheck

__all__ = ["probe"]

_DETAIL_MAX = 200


def _expand(text: str, env: dict[str, str]) -> str:
    return string.Template(text).safe_substitute(env)


async def probe(
    check: HealthCheck, *, cwd: Path, env: dict[str, str], account: Account | None = None
) -> tuple[bool, str]:
    """Run ``check`` once, bounded by its ``timeout``; return (healthy, detail).

    A ``cmd`` check runs as ``account`` (``None``: the worker's own account).

    Example::

        ok, detail = await probe(HealthCheck(type="tcp", port=8080), cwd=app, env=env)
    """
    try:
        if check.type == "http":
            return await _http(check, env)
        if check.type == "tcp":
            return await _tcp(check)
        return await _cmd(check, cwd, env, account)
    except TimeoutError:
        return False, f"{check.type} check timed out after {check.timeout:g} s"


async def _http(check: HealthCheck, env: dict[str, str]) -> tuple[bool, str]:
    assert check.url is not None
    url = _expand(check.url, env)
    try:
        async with httpx.AsyncClient(timeout=check.timeout, follow_redirects=False) as client:
            response = await client.get(url)
    except httpx.TimeoutException:
        return False, f"GET {url} timed out after {check.timeout:g} s"
    except (httpx.HTTPError, ValueError) as exc:
        return False, f"GET {url} failed: {exc or type(exc).__name__}"
    if response.status_code != check.expected_status:
        return False, f"GET {url} answered {response.status_code}, expected {check.expected_status}"
    return True, f"GET {url} answered {response.status_code}"


async def _tcp(check: HealthCheck) -> tuple[bool, str]:
    assert check.port is not None
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", check.port), check.timeout
        )
    except OSError as exc:
        return False, f"connect to port {check.port} failed: {exc.strerror or exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, f"port {check.port} accepts connections"


def _program(cwd: Path, name: str, env: dict[str, str]) -> str:
    # Imported here: the runner imports this module.
    from gdos_worker.runner import resolve_argv

    return resolve_argv(cwd, name, [], env)[0]


async def _cmd(
    check: HealthCheck, cwd: Path, env: dict[str, str], account: Account | None
) -> tuple[bool, str]:
    assert check.command
    argv = [_expand(a, env) for a in check.command]
    try:
        program = _program(cwd, argv[0], env)
        switch = switch_arguments(account, argv[0])
    except SpawnError as exc:
        return False, exc.message
    try:
        proc = await asyncio.create_subprocess_exec(
            program,
            *argv[1:],
            cwd=str(cwd) if cwd.is_dir() else None,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            **switch,
        )
    except OSError as exc:
        return False, f"cannot run {argv[0]}: {exc.strerror or exc}"
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), check.timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            if sys.platform == "win32":
                proc.kill()
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    text = output.decode(errors="replace").strip()[-_DETAIL_MAX:]
    if proc.returncode != 0:
        return False, f"{argv[0]} exited with {proc.returncode}" + (f": {text}" if text else "")
    return True, f"{argv[0]} exited with 0"
