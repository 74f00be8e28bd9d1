"""The POSIX PTY with real shells (pywinpty's WindowsPty cannot run here; mypy checks it)."""

from __future__ import annotations

import asyncio
import os
import re
import sys

import psutil
import pytest

from gdos_sdk.errors import SpawnError
from gdos_sdk.pty import TERM, PtySpec, default_shell, open_pty, pty_env

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX PTY"),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _read_until(pty: object, text: bytes, timeout: float = 10.0) -> bytes:
    seen = b""
    async with asyncio.timeout(timeout):
        while text not in seen:
            chunk = await pty.read()  # type: ignore[attr-defined]
            assert chunk, f"terminal ended before {text!r}; saw {seen!r}"
            seen += chunk
    return seen


async def test_shell_echoes_resizes_and_reports_its_exit_code() -> None:
    pty = open_pty(PtySpec(argv=["/bin/sh", "-i"], rows=24, cols=80, env=pty_env()))
    try:
        await pty.write(b"echo term=$TERM sum=$((20+22))\n")
        await _read_until(pty, f"term={TERM} sum=42".encode())
        await pty.write(b"stty size\n")
        await _read_until(pty, b"24 80")
        pty.resize(50, 132)
        await pty.write(b"stty size\n")
        await _read_until(pty, b"50 132")
        await pty.write(b"exit 7\n")
        async with asyncio.timeout(10):
            while await pty.read():
                pass
        assert await pty.wait() == 7  # type: ignore[attr-defined]
    finally:
        await pty.close()


async def test_close_hangs_up_the_shell_and_its_children() -> None:
    pty = open_pty(PtySpec(argv=["/bin/sh", "-i"]))
    await pty.write(b"sleep 300 & echo child=$! done\n")
    seen = b""
    while (found := re.search(rb"child=(\d+) done", seen)) is None:
        seen += await _read_until(pty, b"done")
    child = int(found.group(1))
    assert psutil.pid_exists(child)
    await pty.close()
    assert pty.exit_code() is not None
    assert await pty.read() == b""

    def gone() -> bool:
        try:
            return psutil.Process(child).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    async with asyncio.timeout(5):
        while not gone():  # noqa: ASYNC110 - polling the OS
            await asyncio.sleep(0.05)


async def test_bulk_output_is_read_completely() -> None:
    pty = open_pty(PtySpec(argv=["/bin/sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x"]))
    total = 0
    async with asyncio.timeout(20):
        while chunk := await pty.read():
            total += chunk.count(b"x")
    assert total == 1_000_000
    await pty.close()


def test_missing_program_is_a_spawn_error() -> None:
    with pytest.raises(SpawnError):
        open_pty(PtySpec(argv=["/nonexistent/shell"]))


def test_default_shell_is_an_executable_login_shell() -> None:
    argv = default_shell()
    assert os.access(argv[0], os.X_OK) and argv[1:] == ["-l"]
    env = pty_env({"PATH": "/bin", "OPS_WORKER_CONNECT_JOIN_TOKEN": "secret"})
    assert env["TERM"] == TERM and "OPS_WORKER_CONNECT_JOIN_TOKEN" not in env
