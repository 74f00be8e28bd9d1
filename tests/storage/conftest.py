"""Storage back ends under test: the local disk and MinIO on a real SeaweedFS server."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import urllib3

from gdos_sdk.storage import LocalStorage, MinioStorage, Storage
from gdos_sdk.storage import local as local_module

from .seaweed import SeaweedFS


@attrs.frozen
class TlsFiles:
    cert: Path
    key: Path


def make_tls_files(folder: Path) -> TlsFiles | None:
    """A self-signed certificate for 127.0.0.1, or None without the openssl tool."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return TlsFiles(cert=cert, key=key)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles | None:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def seaweed(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles | None
) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the storage tests (HTTP, plus HTTPS when openssl exists)."""
    server = SeaweedFS(
        tmp_path_factory.mktemp("seaweedfs"),
        tls=(tls_files.cert, tls_files.key) if tls_files else None,
    )
    try:
        server.start()
        yield server
    finally:
        server.kill()  # its data is thrown away: no need to wait for a graceful stop


@pytest.fixture
def own_seaweed(tmp_path: Path) -> Iterator[SeaweedFS]:
    """A SeaweedFS of this test alone, which it may kill and restart."""
    server = SeaweedFS(tmp_path / "seaweedfs")
    try:
        server.start()
        yield server
    finally:
        server.kill()  # its data is thrown away: no need to wait for a graceful stop


def unique_bucket() -> str:
    return f"gdos-{uuid.uuid4().hex[:12]}"


@attrs.define
class Backend:
    """A storage under test and a switch that makes its next writes fail midway."""

    storage: Storage
    break_writes: Callable[[], None]


def _break_local(monkeypatch: pytest.MonkeyPatch) -> None:
    def replace(src: Any, dst: Any) -> None:
        # The temporary file is complete; the crash hits the final rename.
        raise OSError(errno.EIO, "injected I/O error", str(dst))

    monkeypatch.setattr(local_module.os, "replace", replace)


def _break_minio(storage: MinioStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    # The connection drops while a later part of a multipart upload is sent:
    # the first part is on the server, the upload is open, the client must abort.
    original = storage._client._upload_part

    def upload_part(*args: Any, **kwargs: Any) -> Any:
        part_number = args[5] if len(args) > 5 else kwargs["part_number"]
        if part_number >= 2:
            raise urllib3.exceptions.ProtocolError("injected: connection reset by peer")
        return original(*args, **kwargs)

    monkeypatch.setattr(storage._client, "_upload_part", upload_part)


@pytest.fixture(params=["local", "minio"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Backend]:
    storage: Storage
    if request.param == "local":
        storage = LocalStorage(tmp_path / "storage")
        found = Backend(storage, lambda: _break_local(monkeypatch))
    else:
        server: SeaweedFS = request.getfixturevalue("seaweed")
        minio = server.storage(unique_bucket())
        storage = minio
        found = Backend(storage, lambda: _break_minio(minio, monkeypatch))
    try:
        yield found
    finally:
        await storage.close()


def write_random(path: Path, size: int) -> Path:
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 1024 * 1024))
            out.write(block)
            remaining -= len(block)
    return path
