"""``gdos-master migrate-storage``: copy every stored object to another back end, verified.

Packages, recordings and backups are copied key by key from the configured back end (or
``-from``) to ``-to``. Each object is read once while its SHA-256 is computed (a package
key ``packages/<sha256>.zip`` must match its own name, so a damaged source object is found
and reported, never copied), written to the destination whole (the storage contract), then
read back from the destination and compared. An object already at the destination with the
same digest is skipped, so the command is idempotent and resumes after an interruption: run
it again until it reports no failure, then switch ``storage.type``.

Example::

    gdos-master migrate-storage -to minio -minio_endpoint s3:9000 \\
        -minio_access_key gdos -minio_secret_key ... -minio_bucket gdos
"""

from __future__ import annotations

import hashlib
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import attrs

from gdos_master import __version__
from gdos_sdk.config import MasterSettings, load_master_settings
from gdos_sdk.errors import GdosError, NotFoundError
from gdos_sdk.flaghelp import HELP_FLAGS, VERSION_FLAGS, Flag, has_flag, render_help
from gdos_sdk.storage import Storage

__all__ = ["MigrationReport", "main", "migrate_storage"]

_PACKAGE_KEY = re.compile(r"^packages/([0-9a-f]{64})\.zip$")
BACKENDS = ("local", "minio")


@attrs.define
class MigrationReport:
    """What a migration did, object by object."""

    copied: int = 0
    present: int = 0
    bytes_copied: int = 0
    failed: list[tuple[str, str]] = attrs.field(factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


async def _digest(storage: Storage, key: str, copy_to: Path | None = None) -> tuple[str, int]:
    """SHA-256 and size of a stored object, optionally keeping a copy in ``copy_to``."""
    digest = hashlib.sha256()
    size = 0
    out = open(copy_to, "wb") if copy_to is not None else None  # noqa: SIM115 - closed below
    try:
        async for chunk in storage.iter_bytes(key):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                await anyio.to_thread.run_sync(out.write, chunk)
    finally:
        if out is not None:
            out.close()
    return digest.hexdigest(), size


async def _copy_one(source: Storage, dest: Storage, key: str, tmp: Path) -> tuple[bool, int]:
    """Copy and verify one object; return (copied, bytes). GdosError names a failure."""
    local = source.local_path(key)
    staged = None if local is not None else tmp / "object"
    digest, size = await _digest(source, key, staged)
    expected = _PACKAGE_KEY.match(key)
    if expected is not None and expected[1] != digest:
        raise GdosError(f"the source object is damaged: its sha256 is {digest}")
    try:
        there = await dest.stat(key)
    except NotFoundError:
        there = None
    if there is not None and there.size == size and (await _digest(dest, key))[0] == digest:
        return False, 0
    await dest.put_file(key, local or tmp / "object")
    copied, _ = await _digest(dest, key)
    if copied != digest:
        raise GdosError(f"verification failed: the destination holds sha256 {copied}")
    return True, size


async def migrate_storage(
    source: Storage, dest: Storage, *, tmp_dir: Path, say: Callable[[str], None] = print
) -> MigrationReport:
    """Copy every object of ``source`` to ``dest``, verifying digests; see the module docstring."""
    report = MigrationReport()
    objects = await source.list_objects()
    say(f"{len(objects)} object(s) in {source.name} storage")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for obj in objects:
        with tempfile.TemporaryDirectory(prefix="migrate-", dir=tmp_dir) as work:
            try:
                copied, size = await _copy_one(source, dest, obj.key, Path(work))
            except GdosError as exc:
                report.failed.append((obj.key, exc.message))
                say(f"FAILED  {obj.key}: {exc.message}")
                continue
        if copied:
            report.copied += 1
            report.bytes_copied += size
            say(f"copied  {obj.key} ({size} bytes, sha256 verified)")
        else:
            report.present += 1
            say(f"present {obj.key} (same sha256 at the destination)")
    return report


def _split(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """Take ``-to``/``-from`` (one or two dashes, ``=`` or a separate value) out of ``args``."""
    found: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        name = args[i].lstrip("-")
        value: str | None = None
        if "=" in name:
            name, value = name.split("=", 1)
        if args[i].startswith("-") and name in {"to", "from"}:
            if value is None:
                if i + 1 >= len(args):
                    raise GdosError(f"-{name} needs a value: local or minio")
                value = args[i + 1]
                i += 1
            found[name] = value
        else:
            rest.append(args[i])
        i += 1
    return found, rest


PROG = "gdos-master migrate-storage"


def help_text() -> str:
    """``gdos-master migrate-storage --help``, from the settings definitions."""
    return render_help(
        MasterSettings,
        prog=PROG,
        summary="Copy every stored object (packages, recordings, backups) from the configured"
        " storage back end, or -from, to -to, verifying each object's SHA-256. Run it again"
        " until it reports no failure, then restart the master with -store_type set to the"
        " new back end. The other flags and settings are the master's, and say where each"
        " back end is.",
        usage=["-to local|minio [-from local|minio] [FLAGS]"],
        env_prefix="OPS_MASTER_",
        default_file="config.yaml",
        flags=(
            Flag("to", "local|minio", "the back end to copy to (required)"),
            Flag("from", "local|minio", "the back end to copy from [default storage.type]"),
            Flag(
                "config", "FILE", "YAML file read instead of ./config.yaml; env OPS_MASTER_CONFIG"
            ),
        ),
        footer=f"gdos-master {__version__}. Docs: backups.md in the docs/ folder of the source.",
    )


def main(argv: Sequence[str]) -> int:
    """``gdos-master migrate-storage -to local|minio [-from local|minio] [master flags]``."""
    from gdos_master.app import _make_storage as make_storage

    args = list(argv)
    if has_flag(args, HELP_FLAGS):
        print(help_text(), end="")
        return 0
    if has_flag(args, VERSION_FLAGS):
        print(f"gdos-master {__version__}")
        return 0
    try:
        chosen, rest = _split(args)
        settings = load_master_settings(rest, other_flags=("to", "from", "help", "version"))
        if "to" not in chosen:
            raise GdosError("say where to: -to minio (or -to local)")
        origin = chosen.get("from", settings.storage.type)
        target = chosen["to"]
        for value in (origin, target):
            if value not in BACKENDS:
                raise GdosError(f"unknown storage back end {value!r}; use local or minio")
        if origin == target:
            raise GdosError(
                f"source and destination are both {origin}; name the other one with -to/-from"
            )
        source = make_storage(_with_type(settings, origin))
        dest = make_storage(_with_type(settings, target))
    except GdosError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return 2

    async def run() -> MigrationReport:
        try:
            return await migrate_storage(
                source, dest, tmp_dir=Path(settings.server.data_dir) / "tmp"
            )
        finally:
            await source.close()
            await dest.close()

    try:
        report = anyio.run(run)
    except GdosError as exc:  # listing the source failed: nothing was copied
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return 1
    print(
        f"done: {report.copied} copied ({report.bytes_copied} bytes), {report.present} already"
        f" present, {len(report.failed)} failed"
    )
    if report.failed:
        print("some objects were not migrated; fix the cause and run the command again")
        return 1
    print(f"all objects are in {target} storage: restart the master with -store_type {target}")
    return 0


def _with_type(settings: MasterSettings, kind: str) -> MasterSettings:
    return attrs.evolve(settings, storage=attrs.evolve(settings.storage, type=kind))
