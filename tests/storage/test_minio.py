"""What only the MinIO back end has: lazy bucket, TLS, presigning, credentials, a dying server."""

from __future__ import annotations

import ssl
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

from gdos_sdk.errors import ConfigError, NotFoundError, StorageError
from gdos_sdk.storage import MinioStorage
from gdos_sdk.testing import free_port

from .conftest import TlsFiles, unique_bucket, write_random
from .seaweed import SeaweedFS

pytestmark = pytest.mark.anyio


def down_storage(**options: Any) -> MinioStorage:
    """A storage whose server is not there (nothing listens on the port)."""
    return MinioStorage(
        f"127.0.0.1:{free_port()}",
        access_key="k",
        secret_key="s",
        bucket="gdos",
        retries=0,
        **options,
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"endpoint": "http://127.0.0.1:9000"}, "host:port"),
        ({"endpoint": ""}, "host:port"),
        ({"access_key": ""}, "minio_access_key"),
        ({"bucket": "No_Such Bucket"}, "minio_bucket"),
        ({"presign_expiry": timedelta(days=8)}, "presign_expiry"),
        ({"part_size": 1024}, "part_size"),
    ],
)
def test_bad_configuration_is_a_config_error(options: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "endpoint": "127.0.0.1:9000",
        "access_key": "k",
        "secret_key": "s",
        "bucket": "gdos",
        **options,
    }
    with pytest.raises(ConfigError, match=message):
        MinioStorage(args.pop("endpoint"), **args)


async def test_unreachable_server_is_a_storage_error_not_a_crash(tmp_path: Path) -> None:
    storage = down_storage()  # constructing contacts nothing, so a master still starts
    source = tmp_path / "x"
    source.write_bytes(b"x")
    for call in (
        lambda: storage.put_file("packages/x.zip", source),
        lambda: storage.stat("packages/x.zip"),
        lambda: storage.list_objects(),
        lambda: storage.delete("packages/x.zip"),
    ):
        with pytest.raises(StorageError, match="unreachable") as caught:
            await call()
        assert caught.value.status == 503 and caught.value.code == "storage_unavailable"
        assert storage.endpoint in caught.value.message
    with pytest.raises(StorageError):
        async for _ in storage.iter_bytes("packages/x.zip"):
            pass
    await storage.close()


def test_presigning_is_local_and_honours_the_expiry() -> None:
    storage = down_storage(presign_expiry=timedelta(seconds=90))
    url = storage.presigned_url("packages/abc.zip")
    assert url is not None
    parts = urlsplit(url)
    assert parts.scheme == "http" and parts.path == "/gdos/packages/abc.zip"
    assert parse_qs(parts.query)["X-Amz-Expires"] == ["90"]
    secure = down_storage(secure=True)
    assert str(secure.presigned_get("k/x", timedelta(hours=2))).startswith("https://")
    assert down_storage(presign_expiry=None).presigned_url("packages/abc.zip") is None
    with pytest.raises(ConfigError):
        storage.presigned_get("k/x", timedelta(days=30))


async def test_bucket_is_created_on_first_upload(seaweed: SeaweedFS, tmp_path: Path) -> None:
    bucket = unique_bucket()
    storage = seaweed.storage(bucket)
    assert not storage._client.bucket_exists(bucket)
    assert await storage.list_objects() == []  # a missing bucket holds nothing
    with pytest.raises(NotFoundError):
        await storage.stat("packages/a.zip")
    source = tmp_path / "a"
    source.write_bytes(b"abc")
    await storage.put_file("packages/a.zip", source)
    assert storage._client.bucket_exists(bucket)
    # A second storage on the same, now existing, bucket just uses it.
    other = seaweed.storage(bucket)
    await other.put_file("packages/b.zip", source)
    assert [o.key for o in await other.list_objects()] == ["packages/a.zip", "packages/b.zip"]


async def test_presigned_url_expires(seaweed: SeaweedFS, tmp_path: Path) -> None:
    storage = seaweed.storage(unique_bucket())
    source = tmp_path / "a"
    source.write_bytes(b"abc")
    await storage.put_file("packages/a.zip", source)
    # Two URLs, so that a slow machine cannot turn "valid" into "expired" between signing and
    # fetching: a long-lived one that works, and a one-second one that is refused once its
    # time has passed (signatures carry whole seconds, hence the margin).
    lasting = storage.presigned_get("packages/a.zip", timedelta(hours=1))
    short = storage.presigned_get("packages/a.zip", timedelta(seconds=1))
    async with httpx.AsyncClient() as client:
        assert (await client.get(lasting)).content == b"abc"
        await anyio.sleep(2.5)
        expired = await client.get(short)
        assert expired.status_code == 403
        assert b"expired" in expired.content
        assert (await client.get(lasting)).content == b"abc"


async def test_wrong_credentials_are_a_storage_error(seaweed: SeaweedFS) -> None:
    storage = MinioStorage(
        seaweed.endpoint, access_key=seaweed.access_key, secret_key="wrong", bucket="gdos"
    )
    with pytest.raises(StorageError) as caught:
        await storage.stat("packages/a.zip")
    assert caught.value.details["code"] in {"AccessDenied", "SignatureDoesNotMatch"}


