"""What both clients share: every endpoint as a request description, and response parsing.

No I/O happens here. Each method returns a :class:`Call` (method, path,
query, body and how to parse the answer); :class:`~gdos_sdk.Client` sends it
with a blocking ``httpx.Client`` and :class:`~gdos_sdk.AsyncClient` with an
``httpx.AsyncClient``. So an endpoint is described once and both clients
stay in step.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Generic, Literal, TypeVar

import attrs
import httpx

from gdos_sdk.adoption import AdoptionSpec, ProcessCandidate
from gdos_sdk.backups import (
    BackupInfo,
    BackupRequest,
    BackupSchedule,
    RestoreResult,
    StorageSweep,
)
from gdos_sdk.batches import BatchJob, BatchRequest
from gdos_sdk.codec import structure, unstructure
from gdos_sdk.commands import CommandRequest, CommandRun
from gdos_sdk.errors import GdosError, TransportError, error_from_body
from gdos_sdk.logfiles import LogChunk, LogCursor, LogFile, LogSearch
from gdos_sdk.models import (
    ApiToken,
    AuditEntry,
    DeployRequest,
    Instance,
    JoinToken,
    LoginRequest,
    Me,
    Module,
    ModuleCreate,
    ModuleKind,
    ModulePatch,
    Node,
    NodePatch,
    Package,
    PackageSummary,
    Page,
    PasswordChange,
    PlannedNodeCreate,
    Role,
    Settings,
    System,
    SystemActionResult,
    SystemCreate,
    SystemPatch,
    TokenCreate,
    TokenCreated,
    User,
    UserCreate,
    UserPatch,
)
from gdos_sdk.terminal import TerminalSession

__all__ = ["API_PREFIX", "CSRF_HEADER", "Call", "Calls", "map_transport_error", "raise_for_error"]

T = TypeVar("T")

API_PREFIX = "/api/v1"
CSRF_HEADER = "X-CSRF-Token"


@attrs.frozen
class Call(Generic[T]):
    """One HTTP request and how to turn its response into a ``T``."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] | None = None

    @property
    def mutating(self) -> bool:
        return self.method not in {"GET", "HEAD", "OPTIONS"}


