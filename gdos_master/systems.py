"""Systems and their modules: the plan, separate from what runs.

A module names a package and version that must exist when the module is
created or changed, so a plan never points at nothing. Its version changes only
through a rollout (:mod:`gdos_master.rollouts`), so the plan and what its
instances run never part silently. Deleting a system or module that still has
instances is refused: destroy them first.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import attrs

from gdos_master.db import Database, Row
from gdos_sdk.adoption import AdoptionSpec
from gdos_sdk.codec import structure, unstructure
from gdos_sdk.errors import ConflictError, ManifestError, NotFoundError, ValidationError
from gdos_sdk.manifest import HealthCheck, Manifest
from gdos_sdk.models import (
    Module,
    ModuleCreate,
    ModuleKind,
    ModulePatch,
    System,
    SystemCreate,
    SystemPatch,
)
from gdos_sdk.privileges import AdminOnly, admin_only_settings, require_admin_for
from gdos_sdk.redaction import mask_env, merge_env

__all__ = ["Systems"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")


def _check_name(name: str, path: str = "$.name") -> None:
    if not _NAME.match(name):
        raise ValidationError(
            f"invalid name {name!r}: 1-64 letters, digits, space, '.', '_' or '-'",
            details=[{"path": path, "message": "invalid name"}],
        )


def _check_env(env: dict[str, str] | dict[str, str | None], path: str = "$.env") -> None:
    for key in env:
        if not _ENV_KEY.match(key):
            raise ValidationError(
                f"invalid environment variable name {key!r}",
                details=[{"path": f"{path}.{key}", "message": "invalid variable name"}],
            )


def _check_secret_env(names: list[str]) -> None:
    for i, name in enumerate(names):
        if not _ENV_KEY.match(name):
            raise ValidationError(
                f"invalid environment variable name {name!r} in secret_env",
                details=[{"path": f"$.secret_env[{i}]", "message": "invalid variable name"}],
            )


def _check_account(value: str, field: str) -> None:
    if value and not _ACCOUNT.match(value):
        raise ValidationError(
            f"{field} {value!r} is not an account name or a numeric id",
            details=[{"path": f"$.{field}", "message": "invalid account name"}],
        )


def _stored_health(module: Module) -> str | None:
    return None if module.health_check is None else json.dumps(module.health_check)


def _check_health(check: dict[str, Any]) -> str:
    """A module's health_check override, validated like service.json's; as stored."""
    try:
        HealthCheck.from_dict(check, path="$.health_check")
    except ManifestError as exc:
        raise ValidationError(exc.message, details=exc.details) from exc
    return json.dumps(check)


class Systems:
    """CRUD for systems and modules."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- systems ----------------------------------------------------------------------------

    def _system(self, row: Row) -> System:
        modules = int(
            self.db.scalar("SELECT COUNT(*) FROM modules WHERE system_id = ?", (row["id"],))
        )
        instances = int(
            self.db.scalar("SELECT COUNT(*) FROM instances WHERE system_id = ?", (row["id"],))
        )
        return System(
            id=row["id"],
            name=row["name"],
            description=row["description"],
            created_at=datetime.fromtimestamp(row["created_at"], UTC),
            module_count=modules,
            instance_count=instances,
        )

    def list_systems(self) -> list[System]:
        return [self._system(r) for r in self.db.all("SELECT * FROM systems ORDER BY name")]

    def get_system(self, system_id: str) -> System:
        row = self.db.one("SELECT * FROM systems WHERE id = ?", (system_id,))
        if row is None:
            raise NotFoundError(f"no system with id {system_id!r}")
        return self._system(row)

    def create_system(self, body: SystemCreate) -> System:
        if self.db.one("SELECT 1 FROM systems WHERE name = ?", (body.name,)):
            raise ConflictError(f"a system named {body.name!r} already exists")
        system_id = str(uuid.uuid4())
        self.db.execute(
            "INSERT INTO systems(id, name, description, created_at) VALUES(?,?,?,?)",
            (system_id, body.name, body.description, time.time()),
        )
        return self.get_system(system_id)

    def patch_system(self, system_id: str, body: SystemPatch) -> System:
        self.get_system(system_id)
        if body.name is not None:
            clash = self.db.one(
                "SELECT 1 FROM systems WHERE name = ? AND id != ?", (body.name, system_id)
            )
            if clash:
                raise ConflictError(f"a system named {body.name!r} already exists")
        with self.db.transaction():
            if body.name is not None:
                self.db.execute("UPDATE systems SET name = ? WHERE id = ?", (body.name, system_id))
            if body.description is not None:
                self.db.execute(
                    "UPDATE systems SET description = ? WHERE id = ?",
                    (body.description, system_id),
                )
        return self.get_system(system_id)

    def delete_system(self, system_id: str) -> None:
        system = self.get_system(system_id)
        if system.instance_count:
            raise ConflictError(
                f"system has {system.instance_count} instance(s); destroy them first",
                details={"instances": system.instance_count},
            )
        with self.db.transaction():
            self.db.execute("DELETE FROM modules WHERE system_id = ?", (system_id,))
            self.db.execute("DELETE FROM systems WHERE id = ?", (system_id,))

    # --- modules ----------------------------------------------------------------------------

    def _module(self, row: Row, *, reveal: bool = False) -> Module:
        """The module as stored; unless ``reveal``, with its secret env values masked."""
        secret_env = json.loads(row["secret_env"])
        env = json.loads(row["env"])
        shown, masked = (env, []) if reveal else mask_env(env, secret_env)
        return Module(
            id=row["id"],
            system_id=row["system_id"],
            name=row["name"],
            package=row["package"],
            version=row["version"],
            env=shown,
            args=None if row["args"] is None else json.loads(row["args"]),
            start_order=row["start_order"],
            created_at=datetime.fromtimestamp(row["created_at"], UTC),
            kind=ModuleKind(row["kind"]),
            adoption=None
            if row["adoption"] is None
            else structure(json.loads(row["adoption"]), AdoptionSpec),
            health_check=None if row["health_check"] is None else json.loads(row["health_check"]),
            user=row["run_user"],
            group=row["run_group"],
            secret_env=secret_env,
            masked_env=masked,
        )

    def list_modules(self, system_id: str) -> list[Module]:
        """The modules of a system as the API shows them (secret env values masked)."""
        self.get_system(system_id)
        rows = self.db.all(
            "SELECT * FROM modules WHERE system_id = ? ORDER BY start_order, name", (system_id,)
        )
        return [self._module(r) for r in rows]

    def _row(self, module_id: str) -> Row:
        row = self.db.one("SELECT * FROM modules WHERE id = ?", (module_id,))
        if row is None:
            raise NotFoundError(f"no module with id {module_id!r}")
        return row

    def get_module(self, module_id: str) -> Module:
        """The module as the API shows it: secret env values masked."""
        return self._module(self._row(module_id))

    def stored_module(self, module_id: str) -> Module:
        """The module with its real env: for the deploy command, never for an answer."""
        return self._module(self._row(module_id), reveal=True)

    # --- the role model (gdos_sdk.privileges) -----------------------------------------------

    def _manifest(self, package: str, version: str) -> dict[str, Any]:
        row = self.db.one(
            "SELECT manifest FROM packages WHERE name = ? AND version = ?", (package, version)
        )
        return {} if row is None else dict(json.loads(row["manifest"]))

    def admin_only(self, module: Module) -> list[AdminOnly]:
        """The admin-only settings of ``module`` with every package version it may run.

        That is the module's version and the versions its instances were deployed with
        (a redeploy runs those with the module's current env, args and account).
        """
        if module.kind == ModuleKind.ADOPTED:
            return admin_only_settings(
                adoption=module.adoption,
                health_check=module.health_check,
                user=module.user,
                group=module.group,
            )
        versions = {module.version} | {
            r["version"]
            for r in self.db.all(
                "SELECT DISTINCT version FROM instances WHERE module_id = ?", (module.id,)
            )
        }
        found: list[AdminOnly] = []
        for version in sorted(versions):
            for item in admin_only_settings(
                manifest=self._manifest(module.package, version),
                health_check=module.health_check,
                user=module.user,
                group=module.group,
            ):
                if item not in found:
                    found.append(item)
        return found

    def check_package_replacement(self, manifest: Manifest) -> None:
        """Refuse (403) new bytes for a version that would make a module using it privileged.

        For a caller below admin: a module running ``name@version`` then runs what that
        caller uploaded, so the new manifest must not need an admin for any of them.
        """
        rows = self.db.all(
            "SELECT * FROM modules WHERE package = ? AND (version = ? OR id IN"
            " (SELECT module_id FROM instances WHERE package = ? AND version = ?))",
            (manifest.name, manifest.version, manifest.name, manifest.version),
        )
        new = manifest.to_dict()
        for row in rows:
            module = self._module(row)
            found = admin_only_settings(
                manifest=new,
                health_check=module.health_check,
                user=module.user,
                group=module.group,
            )
            require_admin_for(
                found,
                what=f"replacing {manifest.name}@{manifest.version}, which module"
                f" {module.name!r} runs,",
            )

    def _require_package(self, package: str, version: str) -> None:
        if not self.db.one(
            "SELECT 1 FROM packages WHERE name = ? AND version = ?", (package, version)
        ):
            raise ValidationError(
                f"package {package}@{version} has not been uploaded",
                details=[{"path": "$.version", "message": f"no package {package}@{version}"}],
            )

    def create_module(self, system_id: str, body: ModuleCreate, *, admin: bool = True) -> Module:
        """Add a module; ``admin``: the caller may choose admin-only settings."""
        self.get_system(system_id)
        _check_name(body.name)
        _check_env(body.env)
        _check_secret_env(body.secret_env)
        _check_account(body.user, "user")
        _check_account(body.group, "group")
        health = None if body.health_check is None else _check_health(body.health_check)
        if body.kind == ModuleKind.ADOPTED:
            if body.adoption is None:
                raise ValidationError(
                    "an adopted module needs an adoption spec",
                    details=[{"path": "$.adoption", "message": "required for kind adopted"}],
                )
            body.adoption.check()
            body = attrs.evolve(body, package="", version="")
        else:
            if body.adoption is not None:
                raise ValidationError(
                    "only an adopted module has an adoption spec",
                    details=[{"path": "$.adoption", "message": "set kind to adopted"}],
                )
            self._require_package(body.package, body.version)
        if self.db.one(
            "SELECT 1 FROM modules WHERE system_id = ? AND name = ?", (system_id, body.name)
        ):
            raise ConflictError(f"the system already has a module named {body.name!r}")
        module_id = str(uuid.uuid4())
        planned = Module(
            id=module_id,
            system_id=system_id,
            name=body.name,
            package=body.package,
            version=body.version,
            kind=body.kind,
            adoption=body.adoption,
            health_check=body.health_check,
            user=body.user,
            group=body.group,
        )
        if not admin:
            require_admin_for(self.admin_only(planned))
        self.db.execute(
            "INSERT INTO modules(id, system_id, name, package, version, env, args, start_order,"
            " created_at, kind, adoption, health_check, run_user, run_group, secret_env)"
            " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                module_id,
                system_id,
                body.name,
                body.package,
                body.version,
                json.dumps(body.env),
                None if body.args is None else json.dumps(body.args),
                body.start_order,
                time.time(),
                body.kind.value,
                None if body.adoption is None else json.dumps(unstructure(body.adoption)),
                health,
                body.user,
                body.group,
                json.dumps(body.secret_env),
            ),
        )
        return self.get_module(module_id)

    def patch_module(self, module_id: str, body: ModulePatch, *, admin: bool = True) -> Module:
        """Change a module; ``admin``: the caller may choose admin-only settings.

        Below admin, a module that needs an admin after the change (see
        :mod:`gdos_sdk.privileges`) is refused, except for a change of its order alone.
        """
        module = self.stored_module(module_id)
        if body.adoption is not None:
            if module.kind != ModuleKind.ADOPTED:
                raise ValidationError(
                    "only an adopted module has an adoption spec",
                    details=[{"path": "$.adoption", "message": "not an adopted module"}],
                )
            body.adoption.check()
        if body.version is not None and module.kind == ModuleKind.ADOPTED:
            raise ValidationError(
                "an adopted module has no package version",
                details=[{"path": "$.version", "message": "not a package module"}],
            )
        if body.version is not None and body.version != module.version:
            raise ConflictError(
                f"a module's version changes through a rollout, so that its instances follow:"
                f' POST /api/v1/modules/{module_id}/rollouts {{"version": "{body.version}"}}'
                f" (Python: gdos.rollout(module_id, {body.version!r})); see docs/rollouts.md",
                details=[{"path": "$.version", "message": "changed only by a rollout"}],
            )
        if body.env is not None:
            _check_env(body.env)
        if body.secret_env is not None:
            _check_secret_env(body.secret_env)
        for field in ("user", "group"):
            value = getattr(body, field)
            if value is not None:
                _check_account(value, field)
        health = (
            _check_health(body.health_check) if body.health_check else None
        )  # {} clears the override
        secret_env = module.secret_env if body.secret_env is None else body.secret_env
        env = module.env if body.env is None else merge_env(module.env, body.env, secret_env)
        after = attrs.evolve(
            module,
            version=module.version if body.version is None else body.version,
            env=env,
            args=module.args if body.args is None else body.args,
            adoption=module.adoption if body.adoption is None else body.adoption,
            health_check=module.health_check
            if body.health_check is None
            else (body.health_check or None),
            user=module.user if body.user is None else body.user,
            group=module.group if body.group is None else body.group,
            secret_env=secret_env,
        )
        only_order = attrs.evolve(body, start_order=None) == ModulePatch()
        if not admin and not only_order:
            require_admin_for(self.admin_only(after), what="changing this module")
        with self.db.transaction():
            self.db.execute(
                "UPDATE modules SET version = ?, env = ?, args = ?, adoption = ?,"
                " health_check = ?, run_user = ?, run_group = ?, secret_env = ? WHERE id = ?",
                (
                    after.version,
                    json.dumps(after.env),
                    None if after.args is None else json.dumps(after.args),
                    None if after.adoption is None else json.dumps(unstructure(after.adoption)),
                    health if body.health_check is not None else _stored_health(module),
                    after.user,
                    after.group,
                    json.dumps(after.secret_env),
                    module_id,
                ),
            )
            if body.start_order is not None:
                self.db.execute(
                    "UPDATE modules SET start_order = ? WHERE id = ?",
                    (body.start_order, module_id),
                )
        return self.get_module(module_id)

    def set_version(self, module_id: str, version: str) -> None:
        """The version a rollout moves the module to (the plan for new instances too)."""
        self.db.execute("UPDATE modules SET version = ? WHERE id = ?", (version, module_id))

    def delete_module(self, module_id: str) -> None:
        self.get_module(module_id)
        count = int(
            self.db.scalar("SELECT COUNT(*) FROM instances WHERE module_id = ?", (module_id,))
        )
        if count:
            raise ConflictError(
                f"module has {count} instance(s); destroy them first", details={"instances": count}
            )
        self.db.execute("DELETE FROM modules WHERE id = ?", (module_id,))
