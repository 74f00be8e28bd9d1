"""Package upload: validation, limits, conflicts, versions; bad input writes nothing."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gdos_master.app import Master
from gdos_sdk import ConflictError, ManifestError, NotFoundError, TooLargeError, ValidationError
from gdos_sdk.client import AsyncClient

pytestmark = pytest.mark.anyio


def nothing_written(master: Master) -> None:
    assert master.db.scalar("SELECT COUNT(*) FROM packages") == 0
    stored = [p for p in master.settings.storage_dir.rglob("*") if p.is_file()]
    assert stored == []
    tmp = Path(master.settings.server.data_dir) / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


GOOD = {"name": "demo", "version": "1.0.0", "entrypoint": "run.sh"}


async def test_upload_list_versions_download_delete(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes], tmp_path: Path
) -> None:
    for version in ["1.2.9", "1.10.0", "1.2.10", "1.0.0-rc.1", "1.0.0"]:
        package = await admin.upload_package(make_zip(version=version))
        assert package.version == version and len(package.sha256) == 64
    summary = await admin.list_packages()
    assert [s.name for s in summary] == ["demo"]
    assert summary[0].versions == ["1.10.0", "1.2.10", "1.2.9", "1.0.0", "1.0.0-rc.1"]
    assert summary[0].latest == "1.10.0"
    versions = await admin.package_versions("demo")
    assert [p.version for p in versions] == summary[0].versions
    manifest = await admin.get_manifest("demo", "1.2.10")
    assert manifest["entrypoint"] == "run.sh"
    target = await admin.download_package("demo", "1.2.10", tmp_path / "dl.zip")
    import hashlib

    assert hashlib.sha256(target.read_bytes()).hexdigest() == versions[1].sha256
    await admin.delete_package("demo", "1.2.10")
    with pytest.raises(NotFoundError):
        await admin.get_package("demo", "1.2.10")


async def test_same_bytes_again_is_idempotent_other_bytes_conflict(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    data = make_zip()
    first = await admin.upload_package(data)
    again = await admin.upload_package(data)
    assert again.sha256 == first.sha256
    other = make_zip(description="changed")
    with pytest.raises(ConflictError) as caught:
        await admin.upload_package(other)
    assert "already exists" in caught.value.message
    assert (await admin.get_package("demo", "1.0.0")).sha256 == first.sha256
    forced = await admin.upload_package(other, force=True)
    assert forced.sha256 != first.sha256
    objects = [p for p in master.settings.storage_dir.rglob("*.zip")]
    assert len(objects) == 1  # the replaced object is gone


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ({"service.json": json.dumps(GOOD).encode(), "../evil.sh": b"x"}, ".."),
        ({"service.json": json.dumps(GOOD).encode(), "/etc/evil": b"x"}, "absolute"),
        ({"run.sh": b"x"}, "service.json"),
        ({"service.json": json.dumps({"name": "demo", "version": "1.0.0"}).encode()}, "entrypoint"),
        ({"service.json": json.dumps({**GOOD, "entrypont": "x"}).encode()}, "entrypoint"),
        ({"service.json": b"{not json"}, "JSON"),
    ],
    ids=["zip-slip", "absolute", "no-manifest", "no-entrypoint", "misspelt", "bad-json"],
)
async def test_bad_packages_are_refused_and_nothing_is_written(
    admin: AsyncClient, master: Master, entries: dict[str, bytes], expected: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        await admin.upload_package(zip_of(entries))
    assert caught.value.status == 422
    assert expected.lower() in (caught.value.message + json.dumps(caught.value.details)).lower()
    nothing_written(master)


async def test_misspelt_field_suggests_the_right_one(admin: AsyncClient) -> None:
    data = zip_of({"service.json": json.dumps({**GOOD, "stop_timout": 3}).encode()})
    with pytest.raises(ManifestError) as caught:
        await admin.upload_package(data)
    assert "stop_timeout" in caught.value.message


async def test_not_a_zip(admin: AsyncClient, master: Master) -> None:
    with pytest.raises(ValidationError):
        await admin.upload_package(b"this is not a zip file at all")
    nothing_written(master)


async def test_zip_bomb_is_refused(admin: AsyncClient, master: Master) -> None:
    bomb = zip_of({"service.json": json.dumps(GOOD).encode(), "zeros.bin": b"\0" * (64 << 20)})
    assert len(bomb) < 200_000
    with pytest.raises((TooLargeError, ManifestError)) as caught:
        await admin.upload_package(bomb)
    assert caught.value.status in (413, 422)
    nothing_written(master)


async def test_upload_over_the_size_limit(settings, tmp_path: Path) -> None:
    import attrs

    from gdos_master.app import create_app
    from gdos_sdk.config import MasterStorage

    from .conftest import ADMIN_PASSWORD, client_for

    small = attrs.evolve(settings, storage=MasterStorage(max_package_bytes=10_000))
    app = create_app(small)
    master: Master = app.extensions["gdos"]
    async with app.test_app(), client_for(app) as admin:
        await admin.login("admin", ADMIN_PASSWORD)
        big = zip_of({"service.json": json.dumps(GOOD).encode(), "noise.bin": os.urandom(20_000)})
        with pytest.raises(TooLargeError) as caught:
            await admin.upload_package(big)
        assert caught.value.status == 413 and "10000" in caught.value.message

        # Without Content-Length (chunked) the limit holds while streaming.
        with pytest.raises(TooLargeError):
            await admin.upload_package(io.BytesIO(big))
        nothing_written(master)
    await master.close()


async def test_package_in_use_cannot_be_deleted(
    admin: AsyncClient, make_zip: Callable[..., bytes]
) -> None:
    await admin.upload_package(make_zip())
    system = await admin.create_system("s")
    await admin.create_module(system.id, "web", "demo", "1.0.0")
    with pytest.raises(ConflictError) as caught:
        await admin.delete_package("demo", "1.0.0")
    assert "module" in caught.value.message
