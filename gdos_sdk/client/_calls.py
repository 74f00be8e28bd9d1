"""Every endpoint of the master API as a :class:`~gdos_sdk.client._base.Call` factory.

The docstrings here are the clients' docstrings (both clients copy them, with the
signature): they describe what the *client method* does and returns. Errors every method
may raise are listed once, in :class:`~gdos_sdk.Client`'s docstring; each method names
the ones particular to it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from gdos_sdk.adoption import AdoptionSpec, ProcessCandidate
from gdos_sdk.alerts import (
    ActiveAlert,
    AlertEvent,
    AlertRule,
    DeliveryResult,
    EventState,
    Matcher,
    Op,
    Receiver,
    ReceiverCreate,
    ReceiverPatch,
    RuleTarget,
    Severity,
    Silence,
    SilenceCreate,
    validate_rule,
)
from gdos_sdk.backups import (
    BackupInfo,
    BackupRequest,
    BackupSchedule,
    RestoreResult,
    StorageSweep,
)
from gdos_sdk.batches import BatchJob, BatchRequest
from gdos_sdk.client._base import (
    Call,
    _choice,
    _clean,
    _json,
    _model,
    _none,
    _seconds,
    _text,
)
from gdos_sdk.codec import unstructure
from gdos_sdk.commands import CommandRequest, CommandRun
from gdos_sdk.display import ModelList
from gdos_sdk.logfiles import LogChunk, LogCursor, LogFile, LogSearch
from gdos_sdk.metrics.names import check_agg, check_metric
from gdos_sdk.models import (
    ApiToken,
    AuditEntry,
    DeployRequest,
    IngestStatus,
    Instance,
    JoinToken,
    LoginRequest,
    MasterHealth,
    Me,
    MetricLatest,
    MetricRange,
    Module,
    ModuleCreate,
    ModuleKind,
    ModulePatch,
    Node,
    NodePatch,
    NodeStatus,
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
from gdos_sdk.rollouts import (
    RollbackRequest,
    Rollout,
    RolloutRequest,
    RolloutStrategy,
    RolloutWait,
)
from gdos_sdk.states import InstanceState
from gdos_sdk.terminal import TerminalSession

__all__ = ["Calls"]

_SEVERITIES = ("info", "warning", "critical")
_EVENT_STATES = ("firing", "resolved")
_OPS = (">", ">=", "<", "<=", "==", "!=")


class Calls:
    """Every endpoint of the master API as a :class:`Call` factory."""

    # --- auth -------------------------------------------------------------------------------

    def login(self, username: str, password: str) -> Call[Me]:
        """Log in with a user name and password; later calls use the session cookie.

        Returns:
            Who is logged in (:class:`~gdos_sdk.models.Me`, with the CSRF token the
            client then sends on every change).

        Raises:
            AuthError: wrong user name or password, or the user is disabled.
            RateLimitedError: too many failed attempts; wait and try again.
        """
        body = unstructure(LoginRequest(username=username, password=password))
        return Call("POST", "/auth/login", _model(Me), json=body)

    def logout(self) -> Call[None]:
        """End the session started by :meth:`login` (API tokens are not affected).

        Raises:
            AuthError: there is no session.
        """
        return Call("POST", "/auth/logout", _none)

    def me(self) -> Call[Me]:
        """Who the client's credential belongs to.

        Returns:
            The user, how they authenticated (``session`` or ``token``), their role.

        Raises:
            AuthError: no credential, or it expired or was revoked.
        """
        return Call("GET", "/auth/me", _model(Me))

    def change_password(self, current_password: str, new_password: str) -> Call[Me]:
        """Change your own password (the clients wrap this to keep their session).

        Returns:
            Who is logged in.

        Raises:
            AuthError: ``current_password`` is wrong.
        """
        body = PasswordChange(current_password=current_password, new_password=new_password)
        return Call("POST", "/auth/password", _model(Me), json=unstructure(body))

    # --- users and tokens -------------------------------------------------------------------

    def list_users(self) -> Call[ModelList[User]]:
        """Every user account (admins only).

        Returns:
            A :class:`~gdos_sdk.display.ModelList` of users.

        Raises:
            PermissionDenied: the caller is not an admin.
        """
        return Call("GET", "/users", _model(list[User]))

    def create_user(self, username: str, password: str, role: Role | str) -> Call[User]:
        """Create a user account (admins only).

        ``role`` is ``viewer`` (reads), ``operator`` (also deploys and starts) or ``admin``.

        Returns:
            The new user.

        Raises:
            ValidationError: an unknown role, or a password that is too short.
            ConflictError: the user name is taken.
            PermissionDenied: the caller is not an admin.

        Example::

            gdos.create_user("ci", "a-long-password", "operator")
        """
        body = UserCreate(username=username, password=password, role=Role(role))
        return Call("POST", "/users", _model(User), json=unstructure(body))

    def get_user(self, user_id: str) -> Call[User]:
        """One user account by id (admins only).

        Returns:
            The user.

        Raises:
            NotFoundError: no user has this id.
            PermissionDenied: the caller is not an admin.
        """
        return Call("GET", f"/users/{user_id}", _model(User))

    def update_user(
        self,
        user_id: str,
        *,
        role: Role | str | None = None,
        password: str | None = None,
        disabled: bool | None = None,
    ) -> Call[User]:
        """Change a user's role or password, or disable them (admins only).

        Arguments left ``None`` stay as they are.

        Returns:
            The updated user.

        Raises:
            NotFoundError: no user has this id.
            ValidationError: an unknown role or a password that is too short.
            ConflictError: the change would leave no enabled admin.
            PermissionDenied: the caller is not an admin.
        """
        patch = UserPatch(role=Role(role) if role else None, password=password, disabled=disabled)
        body = {k: v for k, v in unstructure(patch).items() if v is not None}
        return Call("PATCH", f"/users/{user_id}", _model(User), json=body)

    def delete_user(self, user_id: str) -> Call[None]:
        """Delete a user account and its tokens (admins only).

        Raises:
            NotFoundError: no user has this id.
            ConflictError: it is the last enabled admin.
            PermissionDenied: the caller is not an admin.
        """
        return Call("DELETE", f"/users/{user_id}", _none)

    def list_tokens(self) -> Call[ModelList[ApiToken]]:
        """API tokens: the caller's own, or every user's for an admin.

        Returns:
            A list of tokens (their secrets are never shown again).

        Raises:
            AuthError: not logged in.
        """
        return Call("GET", "/tokens", _model(list[ApiToken]))

    def create_token(
        self, name: str, *, role: Role | str | None = None, expires_in_days: int | None = None
    ) -> Call[TokenCreated]:
        """Create an API token for the caller, optionally with a lower role or an expiry.

        Returns:
            The token and its ``secret`` (``gdos_...``), shown this once only.

        Raises:
            ValidationError: a role above the caller's, or a bad expiry.

        Example::

            secret = gdos.create_token("ci", role="operator", expires_in_days=90).secret
        """
        body = TokenCreate(
            name=name, role=Role(role) if role else None, expires_in_days=expires_in_days
        )
        return Call("POST", "/tokens", _model(TokenCreated), json=unstructure(body))

    def revoke_token(self, token_id: str) -> Call[ApiToken]:
        """Revoke an API token (one's own; admins: anyone's).

        Returns:
            The token, now ``revoked``.

        Raises:
            NotFoundError: no token has this id (or it is another user's).
        """
        return Call("DELETE", f"/tokens/{token_id}", _model(ApiToken))

    # --- nodes ------------------------------------------------------------------------------

    def list_nodes(
        self, *, status: NodeStatus | str | None = None, search: str | None = None
    ) -> Call[ModelList[Node]]:
        """Nodes with their status and latest sample, optionally filtered.

        ``status`` is ``online``, ``offline``, ``pending`` or ``planned``; ``search`` a
        substring of the hostname, alias, id or an address.

        Returns:
            A :class:`~gdos_sdk.display.ModelList` of nodes (``.to_pandas()`` for a frame).

        Raises:
            ValidationError: an unknown ``status`` (before anything is sent).

        Example::

            online = gdos.list_nodes(status="online")
            online.to_pandas()[["hostname", "latest.cpu_percent"]]
        """
        checked = _choice("status", status, [s.value for s in NodeStatus])
        return Call(
            "GET", "/nodes", _model(list[Node]), params=_clean(status=checked, search=search)
        )

    def get_node(self, node_id: str) -> Call[Node]:
        """One node by id.

        Returns:
            The node, with its fingerprint and latest sample.

        Raises:
            NotFoundError: no node has this id.
        """
        return Call("GET", f"/nodes/{node_id}", _model(Node))

    def update_node(
        self, node_id: str, *, alias: str | None = None, labels: dict[str, str] | None = None
    ) -> Call[Node]:
        """Rename (``alias``) or relabel a node (admins only); ``labels`` replaces them all.

        Returns:
            The updated node.

        Raises:
            NotFoundError: no node has this id.
            ValidationError: a label key or value that is not allowed.
            PermissionDenied: the caller is not an admin.
        """
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
        """Register a node before its worker joins (admins only); status ``planned``.

        The answer's ``claim_token`` is shown this once: give it to the worker
        (``-claim_token`` / ``OPS_WORKER_CONNECT_CLAIM_TOKEN``) and it takes this node,
        its id and its queued instances. A worker with only the join token and the same
        hostname waits for :meth:`approve_node`, which then hands it this node.

        Returns:
            The planned node, with its one-time ``claim_token``.

        Raises:
            ConflictError: a node with this hostname exists.
            PermissionDenied: the caller is not an admin.
        """
        body = PlannedNodeCreate(
            hostname=hostname, alias=alias, addresses=addresses or [], labels=labels or {}
        )
        return Call("POST", "/nodes", _model(Node), json=unstructure(body))

    def new_claim_token(self, node_id: str) -> Call[Node]:
        """A new one-time claim token for a planned node (admins); the old one stops working.

        Returns:
            The planned node with its new ``claim_token`` (shown this once).

        Raises:
            NotFoundError: no node has this id.
            ConflictError: the node is not planned (a worker has claimed it).
            PermissionDenied: the caller is not an admin.
        """
        return Call("POST", f"/nodes/{node_id}/claim-token", _model(Node))

    def approve_node(self, node_id: str) -> Call[Node]:
        """Approve a ``pending`` node so its worker may run services (admins only).

        A pending node that matched a planned node (same hostname) takes that node over.

        Returns:
            The approved node.

        Raises:
            NotFoundError: no node has this id.
            PermissionDenied: the caller is not an admin.
        """
        return Call("POST", f"/nodes/{node_id}/approve", _model(Node))

    def delete_node(self, node_id: str, *, force: bool = False) -> Call[None]:
        """Delete a node and revoke its credential (admins only).

        With ``force``, also drop the records of its instances.

        Raises:
            NotFoundError: no node has this id.
            ConflictError: it still has instances and ``force`` is false.
            PermissionDenied: the caller is not an admin.
        """
        return Call("DELETE", f"/nodes/{node_id}", _none, params=_clean(force=force or None))

    def adoption_candidates(
        self, node_id: str, adoption: AdoptionSpec
    ) -> Call[ModelList[ProcessCandidate]]:
        """The processes on ``node_id`` that ``adoption`` would adopt, best first (operators).

        Changes nothing, so it is retried like a read.

        Returns:
            A list of candidate processes.

        Raises:
            NotFoundError: no node has this id.
            ConflictError: the node is offline.
        """
        return Call(
            "POST",
            f"/nodes/{node_id}/candidates",
            _model(list[ProcessCandidate]),
            json=unstructure(adoption),
            safe=True,
        )

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

    def list_packages(self, *, search: str | None = None) -> Call[ModelList[PackageSummary]]:
        """Package names with their versions, newest first; ``search``: a name substring.

        Returns:
            A list of package summaries.

        Raises:
            AuthError: not logged in.
        """
        return Call("GET", "/packages", _model(list[PackageSummary]), params=_clean(search=search))

    def package_versions(self, name: str) -> Call[ModelList[Package]]:
        """Every uploaded version of package ``name``, newest first.

        Returns:
            A list of packages.

        Raises:
            NotFoundError: no package has this name.
        """
        return Call("GET", f"/packages/{name}", _model(list[Package]))

    def get_package(self, name: str, version: str) -> Call[Package]:
        """One version of a package.

        Returns:
            The package (digest, size, who uploaded it, its manifest).

        Raises:
            NotFoundError: no such package version.
        """
        return Call("GET", f"/packages/{name}/{version}", _model(Package))

    def get_manifest(self, name: str, version: str) -> Call[dict[str, Any]]:
        """The ``service.json`` of a package version, as a dict.

        Returns:
            The manifest.

        Raises:
            NotFoundError: no such package version.
        """
        return Call("GET", f"/packages/{name}/{version}/manifest", _json)

    def download_package_path(self, name: str, version: str) -> str:
        return f"/packages/{name}/{version}/download"

    def delete_package(self, name: str, version: str) -> Call[None]:
        """Delete a package version (operators).

        Raises:
            NotFoundError: no such package version.
            ConflictError: a module still uses it.
        """
        return Call("DELETE", f"/packages/{name}/{version}", _none)

    # --- systems and modules ----------------------------------------------------------------

    def list_systems(self) -> Call[ModelList[System]]:
        """Every system with its module and instance counts.

        Returns:
            A list of systems.

        Raises:
            AuthError: not logged in.
        """
        return Call("GET", "/systems", _model(list[System]))

    def create_system(self, name: str, description: str = "") -> Call[System]:
        """Create a system: a named group of modules (operators).

        Returns:
            The new system.

        Raises:
            ConflictError: a system with this name exists.
            ValidationError: an empty name.
        """
        body = SystemCreate(name=name, description=description)
        return Call("POST", "/systems", _model(System), json=unstructure(body))

    def get_system(self, system_id: str) -> Call[System]:
        """One system by id.

        Returns:
            The system.

        Raises:
            NotFoundError: no system has this id.
        """
        return Call("GET", f"/systems/{system_id}", _model(System))

    def update_system(
        self, system_id: str, *, name: str | None = None, description: str | None = None
    ) -> Call[System]:
        """Rename a system or change its description (operators).

        Returns:
            The updated system.

        Raises:
            NotFoundError: no system has this id.
            ConflictError: the new name is taken.
        """
        body = {
            k: v
            for k, v in unstructure(SystemPatch(name=name, description=description)).items()
            if v is not None
        }
        return Call("PATCH", f"/systems/{system_id}", _model(System), json=body)

    def delete_system(self, system_id: str) -> Call[None]:
        """Delete a system and its modules (operators).

        Raises:
            NotFoundError: no system has this id.
            ConflictError: it still has instances.
        """
        return Call("DELETE", f"/systems/{system_id}", _none)

    def start_system(self, system_id: str) -> Call[ModelList[SystemActionResult]]:
        """Start every instance of a system at once (operators); see :meth:`start_batch`.

        Returns:
            One result per instance (``ok``, its state or the error).

        Raises:
            NotFoundError: no system has this id.
        """
        return Call("POST", f"/systems/{system_id}/start", _model(list[SystemActionResult]))

    def stop_system(self, system_id: str) -> Call[ModelList[SystemActionResult]]:
        """Stop every instance of a system at once (operators).

        Returns:
            One result per instance.

        Raises:
            NotFoundError: no system has this id.
        """
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
        """Start (or stop, in reverse) a system tier by tier (operators); returns at once.

        Tiers are the modules' ``start_order``; ``concurrency`` instances at a time within
        a tier; a start waits for health checks (``wait_healthy``) or ``min_running``
        seconds of running. Follow it with :meth:`get_batch` (``wait=``).

        Returns:
            The batch job, ``running``.

        Raises:
            NotFoundError: no system has this id.
            ConflictError: a batch of this system is already running.
            ValidationError: an unknown action or a bad setting.

        Example::

            job = gdos.start_batch(system.id, "start")
            while job.state.value == "running":
                job = gdos.get_batch(job.id, wait=30)
        """
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
        """A batch job's progress; ``wait`` seconds (max 600) for it to end first.

        Returns:
            The job, its tiers and items.

        Raises:
            NotFoundError: no batch has this id.
        """
        return Call("GET", f"/batches/{batch_id}", _model(BatchJob), params=_clean(wait=wait))

    def list_batches(self, system_id: str) -> Call[ModelList[BatchJob]]:
        """A system's recent batch jobs, newest first.

        Returns:
            A list of batch jobs.

        Raises:
            NotFoundError: no system has this id.
        """
        return Call("GET", f"/systems/{system_id}/batches", _model(list[BatchJob]))

    # --- rollouts ---------------------------------------------------------------------------

    def rollout(
        self,
        module_id: str,
        version: str,
        *,
        max_parallel: int = 1,
        wait: Literal["running", "stable", "healthy"] = "stable",
        min_healthy_time: float = 10.0,
        healthy_deadline: float = 300.0,
        progress_deadline: float = 600.0,
        canary: int = 0,
        auto_promote_after: float | None = None,
        auto_revert: bool = False,
    ) -> Call[Rollout]:
        """Move every instance of a module to ``version``, in place (operators); returns at once.

        At most ``max_parallel`` instances are moved at a time; one counts as moved when
        ``wait`` holds: ``running``, ``stable`` (the same process for ``min_healthy_time``
        seconds) or ``healthy`` (its health check passes, then holds that long). One
        that takes longer than ``healthy_deadline`` fails, and so does the rollout when
        no instance finishes for ``progress_deadline`` seconds. ``canary`` instances go
        first; then it waits for :meth:`promote` (or ``auto_promote_after`` seconds).
        With ``auto_revert`` a failure moves every instance it moved back. The module's
        version is ``version`` from now on. Follow it with :meth:`follow_rollout`.

        Returns:
            The rollout, ``running``.

        Raises:
            NotFoundError: no module has this id.
            ValidationError: no such version of its package, an adopted module, or a
                bad setting.
            ConflictError: a rollout of this module is still running.
            PermissionDenied: the version needs admin-only settings and you are not admin.

        Example::

            job = gdos.rollout(module.id, "1.1.0", max_parallel=2, auto_revert=True)
            job = gdos.get_rollout(job.id, wait=300)
            print(job.state, job.error)
        """
        strategy = RolloutStrategy(
            max_parallel=max_parallel,
            wait=RolloutWait(wait),
            min_healthy_time=min_healthy_time,
            healthy_deadline=healthy_deadline,
            progress_deadline=progress_deadline,
            canary=canary,
            auto_promote_after=auto_promote_after,
            auto_revert=auto_revert,
        )
        body = RolloutRequest(version=version, strategy=strategy)
        return Call(
            "POST", f"/modules/{module_id}/rollouts", _model(Rollout), json=unstructure(body)
        )

    def rollback(
        self,
        module_id: str,
        version: str = "",
        *,
        max_parallel: int = 1,
        wait: Literal["running", "stable", "healthy"] = "stable",
        min_healthy_time: float = 10.0,
        healthy_deadline: float = 300.0,
        progress_deadline: float = 600.0,
        canary: int = 0,
        auto_promote_after: float | None = None,
        auto_revert: bool = False,
    ) -> Call[Rollout]:
        """Move a module back to the version it had before (or to ``version``): a rollout.

        "Before" is where the rollout that brought its current version started (else
        the highest stored version below it). Versions its workers still keep on disk
        start without a download. The strategy is as for :meth:`rollout`.

        Returns:
            The rollout (``kind`` ``rollback``), ``running``.

        Raises:
            NotFoundError: no module has this id.
            ConflictError: no earlier version is known, it is the current one, or a
                rollout of this module is still running.

        Example::

            job = gdos.rollback(module.id)
        """
        strategy = RolloutStrategy(
            max_parallel=max_parallel,
            wait=RolloutWait(wait),
            min_healthy_time=min_healthy_time,
            healthy_deadline=healthy_deadline,
            progress_deadline=progress_deadline,
            canary=canary,
            auto_promote_after=auto_promote_after,
            auto_revert=auto_revert,
        )
        body = RollbackRequest(version=version, strategy=strategy)
        return Call(
            "POST", f"/modules/{module_id}/rollback", _model(Rollout), json=unstructure(body)
        )

    def get_rollout(
        self, rollout_id: str, *, wait: int = 0, after: int | None = None
    ) -> Call[Rollout]:
        """A rollout and its progress; ``wait`` seconds (max 600) for it to end first.

        With ``after`` (a ``revision``), it answers as soon as the rollout changed past
        it (a long poll without a socket; :meth:`follow_rollout` follows the live topic).

        Returns:
            The rollout, each instance's step (``waiting``, ``preparing``, ``stopping``,
            ``starting``, ``verifying``, ``done``, ``failed`` with its ``error``,
            ``reverted``, ``pending`` on an offline node ...).

        Raises:
            NotFoundError: no rollout has this id.
        """
        params = _clean(wait=wait, after=after)
        return Call("GET", f"/rollouts/{rollout_id}", _model(Rollout), params=params)

    def list_rollouts(
        self, *, module_id: str | None = None, system_id: str | None = None
    ) -> Call[ModelList[Rollout]]:
        """Rollouts, newest first: a module's history with ``module_id``.

        Returns:
            A list of rollouts (none for an unknown module or system).

        Raises:
            ValidationError: an empty filter value.
        """
        params = _clean(module_id=module_id, system_id=system_id)
        return Call("GET", "/rollouts", _model(list[Rollout]), params=params)

    def pause(self, rollout_id: str) -> Call[Rollout]:
        """Pause a rollout (operators): no further instance begins; those under way finish.

        Returns:
            The rollout, ``paused``.

        Raises:
            NotFoundError: no rollout has this id.
            ConflictError: it is not running (ended, paused, awaiting promotion).
        """
        return Call("POST", f"/rollouts/{rollout_id}/pause", _model(Rollout))

    def resume(self, rollout_id: str) -> Call[Rollout]:
        """Resume a paused rollout (operators).

        Returns:
            The rollout, ``running``.

        Raises:
            NotFoundError: no rollout has this id.
            ConflictError: it is not paused.
        """
        return Call("POST", f"/rollouts/{rollout_id}/resume", _model(Rollout))

    def promote(self, rollout_id: str) -> Call[Rollout]:
        """Let a rollout go on past its canaries (operators).

        Returns:
            The rollout (it goes on in the background).

        Raises:
            NotFoundError: no rollout has this id.
            ConflictError: it is not ``awaiting_promotion``.
        """
        return Call("POST", f"/rollouts/{rollout_id}/promote", _model(Rollout))

    def abort(self, rollout_id: str, *, revert: bool | None = None) -> Call[Rollout]:
        """Stop a rollout (operators): no further instance begins.

        ``revert`` (default: the rollout's ``auto_revert``) moves every instance it
        moved back to its version. Aborting a rollout that is reverting stops the
        revert too.

        Returns:
            The rollout as it winds down (it ends ``aborted`` or ``reverted``).

        Raises:
            NotFoundError: no rollout has this id.
            ConflictError: it has ended.
        """
        return Call(
            "POST", f"/rollouts/{rollout_id}/abort", _model(Rollout), params=_clean(revert=revert)
        )

    def list_modules(self, system_id: str) -> Call[ModelList[Module]]:
        """The modules of a system.

        Returns:
            A list of modules.

        Raises:
            NotFoundError: no system has this id.
        """
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
        """Add a module to a system: a package version with its settings (operators).

        ``env`` and ``args`` are added to the package's; ``start_order`` sets its tier in
        batches; ``health_check`` (a ``service.json`` health_check object) replaces the
        package's. ``env`` values that look secret (``*PASSWORD*``, ``*TOKEN*``, ...) or
        are named in ``secret_env`` are write-only: answers show them as ``"***"``.
        ``user`` and ``group`` (the account the instances run as), a ``cmd`` health check
        and a package whose manifest needs them are for admins only (docs/security.md).

        Returns:
            The new module; deploy it with :meth:`deploy`.

        Raises:
            NotFoundError: no such system or package version.
            ConflictError: the system has a module with this name.
            ValidationError: a bad setting (details name the field).

        Example::

            module = gdos.create_module(system.id, "web", "web", "1.2.0", env={"PORT": "8000"})
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

        Returns:
            The new module (kind ``adopted``).

        Raises:
            NotFoundError: no system has this id.
            ConflictError: the system has a module with this name.
            ValidationError: an invalid adoption spec.
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

    def get_module(self, module_id: str) -> Call[Module]:
        """One module by id.

        Returns:
            The module.

        Raises:
            NotFoundError: no module has this id.
        """
        return Call("GET", f"/modules/{module_id}", _model(Module))

    def update_module(
        self,
        module_id: str,
        *,
        env: Mapping[str, str | None] | None = None,
        args: list[str] | None = None,
        start_order: int | None = None,
        health_check: dict[str, Any] | None = None,
        adoption: AdoptionSpec | None = None,
        user: str | None = None,
        group: str | None = None,
        secret_env: list[str] | None = None,
    ) -> Call[Module]:
        """Change a module (operators); ``health_check={}`` removes its override.

        Its version changes with :meth:`rollout`. Arguments left ``None`` stay as they
        are. Running instances keep their old settings until redeployed or moved by a
        rollout. ``user=""`` and ``group=""`` remove the account
        override. ``env`` is the new set of visible variables; a secret variable it
        leaves out keeps its value, and so does one given as ``"***"`` (what
        :meth:`get_module` shows), so ``update_module(m.id, env={**m.env, "NEW": "1"})``
        is safe; ``None`` as a value removes a variable.

        Returns:
            The updated module.

        Raises:
            NotFoundError: no such module or package version.
            ValidationError: a bad setting.
        """
        patch = ModulePatch(
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
        """Delete a module (operators).

        Raises:
            NotFoundError: no module has this id.
            ConflictError: it still has instances.
        """
        return Call("DELETE", f"/modules/{module_id}", _none)

    # --- instances --------------------------------------------------------------------------

    def list_instances(
        self,
        *,
        system_id: str | None = None,
        module_id: str | None = None,
        node_id: str | None = None,
        state: InstanceState | str | None = None,
    ) -> Call[ModelList[Instance]]:
        """Instances, optionally of one system, module or node, or in one ``state``.

        ``state`` is one of ``deploying``, ``stopped``, ``starting``, ``running``,
        ``stopping``, ``backoff``, ``failed``, ``unknown``.

        Returns:
            A :class:`~gdos_sdk.display.ModelList` of instances with their latest metrics.

        Raises:
            ValidationError: an unknown ``state`` (before anything is sent).

        Example::

            gdos.list_instances(state="failed").to_pandas()[["package", "node_id", "reason"]]
        """
        checked = _choice("state", state, [s.value for s in InstanceState])
        params = _clean(system_id=system_id, module_id=module_id, node_id=node_id, state=checked)
        return Call("GET", "/instances", _model(list[Instance]), params=params)

    def deploy(self, module_id: str, node_id: str, *, start: bool = True) -> Call[Instance]:
        """Deploy a module onto a node (operators); with ``start``, start it too.

        The record always exists when this returns: the instance is ``running`` (or
        ``stopped``) when the worker finished in time; ``deploying`` when the worker did
        not answer within the master's ``fleet.command_timeout`` (the deploy goes on there
        and the record follows it, ending ``running`` or ``failed`` with the reason); and
        ``unknown`` when the node is offline (deployed when it returns). A deploy the
        worker refused raises its error and leaves no record.

        Returns:
            The instance as the worker reported it.

        Raises:
            NotFoundError: no such module or node.
            ConflictError: the node is not approved.
            RemoteError: the worker could not deploy it (details say why).

        Example::

            instance = gdos.deploy(module.id, node.id)
            print(instance.state, instance.pid)
        """
        body = DeployRequest(module_id=module_id, node_id=node_id, start=start)
        return Call("POST", "/instances", _model(Instance), json=unstructure(body))

    def get_instance(self, instance_id: str) -> Call[Instance]:
        """One instance by id.

        Returns:
            The instance: desired and actual state, health, pid, restarts, metrics.

        Raises:
            NotFoundError: no instance has this id.
        """
        return Call("GET", f"/instances/{instance_id}", _model(Instance))

    def start_instance(self, instance_id: str) -> Call[Instance]:
        """Start an instance (operators): its desired state becomes ``running``.

        Returns:
            The instance.

        Raises:
            NotFoundError: no instance has this id.
            RemoteError: the worker could not start it.
        """
        return Call("POST", f"/instances/{instance_id}/start", _model(Instance))

    def stop_instance(self, instance_id: str) -> Call[Instance]:
        """Stop an instance (operators): its desired state becomes ``stopped``.

        Returns:
            The instance.

        Raises:
            NotFoundError: no instance has this id.
            RemoteError: the worker could not stop it.
        """
        return Call("POST", f"/instances/{instance_id}/stop", _model(Instance))

    def restart_instance(self, instance_id: str) -> Call[Instance]:
        """Stop and start an instance (operators).

        Returns:
            The instance.

        Raises:
            NotFoundError: no instance has this id.
            RemoteError: the worker could not restart it.
        """
        return Call("POST", f"/instances/{instance_id}/restart", _model(Instance))

    def destroy_instance(self, instance_id: str) -> Call[None]:
        """Stop an instance and remove it and its files from the node (operators).

        Raises:
            NotFoundError: no instance has this id.
            RemoteError: the worker could not remove it.
        """
        return Call("DELETE", f"/instances/{instance_id}", _none)

    # --- fleet commands (admins) and instance logs (operators) -----------------------------

    def start_command(
        self, node_ids: list[str], command: str, *, timeout: float = 60.0
    ) -> Call[CommandRun]:
        """Start ``command`` on ``node_ids`` (admins); the run comes back at once.

        See :meth:`run_command` to wait for the results.

        Returns:
            The run, its nodes ``running``.

        Raises:
            NotFoundError: a node id is unknown.
            ValidationError: an empty command or node list, or a bad timeout.
            PermissionDenied: the caller is not an admin.
        """
        body = CommandRequest(node_ids=list(node_ids), command=command, timeout=timeout)
        return Call("POST", "/commands", _model(CommandRun), json=unstructure(body))

    def get_command(self, run_id: str, *, wait: int = 0) -> Call[CommandRun]:
        """A run with its output so far; ``wait`` seconds (max 60) for it to finish first.

        Returns:
            The run and each node's result.

        Raises:
            NotFoundError: no run has this id.
            PermissionDenied: the caller is not an admin.
        """
        return Call("GET", f"/commands/{run_id}", _model(CommandRun), params=_clean(wait=wait))

    def list_commands(self) -> Call[ModelList[CommandRun]]:
        """Recent fleet command runs, newest first (admins).

        Returns:
            A list of runs.

        Raises:
            PermissionDenied: the caller is not an admin.
        """
        return Call("GET", "/commands", _model(list[CommandRun]))

    def list_log_files(self, instance_id: str) -> Call[ModelList[LogFile]]:
        """The log files of an instance: its console log and those its package declares.

        Returns:
            A list of log files with their sizes.

        Raises:
            NotFoundError: no instance has this id.
            ConflictError: its node is offline.
        """
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
        """The last ``lines`` lines, or what followed ``cursor`` (waiting up to ``wait`` s).

        Returns:
            The text and the cursor to continue from (see :meth:`follow_log`).

        Raises:
            NotFoundError: no such instance or log file.
            ConflictError: its node is offline.
        """
        token = f"{cursor.dev}:{cursor.ino}:{cursor.offset}" if cursor is not None else None
        params = _clean(file=file, lines=lines, cursor=token, wait=wait if cursor else None)
        return Call("GET", f"/instances/{instance_id}/logs/read", _model(LogChunk), params=params)

    def search_log(
        self, instance_id: str, file: str, query: str, *, limit: int = 500
    ) -> Call[LogSearch]:
        """The last ``limit`` lines of a log file containing ``query`` (case-insensitive).

        Returns:
            The matches with their line numbers, and the total count.

        Raises:
            NotFoundError: no such instance or log file.
            ConflictError: its node is offline.
        """
        params = _clean(file=file, q=query, limit=limit)
        return Call(
            "GET", f"/instances/{instance_id}/logs/search", _model(LogSearch), params=params
        )

    # --- metrics ----------------------------------------------------------------------------

    def query_range(
        self,
        metric: str,
        target: str | list[str],
        start: float | datetime | timedelta | str | None = None,
        end: float | datetime | str | None = None,
        step: int = 1,
        agg: Literal["avg", "min", "max", "last"] = "avg",
    ) -> Call[MetricRange]:
        """A metric of one or more nodes or instances over a time range.

        ``target`` is ``node:<id>`` or ``instance:<id>``, a list of them, or ``node:*`` /
        ``instance:*`` for all. ``start`` and ``end`` are Unix seconds, datetimes (naive
        means UTC) or ISO 8601 strings; ``start`` may be a ``timedelta`` back from ``end``
        (default: the last 5 minutes). ``step`` seconds per point: under 60 reads the 1 s
        samples (kept for an hour), 60 or more the minute aggregates (kept for a day);
        ``agg`` combines the samples of a step: ``avg``, ``min``, ``max`` or ``last``.
        Metrics: see :mod:`gdos_sdk.metrics.names` (``cpu``, ``mem_percent``,
        ``disk_percent:/``, ``rss``...).

        Returns:
            A :class:`~gdos_sdk.models.MetricRange`: one columnar series per target;
            ``.to_pandas()`` gives a DataFrame with a UTC DatetimeIndex and a column each.

        Raises:
            ValidationError: an unknown metric or agg, a bad target or time range, or too
                many points (before anything is sent where the SDK can tell).
            NotFoundError: no node or instance has the given id.

        Example::

            cpu = gdos.query_range("cpu", "node:*", start=timedelta(hours=1))
            cpu.to_pandas(label="name").plot()
        """
        targets = [target] if isinstance(target, str) else list(target)
        for one in targets:
            kind, _, ident = one.partition(":")
            if kind in ("node", "instance") and ident:
                check_metric(metric, kind)
        check_agg(agg)
        end_s = _seconds(end)
        if isinstance(start, timedelta):
            start_s: float | None = (end_s if end_s is not None else time.time()) - (
                start.total_seconds()
            )
        else:
            start_s = _seconds(start)
        params: dict[str, Any] = _clean(metric=metric, start=start_s, end=end_s, step=step, agg=agg)
        params["target"] = targets
        return Call("GET", "/metrics/query", _model(MetricRange), params=params)

    def latest(self, target: str) -> Call[MetricLatest]:
        """The newest value of every metric of one node or instance.

        Returns:
            A :class:`~gdos_sdk.models.MetricLatest` (``.to_pandas()``: a row per metric).

        Raises:
            NotFoundError: no node or instance has this id.
            ValidationError: ``target`` is not ``node:<id>`` or ``instance:<id>``.
        """
        return Call("GET", "/metrics/latest", _model(MetricLatest), params={"target": target})

    def master_health(self) -> Call[MasterHealth]:
        """Whether the master has what it needs to take changes (``GET /healthz``).

        Needs no credential: load balancers and the console's outage banner read it
        (:meth:`health` is the API's liveness call, which asks the database). Several
        masters: a master that lost its database or the bus answers too (HTTP 503, not
        raised), with ``status="unavailable"`` and what it lost.

        Returns:
            A :class:`~gdos_sdk.models.MasterHealth` (``.ok``, ``.lost``, ``.lost_since``).

        Raises:
            TransportError: the master cannot be reached.
        """
        return Call("GET", "/healthz", _model(MasterHealth), root=True, answers=frozenset({503}))

    def ingest_status(self) -> Call[IngestStatus]:
        """The master's metric ingest counters: samples, lag, series, nodes online.

        Returns:
            An :class:`~gdos_sdk.models.IngestStatus`.

        Raises:
            AuthError: not logged in.
        """
        return Call("GET", "/metrics/ingest", _model(IngestStatus))

    # --- alerts -----------------------------------------------------------------------------

    def list_alert_rules(self) -> Call[ModelList[AlertRule]]:
        """Every alert rule, by name.

        Returns:
            A list of rules.

        Raises:
            AuthError: not logged in.
        """
        return Call("GET", "/alerts/rules", _model(list[AlertRule]))

    def create_alert_rule(
        self,
        name: str,
        metric: str,
        op: Op = ">",
        threshold: float = 0.0,
        *,
        target: RuleTarget | None = None,
        for_seconds: float = 0.0,
        keep_firing_for: float = 0.0,
        clear_threshold: float | None = None,
        severity: Severity = "warning",
        labels: dict[str, str] | None = None,
        receivers: list[str] | None = None,
        enabled: bool = True,
        description: str = "",
    ) -> Call[AlertRule]:
        """Create an alert rule: ``metric op threshold`` held ``for_seconds`` (operators).

        ``target`` picks the nodes or instances (default: every node); see
        docs/alerts.md for the metrics, hysteresis (``clear_threshold``) and
        ``keep_firing_for``. The rule is checked before it is sent.

        Returns:
            The rule with its id.

        Raises:
            ValidationError: an unknown metric, operator or severity, a metric that does
                not apply to the target kind, or inconsistent thresholds (details name
                each field).

        Example::

            gdos.create_alert_rule("CPU hot", "cpu", ">", 90, for_seconds=60,
                                   severity="critical")
        """
        _choice("op", op, _OPS)
        _choice("severity", severity, _SEVERITIES)
        rule = AlertRule(
            name=name,
            metric=metric,
            op=op,
            threshold=threshold,
            target=target or RuleTarget(),
            for_seconds=for_seconds,
            keep_firing_for=keep_firing_for,
            clear_threshold=clear_threshold,
            severity=severity,
            labels=labels or {},
            receivers=receivers or [],
            enabled=enabled,
            description=description,
        )
        validate_rule(rule)
        body = unstructure(rule)
        body.pop("id")
        return Call("POST", "/alerts/rules", _model(AlertRule), json=body)

    def get_alert_rule(self, rule_id: str) -> Call[AlertRule]:
        """One alert rule by id.

        Returns:
            The rule.

        Raises:
            NotFoundError: no rule has this id.
        """
        return Call("GET", f"/alerts/rules/{rule_id}", _model(AlertRule))

    def replace_alert_rule(self, rule_id: str, rule: AlertRule) -> Call[AlertRule]:
        """Replace an alert rule with ``rule`` (its ``id`` is ignored) (operators).

        Returns:
            The stored rule.

        Raises:
            NotFoundError: no rule has this id.
            ValidationError: the new rule is invalid.

        Example::

            rule = gdos.get_alert_rule(rule_id)
            gdos.replace_alert_rule(rule.id, attrs.evolve(rule, threshold=95))
        """
        validate_rule(rule)
        body = unstructure(rule)
        body.pop("id")
        return Call("PUT", f"/alerts/rules/{rule_id}", _model(AlertRule), json=body)

    def delete_alert_rule(self, rule_id: str) -> Call[None]:
        """Delete an alert rule; its open alerts are resolved (operators).

        Raises:
            NotFoundError: no rule has this id.
        """
        return Call("DELETE", f"/alerts/rules/{rule_id}", _none)

    def active_alerts(self) -> Call[ModelList[ActiveAlert]]:
        """The alerts pending or firing now, firing first.

        Returns:
            A list of active alerts; each has a ``state`` (``pending`` or ``firing``).

        Raises:
            AuthError: not logged in.
        """
        return Call("GET", "/alerts/active", _model(list[ActiveAlert]))

    def alert_history(
        self,
        *,
        state: EventState | None = None,
        rule_id: str | None = None,
        target: str | None = None,
        severity: Severity | None = None,
        since: float | datetime | str | None = None,
        until: float | datetime | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Call[Page[AlertEvent]]:
        """Alert events (firing, or since resolved), newest first, one page.

        ``state`` is ``firing`` or ``resolved``; ``severity`` ``info``, ``warning`` or
        ``critical``; ``since``/``until`` bound the start time.

        Returns:
            A :class:`~gdos_sdk.models.Page`; ``.items`` is a list of events with
            ``.to_pandas()``, ``.total`` counts every match.

        Raises:
            ValidationError: an unknown state or severity (before anything is sent).
        """
        params = _clean(
            state=_choice("state", state, _EVENT_STATES),
            rule_id=rule_id,
            target=target,
            severity=_choice("severity", severity, _SEVERITIES),
            since=_seconds(since),
            until=_seconds(until),
            limit=limit,
            offset=offset,
        )
        return Call("GET", "/alerts/events", _model(Page[AlertEvent]), params=params)

    def list_silences(self, *, expired: bool = False) -> Call[ModelList[Silence]]:
        """Active and future silences; with ``expired``, past ones too.

        Returns:
            A list of silences.

        Raises:
            AuthError: not logged in.
        """
        return Call(
            "GET", "/alerts/silences", _model(list[Silence]), params=_clean(expired=expired)
        )

    def create_silence(
        self,
        matchers: list[Matcher] | dict[str, str],
        ends_at: datetime | timedelta,
        *,
        starts_at: datetime | None = None,
        comment: str = "",
    ) -> Call[Silence]:
        """Silence the notifications of alerts whose labels match (operators).

        ``matchers`` is a list of :class:`~gdos_sdk.alerts.Matcher` or a dict of labels
        that must be equal; ``ends_at`` a time or a duration from now.

        Returns:
            The silence.

        Raises:
            ValidationError: no matcher, a bad regular expression, or an end before the
                start.

        Example::

            gdos.create_silence({"alertname": "CPU hot"}, timedelta(hours=2), comment="deploy")
        """
        if isinstance(matchers, dict):
            matchers = [Matcher(label=k, value=v) for k, v in matchers.items()]
        if isinstance(ends_at, timedelta):
            ends_at = datetime.now().astimezone() + ends_at
        body = SilenceCreate(
            matchers=list(matchers), ends_at=ends_at, starts_at=starts_at, comment=comment
        )
        return Call("POST", "/alerts/silences", _model(Silence), json=unstructure(body))

    def expire_silence(self, silence_id: str) -> Call[Silence]:
        """End a silence now (operators).

        Returns:
            The silence, its ``ends_at`` now.

        Raises:
            NotFoundError: no silence has this id.
        """
        return Call("DELETE", f"/alerts/silences/{silence_id}", _model(Silence))

    def list_receivers(self) -> Call[ModelList[Receiver]]:
        """The webhook receivers (their secrets are never shown).

        Returns:
            A list of receivers.

        Raises:
            AuthError: not logged in.
        """
        return Call("GET", "/alerts/receivers", _model(list[Receiver]))

    def create_receiver(
        self, name: str, url: str, *, secret: str = "", enabled: bool = True
    ) -> Call[Receiver]:
        """Add a webhook the master POSTs alerts to (admins); ``secret`` signs the bodies.

        Returns:
            The receiver (``has_secret`` says whether a secret is set).

        Raises:
            ValidationError: an empty name or a URL that is not http(s).
            ConflictError: a receiver with this name exists.
            PermissionDenied: the caller is not an admin.
        """
        body = ReceiverCreate(name=name, url=url, secret=secret, enabled=enabled)
        return Call("POST", "/alerts/receivers", _model(Receiver), json=unstructure(body))

    def update_receiver(
        self,
        receiver_id: str,
        *,
        name: str | None = None,
        url: str | None = None,
        secret: str | None = None,
        enabled: bool | None = None,
    ) -> Call[Receiver]:
        """Change a receiver (admins); arguments left ``None`` stay as they are.

        Returns:
            The updated receiver.

        Raises:
            NotFoundError: no receiver has this id.
            ValidationError: a URL that is not http(s).
            PermissionDenied: the caller is not an admin.
        """
        patch = ReceiverPatch(name=name, url=url, secret=secret, enabled=enabled)
        body = {k: v for k, v in unstructure(patch).items() if v is not None}
        return Call("PATCH", f"/alerts/receivers/{receiver_id}", _model(Receiver), json=body)

    def delete_receiver(self, receiver_id: str) -> Call[None]:
        """Delete a receiver no rule uses (admins).

        Raises:
            NotFoundError: no receiver has this id.
            ConflictError: a rule still names it.
            PermissionDenied: the caller is not an admin.
        """
        return Call("DELETE", f"/alerts/receivers/{receiver_id}", _none)

    def test_receiver(self, receiver_id: str) -> Call[DeliveryResult]:
        """Send a test notification to a receiver now, without retries (admins).

        Returns:
            Whether it was delivered (``ok``), the HTTP status or the error.

        Raises:
            NotFoundError: no receiver has this id.
            PermissionDenied: the caller is not an admin.
        """
        return Call("POST", f"/alerts/receivers/{receiver_id}/test", _model(DeliveryResult))

    # --- web terminal sessions and recordings (admins) --------------------------------------

    def list_terminal_sessions(
        self,
        *,
        node_id: str | None = None,
        live: bool | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Call[Page[TerminalSession]]:
        """Terminal sessions, newest first (``live``: only those still open) (admins).

        Returns:
            A page of sessions.

        Raises:
            PermissionDenied: the caller is not an admin.
        """
        params = _clean(node_id=node_id, live=live, limit=limit, offset=offset)
        return Call("GET", "/terminal/sessions", _model(Page[TerminalSession]), params=params)

    def get_terminal_session(self, session_id: str) -> Call[TerminalSession]:
        """One terminal session by id (admins).

        Returns:
            The session.

        Raises:
            NotFoundError: no session has this id.
            PermissionDenied: the caller is not an admin.
        """
        return Call("GET", f"/terminal/sessions/{session_id}", _model(TerminalSession))

    def get_terminal_recording(self, session_id: str) -> Call[str]:
        """The session's asciicast v2 text (see :func:`gdos_sdk.terminal.parse_asciicast`).

        Returns:
            The recording as text.

        Raises:
            NotFoundError: no session has this id, or it has no recording yet.
            PermissionDenied: the caller is not an admin.
        """
        return Call("GET", f"/terminal/sessions/{session_id}/recording", _text)

    def close_terminal_session(self, session_id: str) -> Call[None]:
        """End a live terminal session (admins).

        Raises:
            NotFoundError: no session has this id.
            PermissionDenied: the caller is not an admin.
        """
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
        """The audit log, newest first, one page (admins).

        ``actor`` is exact; ``action`` and ``target`` are prefixes (``instance.``,
        ``system:``); ``since``/``until`` are ISO 8601 times or Unix seconds.

        Returns:
            A page of entries (``.items.to_pandas()`` for a frame).

        Raises:
            ValidationError: a bad time or page bound.
            PermissionDenied: the caller is not an admin.
        """
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
        """The cluster settings (admins); the join token is not among them: see
        :meth:`rotate_join_token`.

        Returns:
            The settings.

        Raises:
            PermissionDenied: the caller is not an admin.
        """
        return Call("GET", "/settings", _model(Settings))

    def rotate_join_token(self) -> Call[JoinToken]:
        """Make a new cluster join token and return it: it is shown this once (admins).

        The old token stops working at once; joined workers keep their node credentials.

        Returns:
            The new token (``.join_token``).

        Raises:
            ConflictError: the token is set in the master's configuration.
            PermissionDenied: the caller is not an admin.

        Example::

            token = gdos.rotate_join_token().join_token
        """
        return Call("POST", "/settings/join-token", _model(JoinToken))

    # --- backups (admins) -------------------------------------------------------------------

    def list_backups(self) -> Call[ModelList[BackupInfo]]:
        """Backups in the master's storage, newest first (admins).

        Returns:
            A list of backups.

        Raises:
            PermissionDenied: the caller is not an admin.
        """
        return Call("GET", "/backups", _model(list[BackupInfo]))

    def create_backup(self, *, include_packages: bool = False) -> Call[BackupInfo]:
        """Make a backup now: an online database snapshot, optionally with the packages.

        Returns:
            The stored backup.

        Raises:
            StorageError: the storage back end failed.
            PermissionDenied: the caller is not an admin.
        """
        body = unstructure(BackupRequest(include_packages=include_packages))
        return Call("POST", "/backups", _model(BackupInfo), json=body)

    def delete_backup(self, name: str) -> Call[None]:
        """Delete a stored backup (admins).

        Raises:
            NotFoundError: no backup has this name.
            PermissionDenied: the caller is not an admin.
        """
        return Call("DELETE", f"/backups/{name}", _none)

    def restore_backup(self, name: str) -> Call[RestoreResult]:
        """Restore a stored backup in place; the master keeps running (admins).

        Returns:
            What the restore did.

        Raises:
            NotFoundError: no backup has this name.
            BackupError: the archive is corrupt, foreign or too new; nothing changed.
            PermissionDenied: the caller is not an admin.

        Example::

            gdos.restore_backup(gdos.list_backups()[0].name)
        """
        return Call("POST", f"/backups/{name}/restore", _model(RestoreResult))

    def list_orphans(self, *, min_age: float = 3600) -> Call[StorageSweep]:
        """Stored package and recording objects no record refers to, older than ``min_age`` s.

        A restore rolls the database back past packages uploaded and sessions recorded
        after the backup; their objects stay in storage until removed with
        :meth:`remove_orphans`.

        Returns:
            The orphaned objects and their total size.

        Raises:
            PermissionDenied: the caller is not an admin.
        """
        params = {"min_age": int(min_age)}
        return Call("GET", "/storage/orphans", _model(StorageSweep), params=params)

    def remove_orphans(self, *, min_age: float = 3600) -> Call[StorageSweep]:
        """Delete what :meth:`list_orphans` lists (audited as ``storage.sweep``).

        Returns:
            What was removed.

        Raises:
            StorageError: the storage back end failed.
            PermissionDenied: the caller is not an admin.

        Example::

            swept = gdos.remove_orphans(min_age=86400)
            print(len(swept.objects), "objects,", swept.total_bytes, "bytes freed")
        """
        params = {"min_age": int(min_age)}
        return Call("DELETE", "/storage/orphans", _model(StorageSweep), params=params)

    def get_backup_schedule(self) -> Call[BackupSchedule]:
        """The automatic backup schedule (admins).

        Returns:
            The schedule (``interval_hours`` 0 means off).

        Raises:
            PermissionDenied: the caller is not an admin.
        """
        return Call("GET", "/backups/schedule", _model(BackupSchedule))

    def set_backup_schedule(
        self, interval_hours: float, *, retention: int = 7, include_packages: bool = False
    ) -> Call[BackupSchedule]:
        """Back up every ``interval_hours`` (0 = off), keeping ``retention`` scheduled backups.

        Returns:
            The stored schedule.

        Raises:
            ValidationError: a negative interval or a retention under 1.
            PermissionDenied: the caller is not an admin.
        """
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
        """The master's health (no credential needed).

        Returns:
            ``{"status": "ok", ...}`` with the version and database state.

        Raises:
            TransportError: the master cannot be reached.
        """
        return Call("GET", "/health", _json)

    def openapi(self) -> Call[dict[str, Any]]:
        """The OpenAPI 3.1 document of the master's REST API.

        Returns:
            The document as a dict.

        Raises:
            AuthError: not logged in.
        """
        return Call("GET", "/openapi.json", _json)
