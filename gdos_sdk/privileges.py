"""Which settings of a module only an admin may choose (the role model: docs/security.md).

An operator deploys, starts and stops services: the code of a package runs on a
node as the worker's ``runtime.default_user`` (an unprivileged account). Some
settings reach further than that, and only an admin may choose them:

* ``user`` / ``group`` (the module's or the package manifest's): the account a
  service runs as. The master cannot tell what a named account may do on a
  node (``root``, ``postgres`` reads the database, members of ``docker``,
  ``disk`` or ``sudo`` become root), so picking one at all is an admin's call;
* an adopted module's ``command``, ``start_command``, ``stop_command`` and
  ``restart_command``: shell lines of the caller's choosing, run on the node
  outside any package (adopting a system service usually needs ``user: root``);
* an adopted module's ``log_paths``: files of the host the log viewer may read;
* a package's ``log_paths`` outside the package folder (absolute, or climbing
  out with ``..``), for the same reason;
* a ``cmd`` health check (the module's override or the manifest's): a program
  the worker runs beside the service.

A module whose effective settings include any of these is *privileged*. Only an
admin may create one, change one (anything but its ``start_order``), make a
module privileged, or replace the bytes of a package version a privileged module
uses. Deploying, starting, stopping and destroying its instances stays with
operators: they run only what an admin approved.

Pure: it reads the settings it is given, no I/O.

Example::

    found = admin_only_settings(manifest={"name": "x", "version": "1",
                                          "entrypoint": "run", "log_paths": ["/etc/shadow"]})
    found[0].path   # "$.manifest.log_paths[0]"
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import attrs

from gdos_sdk.adoption import AdoptionSpec
from gdos_sdk.errors import PermissionDenied

__all__ = ["AdminOnly", "admin_only_settings", "escapes_folder", "require_admin_for"]

_COMMANDS = ("command", "start_command", "stop_command", "restart_command")


@attrs.frozen
class AdminOnly:
    """One setting that needs the admin role: where it is and what it allows."""

    path: str
    reason: str


def escapes_folder(path: str) -> bool:
    """True for an absolute path or a relative one that climbs out with ``..``.

    Example::

        escapes_folder("logs/app.log")      # False
        escapes_folder("logs/../../x.log")  # True
    """
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute():
        return True
    depth = 0
    for part in re.split(r"[\\/]", path):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def admin_only_settings(
    *,
    manifest: Mapping[str, Any] | None = None,
    adoption: AdoptionSpec | None = None,
    health_check: Mapping[str, Any] | None = None,
    user: str = "",
    group: str = "",
) -> list[AdminOnly]:
    """Every admin-only setting of one module, as field paths with the reason.

    Parameters:
        manifest: the ``service.json`` of the package version (None: adopted module).
        adoption: the adoption spec of an adopted module.
        health_check: the module's health check override; it replaces the manifest's.
        user, group: the module's account override; they replace the manifest's.

    Example::

        admin_only_settings(user="root")  # [AdminOnly("$.user", ...)]
    """
    found: list[AdminOnly] = []
    manifest = manifest or {}
    if user:
        found.append(AdminOnly("$.user", f"runs the service as the account {user!r}"))
    elif manifest.get("user"):
        found.append(
            AdminOnly("$.manifest.user", f"runs the service as the account {manifest['user']!r}")
        )
    if group:
        found.append(AdminOnly("$.group", f"runs the service with the group {group!r}"))
    elif manifest.get("group"):
        found.append(
            AdminOnly("$.manifest.group", f"runs the service with the group {manifest['group']!r}")
        )
    if adoption is not None:
        for field in _COMMANDS:
            if getattr(adoption, field).strip():
                found.append(
                    AdminOnly(f"$.adoption.{field}", "runs a shell command of your choosing")
                )
        for i, path in enumerate(adoption.log_paths):
            found.append(
                AdminOnly(f"$.adoption.log_paths[{i}]", f"lets the log viewer read {path}")
            )
    for i, path in enumerate(_strings(manifest.get("log_paths"))):
        if escapes_folder(path):
            found.append(
                AdminOnly(
                    f"$.manifest.log_paths[{i}]",
                    f"lets the log viewer read {path}, outside the package folder",
                )
            )
    if health_check:  # an override replaces the manifest's check ({} or None: no override)
        if health_check.get("type") == "cmd":
            found.append(AdminOnly("$.health_check", "runs a command as a health check"))
    else:
        check = manifest.get("health_check")
        if isinstance(check, Mapping) and check.get("type") == "cmd":
            found.append(AdminOnly("$.manifest.health_check", "runs a command as a health check"))
    return found


def require_admin_for(found: Sequence[AdminOnly], *, what: str = "this module") -> None:
    """Raise :class:`PermissionDenied` (403) listing ``found``, if there is anything.

    Example::

        if not principal.role.allows(Role.ADMIN):
            require_admin_for(admin_only_settings(user=body.user))
    """
    if not found:
        return
    listed = "; ".join(f"{item.path} ({item.reason})" for item in found)
    raise PermissionDenied(
        f"{what} needs the admin role: {listed}",
        details=[{"path": item.path, "message": f"admin only: {item.reason}"} for item in found],
    )


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