async def test_tls(seaweed: SeaweedFS, tls_files: TlsFiles | None, tmp_path: Path) -> None:
    if tls_files is None:
        pytest.skip("needs the openssl tool to make a certificate")
    storage = seaweed.storage(unique_bucket())
    secure = MinioStorage(
        seaweed.https_endpoint,
        access_key=seaweed.access_key,
        secret_key=seaweed.secret_key,
        bucket=storage.bucket,
        secure=True,
        ca_file=str(tls_files.cert),
    )
    source = tmp_path / "a"
    source.write_bytes(b"over tls")
    await secure.put_file("packages/a.zip", source)
    assert b"".join([c async for c in secure.iter_bytes("packages/a.zip")]) == b"over tls"
    url = secure.presigned_url("packages/a.zip")
    assert url is not None and url.startswith("https://")
    trust = ssl.create_default_context(cafile=str(tls_files.cert))
    async with httpx.AsyncClient(verify=trust) as client:
        assert (await client.get(url)).content == b"over tls"
    untrusting = MinioStorage(
        seaweed.https_endpoint,
        access_key=seaweed.access_key,
        secret_key=seaweed.secret_key,
        bucket=storage.bucket,
        secure=True,
        retries=0,
    )
    with pytest.raises(StorageError, match="CERTIFICATE_VERIFY_FAILED"):
        await untrusting.stat("packages/a.zip")


async def test_aborted_multipart_upload_leaves_no_upload_behind(
    seaweed: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .conftest import _break_minio

    storage = seaweed.storage(unique_bucket())
    big = write_random(tmp_path / "big", 20 * 1024 * 1024)
    calls: list[int] = []
    original = storage._client._upload_part

    def counting(*args: Any) -> Any:
        calls.append(args[5])
        return original(*args)

    monkeypatch.setattr(storage._client, "_upload_part", counting)
    _break_minio(storage, monkeypatch)
    with pytest.raises(StorageError, match="connection reset"):
        await storage.put_file("packages/big.zip", big)
    assert calls == [1]  # part 1 reached the server; part 2 failed
    uploads = storage._client._list_multipart_uploads(storage.bucket)
    assert not uploads.uploads
    assert await storage.list_objects() == []


async def test_server_dies_mid_upload_then_recovers(
    own_seaweed: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = own_seaweed.storage(unique_bucket())
    big = write_random(tmp_path / "big", 20 * 1024 * 1024)
    await storage.put_file("packages/small.zip", write_random(tmp_path / "small", 10))
    original = storage._client._upload_part

    def crash_before_part_two(*args: Any) -> Any:
        if args[5] == 2:
            own_seaweed.kill()
        return original(*args)

    with monkeypatch.context() as patch:
        patch.setattr(storage._client, "_upload_part", crash_before_part_two)
        started = time.monotonic()
        with pytest.raises(StorageError, match="unreachable"):
            await storage.put_file("packages/big.zip", big)
        assert time.monotonic() - started < 15  # fails promptly, not after minutes
    own_seaweed.start()
    # The same storage object (no master restart) works again; nothing half-written shows.
    with pytest.raises(NotFoundError):
        await storage.stat("packages/big.zip")
    assert [o.key for o in await storage.list_objects()] == ["packages/small.zip"]
    info = await storage.put_file("packages/big.zip", big)
    assert info.size == big.stat().st_size


def test_master_settings_select_the_back_end(tmp_path: Path) -> None:
    from gdos_master.app import _make_storage
    from gdos_sdk.config import load_master_settings

    flags = ["-data_dir", str(tmp_path), "-store_type", "minio", "-minio_endpoint", "s3:9000"]
    keys = {"OPS_MASTER_STORAGE_MINIO_ACCESS_KEY": "k", "OPS_MASTER_STORAGE_MINIO_SECRET_KEY": "s"}
    settings = load_master_settings(
        flags, env={**keys, "OPS_MASTER_STORAGE_PRESIGN_EXPIRY": "42"}, cwd=tmp_path
    )
    storage = _make_storage(settings)
    assert isinstance(storage, MinioStorage) and storage.bucket == "gdos"
    url = storage.presigned_url("packages/a.zip")
    assert url is not None and parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["42"]

    via_master = load_master_settings(
        flags, env={**keys, "OPS_MASTER_STORAGE_WORKER_FETCH": "master"}, cwd=tmp_path
    )
    assert _make_storage(via_master).presigned_url("packages/a.zip") is None
    local = load_master_settings(["-data_dir", str(tmp_path)], env={}, cwd=tmp_path)
    assert _make_storage(local).presigned_url("packages/a.zip") is None

    with pytest.raises(ConfigError, match="worker_fetch"):
        load_master_settings(flags, env={"OPS_MASTER_STORAGE_WORKER_FETCH": "direct"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="presign_expiry"):
        load_master_settings(flags, env={"OPS_MASTER_STORAGE_PRESIGN_EXPIRY": "0"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="minio_access_key"):
        _make_storage(load_master_settings(flags, env={}, cwd=tmp_path))
