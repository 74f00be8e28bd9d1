"""One contract every storage back end keeps: run on the local disk and on MinIO (SeaweedFS)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from gdos_sdk.errors import NotFoundError, StorageError, ValidationError
from gdos_sdk.storage import ObjectInfo, Storage

from .conftest import Backend, write_random

pytestmark = pytest.mark.anyio

BAD_KEYS = ["", "/abs.zip", "../up.zip", "a/../b.zip", "a/./b.zip", "a//b.zip", "a b.zip", "dir/"]


async def read_all(storage: Storage, key: str, chunk_size: int = 256 * 1024) -> bytes:
    return b"".join([chunk async for chunk in storage.iter_bytes(key, chunk_size)])


def file_with(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def test_put_stat_read_delete(backend: Backend, tmp_path: Path) -> None:
    storage = backend.storage
    assert isinstance(storage, Storage)
    info = await storage.put_file("packages/a.zip", file_with(tmp_path / "a", b"hello"))
    assert info.key == "packages/a.zip" and info.size == 5 and info.modified > 0
    stat = await storage.stat("packages/a.zip")
    assert (stat.key, stat.size) == ("packages/a.zip", 5)
    assert await read_all(storage, "packages/a.zip") == b"hello"
    await storage.delete("packages/a.zip")
    with pytest.raises(NotFoundError):
        await storage.stat("packages/a.zip")
    await storage.delete("packages/a.zip")  # absent: not an error


async def test_overwrite_replaces_the_object(backend: Backend, tmp_path: Path) -> None:
    storage = backend.storage
    await storage.put_file("k/x.bin", file_with(tmp_path / "1", b"first version"))
    info = await storage.put_file("k/x.bin", file_with(tmp_path / "2", b"second"))
    assert info.size == 6
    assert await read_all(storage, "k/x.bin") == b"second"
    assert [o.key for o in await storage.list_objects()] == ["k/x.bin"]


async def test_missing_key_is_not_found(backend: Backend) -> None:
    storage = backend.storage
    with pytest.raises(NotFoundError):
        await storage.stat("packages/missing.zip")
    with pytest.raises(NotFoundError):
        await read_all(storage, "packages/missing.zip")
    await storage.delete("packages/missing.zip")
    assert await storage.list_objects() == []


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_invalid_key_is_rejected(backend: Backend, tmp_path: Path, key: str) -> None:
    storage = backend.storage
    source = file_with(tmp_path / "s", b"x")
    with pytest.raises(ValidationError):
        await storage.put_file(key, source)
    with pytest.raises(ValidationError):
        await storage.stat(key)
    with pytest.raises(ValidationError):
        await read_all(storage, key)
    with pytest.raises(ValidationError):
        await storage.delete(key)
    assert await storage.list_objects() == []


async def test_list_by_prefix_sorted(backend: Backend, tmp_path: Path) -> None:
    storage = backend.storage
    for key, body in [
        ("packages/b.zip", b"bb"),
        ("recordings/r.cast", b"r"),
        ("packages/a.zip", b"a"),
    ]:
        await storage.put_file(key, file_with(tmp_path / key.replace("/", "_"), body))
    listed = await storage.list_objects("packages/")
    assert [(o.key, o.size) for o in listed] == [("packages/a.zip", 1), ("packages/b.zip", 2)]
    assert all(isinstance(o, ObjectInfo) and o.modified > 0 for o in listed)
    every = [o.key for o in await storage.list_objects()]
    assert every == ["packages/a.zip", "packages/b.zip", "recordings/r.cast"]
    assert await storage.list_objects("backups/") == []


async def test_large_object_is_streamed_in_chunks(backend: Backend, tmp_path: Path) -> None:
    storage = backend.storage
    size = 20 * 1024 * 1024 + 17  # several multipart parts, not a round number
    source = write_random(tmp_path / "big", size)
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    info = await storage.put_file("packages/big.zip", source)
    assert info.size == size
    digest = hashlib.sha256()
    chunk_size = 1024 * 1024
    chunks = 0
    async for chunk in storage.iter_bytes("packages/big.zip", chunk_size):
        assert 0 < len(chunk) <= chunk_size
        digest.update(chunk)
        chunks += 1
    assert digest.hexdigest() == expected
    assert chunks >= size // chunk_size


async def test_stream_closed_early_releases_the_object(backend: Backend, tmp_path: Path) -> None:
    storage = backend.storage
    await storage.put_file("k/big", write_random(tmp_path / "big", 3 * 1024 * 1024))
    for _ in range(3):  # more than once: a leaked handle or connection would show
        stream = storage.iter_bytes("k/big", 64 * 1024)
        first = await anext(aiter(stream))
        assert len(first) <= 64 * 1024
        await stream.aclose()  # type: ignore[attr-defined]
    await storage.delete("k/big")
    assert await storage.list_objects() == []


async def test_failed_put_leaves_nothing_visible(backend: Backend, tmp_path: Path) -> None:
    storage = backend.storage
    await storage.put_file("packages/p.zip", file_with(tmp_path / "old", b"old bytes"))
    big = write_random(tmp_path / "new", 20 * 1024 * 1024)
    backend.break_writes()
    with pytest.raises(StorageError) as caught:
        await storage.put_file("packages/p.zip", big)
    assert caught.value.status == 503
    with pytest.raises(StorageError):
        await storage.put_file("packages/fresh.zip", big)
    # The old object is untouched and nothing half-written shows anywhere.
    assert await read_all(storage, "packages/p.zip") == b"old bytes"
    with pytest.raises(NotFoundError):
        await storage.stat("packages/fresh.zip")
    assert [(o.key, o.size) for o in await storage.list_objects()] == [("packages/p.zip", 9)]


async def test_presigned_url_fetches_without_credentials(backend: Backend, tmp_path: Path) -> None:
    storage = backend.storage
    await storage.put_file("packages/s.zip", file_with(tmp_path / "s", b"signed bytes"))
    url = storage.presigned_url("packages/s.zip")
    if storage.local_path("packages/s.zip") is not None:
        assert url is None  # a local disk has no URL: clients go through the master
        return
    assert url is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200 and response.content == b"signed bytes"
    tampered = url.replace("packages/s.zip", "packages/other.zip")
    async with httpx.AsyncClient() as client:
        assert (await client.get(tampered)).status_code == 403
