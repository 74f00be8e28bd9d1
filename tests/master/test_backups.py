"""Backups through the API of an in-process master: create, restore in place, reject, schedule."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from quart import Quart

from gdos_master.app import Master, create_app
from gdos_sdk import AuthError, BackupError, NotFoundError, PermissionDenied
from gdos_sdk.backups import BackupKind
from gdos_sdk.client import AsyncClient
from gdos_sdk.config import MasterAuth, MasterDatabase, MasterServer, MasterSettings

from ..conftest import PostgresForTests
from .conftest import ADMIN_PASSWORD, client_for, token_for

pytestmark = pytest.mark.anyio


def state_of(master: Master) -> dict[str, object]:
    """Everything a restore must not touch when it refuses an archive."""
    db = master.db
    return {
        "systems": db.all("SELECT * FROM systems ORDER BY id"),
        "packages": db.all("SELECT name, version, sha256 FROM packages ORDER BY name, version"),
        "users": db.all("SELECT id, username FROM users ORDER BY id"),
        "objects": sorted(
            p.relative_to(master.settings.storage_dir).as_posix()
            for p in master.settings.storage_dir.rglob("*")
            if p.is_file()
        ),
    }


def rows(state: dict[str, object]) -> dict[str, object]:
    return {k: [tuple(r) for r in v] if k != "objects" else v for k, v in state.items()}  # type: ignore[attr-defined]


async def test_backup_change_restore_in_place(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes], tmp_path: Path
) -> None:
    kept = await admin.create_system("billing")
    doomed = await admin.create_system("shop")
    first = await admin.upload_package(make_zip("web", "1.0.0"))
    backup = await admin.create_backup()
    assert backup.kind == BackupKind.MANUAL and not backup.includes_packages
    assert [b.name for b in await admin.list_backups()] == [backup.name]

    await admin.delete_system(doomed.id)
    added = await admin.upload_package(make_zip("api", "2.0.0"))
    await admin.create_system("later")
    db_conn = master.db.conn

    result = await admin.restore_backup(backup.name)
    assert result.name == backup.name and result.schema_version >= 2
    # Same process, same connection object, restored content; the session survived.
    assert master.db.conn is db_conn
    assert sorted(s.name for s in await admin.list_systems()) == ["billing", "shop"]
    assert (await admin.get_system(kept.id)).name == "billing"
    assert [p.name for p in await admin.list_packages()] == ["web"]
    with pytest.raises(NotFoundError):
        await admin.get_package("api", "2.0.0")
    assert (await admin.get_package("web", "1.0.0")).sha256 == first.sha256
    assert added.sha256 != first.sha256

    # The audit trail is not rolled back: what happened after the snapshot is still there,
    # and the restore itself is recorded.
    actions = [e.action for e in (await admin.list_audit(limit=100)).items]
    assert "backup.restore" in actions and "system.delete" in actions
    assert "backup.create" in actions


async def test_full_backup_restores_onto_a_fresh_master_of_the_other_engine(
    admin: AsyncClient,
    make_zip: Callable[..., bytes],
    tmp_path: Path,
    db_engine: str,
    request: pytest.FixtureRequest,
) -> None:
    """SQLite to PostgreSQL (how a master moves to PostgreSQL) and back."""
    package = await admin.upload_package(make_zip("web", "1.0.0"))
    await admin.create_system("billing")
    backup = await admin.create_backup(include_packages=True)
    assert backup.includes_packages
    archive = await admin.download_backup(backup.name, tmp_path / backup.name)

    other_url = ""
    if db_engine == "sqlite":
        postgres: PostgresForTests = request.getfixturevalue("postgres")
        name, other_url = postgres.fresh()
        request.addfinalizer(lambda: postgres.drop(name))
    fresh = MasterSettings(
        server=MasterServer(data_dir=str(tmp_path / "fresh")),
        database=MasterDatabase(url=other_url),
        auth=MasterAuth(admin_password="another-password-9", join_token="other-join-token"),
    )
    app = create_app(fresh)
    async with app.test_app(), client_for(app) as other:
        await other.login("admin", "another-password-9")
        uploaded = await other.upload_backup(archive)
        assert uploaded.kind == BackupKind.UPLOADED and uploaded.includes_packages
        result = await other.restore_backup(uploaded.name)
        assert result.objects_restored == 1
        # The backup's accounts are back: this master's own admin (another id) is gone...
        with pytest.raises(AuthError):
            await other.list_systems()
        restored = client_for(app)
        # ...and the backup's admin password works.
        await restored.login("admin", ADMIN_PASSWORD)
        assert [s.name for s in await restored.list_systems()] == ["billing"]
        saved = await restored.download_package("web", "1.0.0", tmp_path / "web.zip")
        import hashlib

        assert hashlib.sha256(saved.read_bytes()).hexdigest() == package.sha256
        # The restored audit trail goes on with new ids after the restored ones.
        before = (await restored.list_audit(limit=100)).items
        await restored.create_system("later")
        newest = (await restored.list_audit(limit=1)).items[0]
        assert newest.action == "system.create" and newest.id > max(e.id for e in before)
        await restored.aclose()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def test_bad_archives_are_rejected_and_nothing_changes(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes], tmp_path: Path
) -> None:
    await admin.create_system("billing")
    backup = await admin.create_backup(include_packages=True)
    good = (await admin.download_backup(backup.name, tmp_path / "good.tar.gz")).read_bytes()
    await admin.upload_package(make_zip("web", "1.0.0"))
    before = rows(state_of(master))

    # A different but valid archive whose database member was swapped after the fact.
    with tarfile.open(fileobj=io.BytesIO(good), mode="r:gz") as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive}  # type: ignore[union-attr]
    tampered = dict(members)
    tampered["ops.db"] = members["ops.db"][:-1] + b"\x01"
    cases = {
        "truncated": (good[: len(good) // 2], "truncated or corrupt"),
        "foreign": (b"PK\x03\x04 not a backup at all" * 10, "not a .tar.gz archive"),
        "no manifest": (tar_gz({"ops.db": members["ops.db"]}), "no manifest.json"),
        "unexpected member": (tar_gz({"../../etc/passwd": b"x"}), "unexpected member"),
        "checksum": (tar_gz(tampered), "checksum mismatch in ops.db"),
        "foreign manifest": (
            tar_gz({"ops.db": b"", "manifest.json": b'{"format": "something-else"}'}),
            "not a GDOS backup",
        ),
        "plain gzip": (gzip.compress(b"hello"), "truncated or corrupt"),
    }
    for label, (data, message) in cases.items():
        with pytest.raises(BackupError, match=message) as caught:
            await admin.upload_backup(data)
        assert caught.value.status == 422, label
        assert rows(state_of(master)) == before, label
    assert [b.name for b in await admin.list_backups()] == [backup.name]
    tmp = Path(master.settings.server.data_dir) / "tmp"
    assert list(tmp.iterdir()) == []

    # A stored archive that got corrupted is refused at restore, with nothing changed.
    (master.settings.storage_dir / "backups" / backup.name).write_bytes(good[:-100])
    with pytest.raises(BackupError, match="truncated or corrupt"):
        await admin.restore_backup(backup.name)
    assert rows(state_of(master)) == before
    assert list(tmp.iterdir()) == []


async def test_only_admins_may_touch_backups(admin: AsyncClient, app: Quart) -> None:
    token = await token_for(admin, app, "operator")
    async with client_for(app, token) as operator:
        with pytest.raises(PermissionDenied):
            await operator.list_backups()
        with pytest.raises(PermissionDenied):
            await operator.create_backup()


async def test_schedule_makes_backups_and_keeps_the_retention(
    admin: AsyncClient, master: Master
) -> None:
    assert (await admin.get_backup_schedule()).interval_hours == 0  # off by default
    manual = await admin.create_backup()
    schedule = await admin.set_backup_schedule(1.0, retention=2)
    assert schedule.retention == 2
    now = [datetime(2030, 1, 1, tzinfo=UTC).timestamp()]
    master.backups.clock = lambda: now[0]
    made = []
    for _ in range(4):
        info = await master.backups.tick()
        assert info is not None
        made.append(info.name)
        assert await master.backups.tick() is None  # not due again yet
        now[0] += 3601
    names = [b.name for b in await admin.list_backups()]
    # The two newest scheduled backups, and the manual one that retention never touches.
    assert names == [made[3], made[2], manual.name]
    audit = (await admin.list_audit(actor="scheduler", limit=100)).items
    assert sorted({e.action for e in audit}) == ["backup.create", "backup.delete"]
    assert all(e.result == "ok" for e in audit)


async def test_schedule_is_validated(admin: AsyncClient) -> None:
    from gdos_sdk import ValidationError

    with pytest.raises(ValidationError, match="retention"):
        await admin.set_backup_schedule(1.0, retention=0)
    with pytest.raises(ValidationError, match="interval_hours"):
        await admin.set_backup_schedule(-1)


async def test_requests_in_flight_during_a_restore_never_fail(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    for n in range(20):
        await admin.create_system(f"s{n}")
    await admin.upload_package(make_zip("web", "1.0.0"))
    backup = await admin.create_backup(include_packages=True)
    errors: list[BaseException] = []
    seen: set[int] = set()
    done = anyio.Event()

    async def hammer(worker: int) -> None:
        n = 0
        while not done.is_set():
            n += 1
            try:
                seen.add(len(await admin.list_systems()))
                await admin.create_system(f"w{worker}-{n}")
                await admin.list_packages()
            except Exception as exc:  # any failure at all is a bug here
                errors.append(exc)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for worker in range(4):
            tg.start_soon(hammer, worker)
        await anyio.sleep(0.3)
        for _ in range(3):
            await admin.restore_backup(backup.name)
            await anyio.sleep(0.2)
        done.set()
    assert errors == []
    assert 20 in seen  # some request read the restored state
    names = {s.name for s in await admin.list_systems()}
    assert {f"s{n}" for n in range(20)} <= names
    if master.db.dialect == "sqlite":
        assert master.db.scalar("PRAGMA integrity_check") == "ok"


async def test_orphaned_objects_after_a_restore_are_listed_and_removed(
    admin: AsyncClient, app: Quart, master: Master, make_zip: Callable[..., bytes]
) -> None:
    kept = await admin.upload_package(make_zip("web", "1.0.0"))
    backup = await admin.create_backup()
    later = await admin.upload_package(make_zip("api", "2.0.0"))
    recording = "recordings/0123abcd.cast"  # a session recorded after the backup
    source = master.settings.storage_dir.parent / "rec.cast"
    source.write_bytes(b'{"version": 2}\n')
    await master.storage.put_file(recording, source)
    master.db.execute(
        'INSERT INTO terminal_sessions(id, node_id, "user", state, started_at, recording)'
        " VALUES ('0123abcd', 'n', 'admin', 'closed', 1.0, ?)",
        (recording,),
    )
    assert (await admin.list_orphans(min_age=0)).objects == []  # all referenced yet

    await admin.restore_backup(backup.name)
    stray = {f"packages/{later.sha256}.zip", recording}
    found = await admin.list_orphans(min_age=0)
    assert {o.key for o in found.objects} == stray and not found.removed
    assert found.total_bytes == sum(o.size for o in found.objects) > 0
    # Young objects are left alone by default (an upload may be between object and row).
    assert (await admin.list_orphans()).objects == []
    assert (await admin.remove_orphans()).objects == []

    for role in ("viewer", "operator"):
        async with client_for(app, await token_for(admin, app, role)) as other:
            with pytest.raises(PermissionDenied):
                await other.list_orphans(min_age=0)
            with pytest.raises(PermissionDenied):
                await other.remove_orphans(min_age=0)
    assert {o.key for o in (await admin.list_orphans(min_age=0)).objects} == stray

    swept = await admin.remove_orphans(min_age=0)
    assert swept.removed and {o.key for o in swept.objects} == stray
    assert (await admin.list_orphans(min_age=0)).objects == []
    left = {o.key for o in await master.storage.list_objects()}
    assert f"packages/{kept.sha256}.zip" in left and not stray & left
    assert any(k.startswith("backups/") for k in left)  # backups are never swept
    assert (await admin.get_package("web", "1.0.0")).sha256 == kept.sha256
    entry = (await admin.list_audit(action="storage.sweep")).items[0]
    assert entry.result == "ok" and entry.params["count"] == 2
    assert entry.params["bytes"] == swept.total_bytes and entry.params["min_age"] == 0


async def test_orphans_bad_min_age_is_refused(admin: AsyncClient) -> None:
    for bad in ("-1", "soon"):
        response = await admin._http.get("/storage/orphans", params={"min_age": bad})
        assert response.status_code == 422 and "min_age" in response.text
