"""Systems and their modules: the plan, separate from what runs.

A module names a package and version that must exist when the module is
created or changed, so a plan never points at nothing. Deleting a system or
module that still has instances is refused: destroy them first.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import attrs

from gdos_master.db import Database
from gdos_sdk.adoption import AdoptionSpec
from gdos_sdk.codec import structure, unstructure
from gdos_sdk.errors import ConflictError, ManifestError, NotFoundError, ValidationError
from gdos_sdk.manifest import HealthCheck
from gdos_sdk.models import (
    Module,
    ModuleCreate,
    ModuleKind,
    ModulePatch,
    System,
    SystemCreate,
    SystemPatch,
)

__all__ = ["Systems"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_name(name: str, path: str = "$.name") -> None:
    if not _NAME.match(name):
        raise ValidationError(
            f"invalid name {name!r}: 1-64 letters, digits, space, '.', '_' or '-'",
            details=[{"path": path, "message": "invalid name"}],
        )


def _check_env(env: dict[str, str]) -> None:
    for key in env:
        if not _ENV_KEY.match(key):
            raise ValidationError(
                f"invalid environment variable name {key!r}",
                details=[{"path": f"$.env.{key}", "message": "invalid variable name"}],
            )


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

    def _system(self, row: sqlite3.Row) -> System:
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
        _check_name(body.name)
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
            _check_name(body.name)
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

    def _module(self, row: sqlite3.Row) -> Module:
        return Module(
            id=row["id"],
            system_id=row["system_id"],
            name=row["name"],
            package=row["package"],
            version=row["version"],
            env=json.loads(row["env"]),
            args=None if row["args"] is None else json.loads(row["args"]),
            start_order=row["start_order"],
            created_at=datetime.fromtimestamp(row["created_at"], UTC),
            kind=ModuleKind(row["kind"]),
            adoption=None
            if row["adoption"] is None
            else structure(json.loads(row["adoption"]), AdoptionSpec),
            health_check=None if row["health_check"] is None else json.loads(row["health_check"]),
        )

    def list_modules(self, system_id: str) -> list[Module]:
        self.get_system(system_id)
        rows = self.db.all(
            "SELECT * FROM modules WHERE system_id = ? ORDER BY start_order, name", (system_id,)
        )
        return [self._module(r) for r in rows]

    def get_module(self, module_id: str) -> Module:
        row = self.db.one("SELECT * FROM modules WHERE id = ?", (module_id,))
        if row is None:
            raise NotFoundError(f"no module with id {module_id!r}")
        return self._module(row)

    def _require_package(self, package: str, version: str) -> None:
        if not self.db.one(
            "SELECT 1 FROM packages WHERE name = ? AND version = ?", (package, version)
        ):
            raise ValidationError(
                f"package {package}@{version} has not been uploaded",
                details=[{"path": "$.version", "message": f"no package {package}@{version}"}],
            )

    def create_module(self, system_id: str, body: ModuleCreate) -> Module:
        self.get_system(system_id)
        _check_name(body.name)
        _check_env(body.env)
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
        self.db.execute(
            "INSERT INTO modules(id, system_id, name, package, version, env, args, start_order,"
            " created_at, kind, adoption, health_check) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
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
            ),
        )
        return self.get_module(module_id)

    def patch_module(self, module_id: str, body: ModulePatch) -> Module:
        module = self.get_module(module_id)
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
        if body.version is not None:
            self._require_package(module.package, body.version)
        if body.env is not None:
            _check_env(body.env)
        health = (
            _check_health(body.health_check) if body.health_check else None
        )  # {} clears the override
        with self.db.transaction():
            if body.version is not None:
                self.db.execute(
                    "UPDATE modules SET version = ? WHERE id = ?", (body.version, module_id)
                )
            if body.env is not None:
                self.db.execute(
                    "UPDATE modules SET env = ? WHERE id = ?", (json.dumps(body.env), module_id)
                )
            if body.args is not None:
                self.db.execute(
                    "UPDATE modules SET args = ? WHERE id = ?", (json.dumps(body.args), module_id)
                )
            if body.adoption is not None:
                self.db.execute(
                    "UPDATE modules SET adoption = ? WHERE id = ?",
                    (json.dumps(unstructure(body.adoption)), module_id),
                )
            if body.health_check is not None:
                self.db.execute(
                    "UPDATE modules SET health_check = ? WHERE id = ?", (health, module_id)
                )
            if body.start_order is not None:
                self.db.execute(
                    "UPDATE modules SET start_order = ? WHERE id = ?",
                    (body.start_order, module_id),
                )
        return self.get_module(module_id)

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