def tls_verify(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    """``verify`` as httpx takes it: a CA bundle path becomes an SSL context."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def raise_for_error(response: httpx.Response) -> None:
    """Turn a master error response into the matching :class:`GdosError`."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    raise error_from_body(response.status_code, body)


def map_transport_error(exc: httpx.HTTPError) -> GdosError:
    """httpx's network errors become :class:`TransportError` (translated once, here)."""
    return TransportError(f"cannot reach the master: {exc}")


def _model(cls: Any) -> Callable[[httpx.Response], Any]:
    def parse(response: httpx.Response) -> Any:
        return structure(response.json(), cls, what="response")

    return parse


def _none(response: httpx.Response) -> None:
    return None


def _text(response: httpx.Response) -> str:
    return response.text


def _json(response: httpx.Response) -> Any:
    return response.json()


def _clean(**params: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


class Calls:
    """Every endpoint of the master API as a :class:`Call` factory."""

    # --- auth -------------------------------------------------------------------------------

    def login(self, username: str, password: str) -> Call[Me]:
        body = unstructure(LoginRequest(username=username, password=password))
        return Call("POST", "/auth/login", _model(Me), json=body)

    def logout(self) -> Call[None]:
        return Call("POST", "/auth/logout", _none)

    def me(self) -> Call[Me]:
        return Call("GET", "/auth/me", _model(Me))

    def change_password(self, current_password: str, new_password: str) -> Call[Me]:
        body = PasswordChange(current_password=current_password, new_password=new_password)
        return Call("POST", "/auth/password", _model(Me), json=unstructure(body))

    # --- users and tokens -------------------------------------------------------------------

    def list_users(self) -> Call[list[User]]:
        return Call("GET", "/users", _model(list[User]))

    def create_user(self, username: str, password: str, role: Role | str) -> Call[User]:
        body = UserCreate(username=username, password=password, role=Role(role))
        return Call("POST", "/users", _model(User), json=unstructure(body))

    def get_user(self, user_id: str) -> Call[User]:
        return Call("GET", f"/users/{user_id}", _model(User))

    def update_user(
        self,
        user_id: str,
        *,
        role: Role | str | None = None,
        password: str | None = None,
        disabled: bool | None = None,
    ) -> Call[User]:
        patch = UserPatch(role=Role(role) if role else None, password=password, disabled=disabled)
        body = {k: v for k, v in unstructure(patch).items() if v is not None}
        return Call("PATCH", f"/users/{user_id}", _model(User), json=body)

    def delete_user(self, user_id: str) -> Call[None]:
        return Call("DELETE", f"/users/{user_id}", _none)

    def list_tokens(self) -> Call[list[ApiToken]]:
        return Call("GET", "/tokens", _model(list[ApiToken]))

    def create_token(
        self, name: str, *, role: Role | str | None = None, expires_in_days: int | None = None
    ) -> Call[TokenCreated]:
        body = TokenCreate(
            name=name, role=Role(role) if role else None, expires_in_days=expires_in_days
        )
        return Call("POST", "/tokens", _model(TokenCreated), json=unstructure(body))

    def revoke_token(self, token_id: str) -> Call[ApiToken]:
        return Call("DELETE", f"/tokens/{token_id}", _model(ApiToken))

    # --- nodes ------------------------------------------------------------------------------

    def list_nodes(
        self, *, status: str | None = None, search: str | None = None
    ) -> Call[list[Node]]:
        return Call(
            "GET", "/nodes", _model(list[Node]), params=_clean(status=status, search=search)
        )

    def get_node(self, node_id: str) -> Call[Node]:
        return Call("GET", f"/nodes/{node_id}", _model(Node))

    def update_node(
        self, node_id: str, *, alias: str | None = None, labels: dict[str, str] | None = None
    ) -> Call[Node]:
        body = {
            k: v
            for k, v in unstructure(NodePatch(alias=alias, labels=labels)).items()
            if v is not None
        }
        return Call("PATCH", f"/nodes/{node_id}", _model(Node), json=body)

    def plan_node(
        self,
        hostname: str,
        *,
        alias: str = "",
        addresses: list[str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> Call[Node]:
        """Register a node before its worker joins (admin).

        The answer's ``claim_token`` is shown this once: give it to the worker
        (``-claim_token`` / ``OPS_WORKER_CONNECT_CLAIM_TOKEN``) and it takes this node,
        its id and its queued instances. A worker with only the join token and the
        same hostname waits for :meth:`approve_node`, which then hands it this node.
        """
        body = PlannedNodeCreate(
            hostname=hostname, alias=alias, addresses=addresses or [], labels=labels or {}
        )
        return Call("POST", "/nodes", _model(Node), json=unstructure(body))

    def new_claim_token(self, node_id: str) -> Call[Node]:
        """A new one-time claim token for a planned node (admin); the old one stops working.

        The answer's ``claim_token`` is shown this once.
        """
        return Call("POST", f"/nodes/{node_id}/claim-token", _model(Node))

    def approve_node(self, node_id: str) -> Call[Node]:
        """Approve a pending node (admin); one that matched a planned node takes it over."""
        return Call("POST", f"/nodes/{node_id}/approve", _model(Node))

    def delete_node(self, node_id: str, *, force: bool = False) -> Call[None]:
        return Call("DELETE", f"/nodes/{node_id}", _none, params=_clean(force=force or None))

    # --- packages ---------------------------------------------------------------------------

    def upload_package(self, *, force: bool = False) -> Call[Package]:
        """The body (zip bytes or a stream) is attached by the client."""
        return Call(
            "POST",
            "/packages",
            _model(Package),
            params=_clean(force=force or None),
            headers={"Content-Type": "application/zip"},
        )

    def list_packages(self, *, search: str | None = None) -> Call[list[PackageSummary]]:
        return Call("GET", "/packages", _model(list[PackageSummary]), params=_clean(search=search))

    def package_versions(self, name: str) -> Call[list[Package]]:
        return Call("GET", f"/packages/{name}", _model(list[Package]))

    def get_package(self, name: str, version: str) -> Call[Package]:
        return Call("GET", f"/packages/{name}/{version}", _model(Package))

    def get_manifest(self, name: str, version: str) -> Call[dict[str, Any]]:
        return Call("GET", f"/packages/{name}/{version}/manifest", _json)

    def download_package_path(self, name: str, version: str) -> str:
        return f"/packages/{name}/{version}/download"

    def delete_package(self, name: str, version: str) -> Call[None]:
        return Call("DELETE", f"/packages/{name}/{version}", _none)

    # --- systems and modules ----------------------------------------------------------------

    def list_systems(self) -> Call[list[System]]:
        return Call("GET", "/systems", _model(list[System]))

    def create_system(self, name: str, description: str = "") -> Call[System]:
        body = SystemCreate(name=name, description=description)
        return Call("POST", "/systems", _model(System), json=unstructure(body))

    def get_system(self, system_id: str) -> Call[System]:
        return Call("GET", f"/systems/{system_id}", _model(System))

    def update_system(
        self, system_id: str, *, name: str | None = None, description: str | None = None
    ) -> Call[System]:
        body = {
            k: v
            for k, v in unstructure(SystemPatch(name=name, description=description)).items()
            if v is not None
        }
        return Call("PATCH", f"/systems/{system_id}", _model(System), json=body)

    def delete_system(self, system_id: str) -> Call[None]:
        return Call("DELETE", f"/systems/{system_id}", _none)

    def start_system(self, system_id: str) -> Call[list[SystemActionResult]]:
        return Call("POST", f"/systems/{system_id}/start", _model(list[SystemActionResult]))

    def stop_system(self, system_id: str) -> Call[list[SystemActionResult]]:
        return Call("POST", f"/systems/{system_id}/stop", _model(list[SystemActionResult]))

    def start_batch(
        self,
        system_id: str,
        action: Literal["start", "stop"],
        *,
        concurrency: int = 4,
        wait_healthy: bool = True,
        tier_timeout: float = 120.0,
        min_running: float = 1.0,
    ) -> Call[BatchJob]:
        """Start (or stop, in reverse) a system tier by tier; returns the job at once."""
        body = BatchRequest(
            action=action,
            concurrency=concurrency,
            wait_healthy=wait_healthy,
            tier_timeout=tier_timeout,
            min_running=min_running,
        )
        return Call(
            "POST", f"/systems/{system_id}/batches", _model(BatchJob), json=unstructure(body)
        )

    def get_batch(self, batch_id: str, *, wait: int = 0) -> Call[BatchJob]:
        """A batch job's progress; ``wait`` seconds (max 600) for it to end first."""
        return Call("GET", f"/batches/{batch_id}", _model(BatchJob), params=_clean(wait=wait))

    def list_batches(self, system_id: str) -> Call[list[BatchJob]]:
        return Call("GET", f"/systems/{system_id}/batches", _model(list[BatchJob]))

    def list_modules(self, system_id: str) -> Call[list[Module]]:
        return Call("GET", f"/systems/{system_id}/modules", _model(list[Module]))

    def create_module(
        self,
        system_id: str,
        name: str,
        package: str,
        version: str,
        *,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        start_order: int = 0,
        health_check: dict[str, Any] | None = None,
        user: str = "",
        group: str = "",
        secret_env: list[str] | None = None,
    ) -> Call[Module]:
        """Add a package module to a system.

        ``env`` values that look secret (``*PASSWORD*``, ``*TOKEN*``, ...) or are named in
        ``secret_env`` are write-only: answers show them as ``"***"``. ``user`` and
        ``group`` (the account the instances run as), a ``cmd`` health check and a
        package whose manifest needs them are for admins only (docs/security.md).
        """
        body = ModuleCreate(
            name=name,
            package=package,
            version=version,
            env=env or {},
            args=args,
            start_order=start_order,
            health_check=health_check,
            user=user,
            group=group,
            secret_env=secret_env or [],
        )
        return Call("POST", f"/systems/{system_id}/modules", _model(Module), json=unstructure(body))

    def create_adopted_module(
        self,
        system_id: str,
        name: str,
        adoption: AdoptionSpec,
        *,
        env: dict[str, str] | None = None,
        start_order: int = 0,
        user: str = "",
        group: str = "",
        secret_env: list[str] | None = None,
    ) -> Call[Module]:
        """A module for a process GDOS did not deploy; deploy it on a node to adopt it.

        Adoption commands, ``log_paths``, ``user`` and ``group`` need the admin role.
        """
        body = ModuleCreate(
            name=name,
            kind=ModuleKind.ADOPTED,
            adoption=adoption,
            env=env or {},
            start_order=start_order,
            user=user,
            group=group,
            secret_env=secret_env or [],
        )
        return Call("POST", f"/systems/{system_id}/modules", _model(Module), json=unstructure(body))

    def adoption_candidates(
        self, node_id: str, adoption: AdoptionSpec
    ) -> Call[list[ProcessCandidate]]:
        """The processes on ``node_id`` that ``adoption`` would adopt, best first."""
        return Call(
            "POST",
            f"/nodes/{node_id}/candidates",
            _model(list[ProcessCandidate]),
            json=unstructure(adoption),
        )

    def get_module(self, module_id: str) -> Call[Module]:
        return Call("GET", f"/modules/{module_id}", _model(Module))

    def update_module(
        self,
        module_id: str,
        *,
        version: str | None = None,
        env: Mapping[str, str | None] | None = None,
        args: list[str] | None = None,
        start_order: int | None = None,
        health_check: dict[str, Any] | None = None,
        adoption: AdoptionSpec | None = None,
        user: str | None = None,
        group: str | None = None,
        secret_env: list[str] | None = None,
    ) -> Call[Module]:
        """Change a module; ``None`` leaves a field as it is.

        ``health_check={}`` removes the health check override; ``user=""`` and
        ``group=""`` remove the account override. ``env`` is the new set of visible
        variables; a secret variable it leaves out keeps its value, and so does one
        given as ``"***"`` (what :meth:`get_module` shows), so
        ``update_module(m.id, env={**m.env, "NEW": "1"})`` is safe; ``None`` as a
        value removes a variable.
        """
        patch = ModulePatch(
            version=version,
            env=None if env is None else dict(env),
            args=args,
            start_order=start_order,
            health_check=health_check,
            adoption=adoption,
            user=user,
            group=group,
            secret_env=secret_env,
        )
        body = {k: v for k, v in unstructure(patch).items() if v is not None}
        return Call("PATCH", f"/modules/{module_id}", _model(Module), json=body)

    def delete_module(self, module_id: str) -> Call[None]:
        return Call("DELETE", f"/modules/{module_id}", _none)

    # --- instances --------------------------------------------------------------------------

    def list_instances(
        self,
        *,
        system_id: str | None = None,
        module_id: str | None = None,
        node_id: str | None = None,
        state: str | None = None,
    ) -> Call[list[Instance]]:
        params = _clean(system_id=system_id, module_id=module_id, node_id=node_id, state=state)
        return Call("GET", "/instances", _model(list[Instance]), params=params)

    def deploy(self, module_id: str, node_id: str, *, start: bool = True) -> Call[Instance]:
        """Deploy a module onto a node (and start it); returns the instance record.

        The record always exists when this returns: the instance is ``running`` (or
        ``stopped``) when the worker finished in time; ``deploying`` when the worker did
        not answer within the master's ``fleet.command_timeout`` (the deploy goes on there
        and the record follows it, ending ``running`` or ``failed`` with the reason); and
        ``unknown`` when the node is offline (deployed when it returns). A deploy the
        worker refused raises its error and leaves no record.

        Example::

            instance = gdos.deploy(module.id, node.id)
            if instance.state.value != "running":
                instance = gdos.wait_for_instance(instance.id, "running", timeout=120)
        """
        body = DeployRequest(module_id=module_id, node_id=node_id, start=start)
        return Call("POST", "/instances", _model(Instance), json=unstructure(body))

    def get_instance(self, instance_id: str) -> Call[Instance]:
        return Call("GET", f"/instances/{instance_id}", _model(Instance))

    def start_instance(self, instance_id: str) -> Call[Instance]:
        return Call("POST", f"/instances/{instance_id}/start", _model(Instance))

    def stop_instance(self, instance_id: str) -> Call[Instance]:
        return Call("POST", f"/instances/{instance_id}/stop", _model(Instance))

    def restart_instance(self, instance_id: str) -> Call[Instance]:
        return Call("POST", f"/instances/{instance_id}/restart", _model(Instance))

    def destroy_instance(self, instance_id: str) -> Call[None]:
        return Call("DELETE", f"/instances/{instance_id}", _none)

    # --- fleet commands (admins) and instance logs (operators) -----------------------------

    def start_command(
        self, node_ids: list[str], command: str, *, timeout: float = 60.0
    ) -> Call[CommandRun]:
        """Start ``command`` on ``node_ids``; the run comes back at once (see ``run_command``)."""
        body = CommandRequest(node_ids=list(node_ids), command=command, timeout=timeout)
        return Call("POST", "/commands", _model(CommandRun), json=unstructure(body))

    def get_command(self, run_id: str, *, wait: int = 0) -> Call[CommandRun]:
        """A run with its output so far; ``wait`` seconds (max 60) for it to finish first."""
        return Call("GET", f"/commands/{run_id}", _model(CommandRun), params=_clean(wait=wait))

    def list_commands(self) -> Call[list[CommandRun]]:
        return Call("GET", "/commands", _model(list[CommandRun]))

    def list_log_files(self, instance_id: str) -> Call[list[LogFile]]:
        return Call("GET", f"/instances/{instance_id}/logs", _model(list[LogFile]))

    def read_log(
        self,
        instance_id: str,
        file: str,
        *,
        lines: int = 100,
        cursor: LogCursor | None = None,
        wait: int = 0,
    ) -> Call[LogChunk]:
        """The last ``lines`` lines, or what followed ``cursor`` (waiting up to ``wait`` s)."""
        token = f"{cursor.dev}:{cursor.ino}:{cursor.offset}" if cursor is not None else None
        params = _clean(file=file, lines=lines, cursor=token, wait=wait if cursor else None)
        return Call("GET", f"/instances/{instance_id}/logs/read", _model(LogChunk), params=params)

    def search_log(
        self, instance_id: str, file: str, query: str, *, limit: int = 500
    ) -> Call[LogSearch]:
        params = _clean(file=file, q=query, limit=limit)
        return Call(
            "GET", f"/instances/{instance_id}/logs/search", _model(LogSearch), params=params
        )

    # --- web terminal sessions and recordings (admins) --------------------------------------

    def list_terminal_sessions(
        self,
        *,
        node_id: str | None = None,
        live: bool | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Call[Page[TerminalSession]]:
        """Terminal sessions, newest first (``live``: only those still open)."""
        params = _clean(node_id=node_id, live=live, limit=limit, offset=offset)
        return Call("GET", "/terminal/sessions", _model(Page[TerminalSession]), params=params)

    def get_terminal_session(self, session_id: str) -> Call[TerminalSession]:
        return Call("GET", f"/terminal/sessions/{session_id}", _model(TerminalSession))

    def get_terminal_recording(self, session_id: str) -> Call[str]:
        """The session's asciicast v2 text (see :func:`gdos_sdk.terminal.parse_asciicast`)."""
        return Call("GET", f"/terminal/sessions/{session_id}/recording", _text)

    def close_terminal_session(self, session_id: str) -> Call[None]:
        """End a live terminal session."""
        return Call("DELETE", f"/terminal/sessions/{session_id}", _none)

    # --- audit, settings, meta --------------------------------------------------------------

    def list_audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: float | str | None = None,
        until: float | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Call[Page[AuditEntry]]:
        params = _clean(
            actor=actor,
            action=action,
            target=target,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
        return Call("GET", "/audit", _model(Page[AuditEntry]), params=params)

    def get_settings(self) -> Call[Settings]:
        """Cluster settings (admins). The join token is not among them: see
        :meth:`rotate_join_token`."""
        return Call("GET", "/settings", _model(Settings))

    def rotate_join_token(self) -> Call[JoinToken]:
        """Make a new cluster join token and return it: it is shown this once (admins).

        The old token stops working at once; joined workers keep their node credentials.
        Raises ConflictError when the token is set in the master's configuration.

        Example::

            token = gdos.rotate_join_token().join_token
        """
        return Call("POST", "/settings/join-token", _model(JoinToken))

    # --- backups (admins) -------------------------------------------------------------------

    def list_backups(self) -> Call[list[BackupInfo]]:
        """Backups in the master's storage, newest first."""
        return Call("GET", "/backups", _model(list[BackupInfo]))

    def create_backup(self, *, include_packages: bool = False) -> Call[BackupInfo]:
        """Make a backup now: an online database snapshot, optionally with the packages."""
        body = unstructure(BackupRequest(include_packages=include_packages))
        return Call("POST", "/backups", _model(BackupInfo), json=body)

    def delete_backup(self, name: str) -> Call[None]:
        return Call("DELETE", f"/backups/{name}", _none)

    def restore_backup(self, name: str) -> Call[RestoreResult]:
        """Restore a stored backup in place; the master keeps running.

        Example::

            gdos.restore_backup(gdos.list_backups()[0].name)
        """
        return Call("POST", f"/backups/{name}/restore", _model(RestoreResult))

    def list_orphans(self, *, min_age: float = 3600) -> Call[StorageSweep]:
        """Stored package and recording objects no record refers to, older than ``min_age`` s.

        A restore rolls the database back past packages uploaded and sessions recorded
        after the backup; their objects stay in storage until removed with
        :meth:`remove_orphans`.
        """
        params = {"min_age": int(min_age)}
        return Call("GET", "/storage/orphans", _model(StorageSweep), params=params)

    def remove_orphans(self, *, min_age: float = 3600) -> Call[StorageSweep]:
        """Delete what :meth:`list_orphans` lists (audited as ``storage.sweep``).

        Example::

            swept = gdos.remove_orphans(min_age=86400)
            print(len(swept.objects), "objects,", swept.total_bytes, "bytes freed")
        """
        params = {"min_age": int(min_age)}
        return Call("DELETE", "/storage/orphans", _model(StorageSweep), params=params)

    def get_backup_schedule(self) -> Call[BackupSchedule]:
        return Call("GET", "/backups/schedule", _model(BackupSchedule))

    def set_backup_schedule(
        self, interval_hours: float, *, retention: int = 7, include_packages: bool = False
    ) -> Call[BackupSchedule]:
        """Back up every ``interval_hours`` (0 = off), keeping ``retention`` scheduled backups."""
        body = BackupSchedule(
            interval_hours=interval_hours, retention=retention, include_packages=include_packages
        )
        return Call("PUT", "/backups/schedule", _model(BackupSchedule), json=unstructure(body))

    def upload_backup(self) -> Call[BackupInfo]:
        """The body (archive bytes or a stream) is attached by the client."""
        return Call(
            "POST",
            "/backups/upload",
            _model(BackupInfo),
            headers={"Content-Type": "application/gzip"},
        )

    def download_backup_path(self, name: str) -> str:
        return f"/backups/{name}/download"

    def health(self) -> Call[dict[str, Any]]:
        return Call("GET", "/health", _json)

    def openapi(self) -> Call[dict[str, Any]]:
        return Call("GET", "/openapi.json", _json)


def dump_json(value: Any) -> str:
    return json.dumps(value)
