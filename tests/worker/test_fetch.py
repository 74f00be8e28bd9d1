"""The worker's package fetch: verified, cached, retried with growing waits, then a clear error."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gdos_sdk.errors import TransportError
from gdos_sdk.protocol import InstanceSpec
from gdos_worker.state import WorkDir
from gdos_worker.supervisor import Supervisor

from .specs import instance_spec

pytestmark = pytest.mark.anyio

PACKAGE = b"PK\x05\x06" + b"\x00" * 18  # the bytes do not matter: only the digest is checked


class FlakyStore:
    """A download that fails ``failures`` times, then writes ``content``."""

    def __init__(self, failures: int, content: bytes = PACKAGE) -> None:
        self.failures = failures
        self.content = content
        self.calls: list[str] = []

    async def __call__(self, path: str, dest: Path) -> None:
        self.calls.append(path)
        if len(self.calls) <= self.failures:
            dest.write_bytes(self.content[:3])  # half a file, then the connection drops
            raise TransportError("download failed: HTTP 500")
        dest.write_bytes(self.content)


def make(tmp_path: Path, store: FlakyStore, attempts: int) -> Supervisor:
    workdir = WorkDir(tmp_path / "work")
    workdir.prepare()
    supervisor = Supervisor(
        workdir,
        None,  # type: ignore[arg-type]  # fetching spawns nothing
        node_id="n",
        download=store,
        on_change=lambda _: None,
        fetch_attempts=attempts,
        fetch_backoff=0.01,
    )
    return supervisor


def spec() -> InstanceSpec:
    return instance_spec(
        package="shop",
        version="1.0.0",
        sha256=hashlib.sha256(PACKAGE).hexdigest(),
        size=len(PACKAGE),
        download_path="/api/v1/agent/packages/shop/1.0.0",
    )


async def test_a_flaky_store_is_retried_and_the_package_cached(tmp_path: Path) -> None:
    store = FlakyStore(failures=3)
    supervisor = make(tmp_path, store, attempts=5)
    path = await supervisor._fetch(spec())
    assert path.read_bytes() == PACKAGE and len(store.calls) == 4
    assert await supervisor._fetch(spec()) == path and len(store.calls) == 4  # from the cache
    assert [p.name for p in supervisor.workdir.cache_dir.iterdir()] == [path.name]  # no temp


async def test_the_last_failure_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    store = FlakyStore(failures=10)
    supervisor = make(tmp_path, store, attempts=3)
    with pytest.raises(TransportError) as caught:
        await supervisor._fetch(spec())
    assert caught.value.message == (
        "cannot fetch package shop@1.0.0 (3 tries): download failed: HTTP 500"
    )
    assert len(store.calls) == 3
    assert list(supervisor.workdir.cache_dir.iterdir()) == []


async def test_a_wrong_digest_is_retried_like_a_failed_download(tmp_path: Path) -> None:
    store = FlakyStore(failures=0, content=b"not the package")
    supervisor = make(tmp_path, store, attempts=2)
    with pytest.raises(TransportError, match="sha256"):
        await supervisor._fetch(spec())
    assert len(store.calls) == 2 and list(supervisor.workdir.cache_dir.iterdir()) == []
