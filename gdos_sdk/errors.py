"""The GDOS error tree.

Every error the SDK, the servers and the pack tool raise on purpose is a
:class:`GdosError`. The branches are chosen by who can act on the error::

    GdosError
    ├── ValidationError        the input is wrong; fix the request (422)
    │   ├── BadRequestError    not even well-formed, e.g. not JSON (400)
    │   │   └── UnsupportedMediaType  a body that is not declared JSON (415)
    │   ├── BackupError        a backup archive is corrupt, truncated or foreign (422)
    │   └── ManifestError      service.json or package content is wrong
    ├── NotFoundError          the thing does not exist (404); also a LookupError
    ├── ConflictError          the request clashes with current state (409)
    ├── AuthError              who you are (401)
    │   └── PermissionDenied   what you may do (403)
    │       └── PasswordChangeRequired  change your password first (403)
    ├── TooLargeError          the body is over a configured limit (413)
    ├── RateLimitedError       slow down (429)
    ├── StorageError           the package store failed (503)
    ├── TransportError         the network between two GDOS parts failed
    │   └── ProtocolError      the peer speaks something else
    ├── RemoteError            the worker answered a command with an error (502)
    ├── SpawnError             the OS refused to start a process
    ├── ConfigError            a setting is missing or malformed
    ├── AutostartError         start at boot could not be installed or removed
    └── DeployFailed           a deployed service did not come up as ``deploy(wait=...)``
        │                      asked: it crashed, failed its health check (client side)
        └── DeployTimeout      it was not there within the timeout; also a TimeoutError

Each class carries a stable machine-readable ``code`` and an HTTP ``status``.
The master renders any :class:`GdosError` as
``{"error": {"code", "message", "details"}}``; :func:`error_from_body` turns
that body back into the same class, so a script catches
``gdos_sdk.NotFoundError`` whether the error happened locally or over HTTP.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthError",
    "AutostartError",
    "BackupError",
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "DeployFailed",
    "DeployTimeout",
    "GdosError",
    "ManifestError",
    "NotFoundError",
    "PasswordChangeRequired",
    "PermissionDenied",
    "ProtocolError",
    "RateLimitedError",
    "RemoteError",
    "SpawnError",
    "StorageError",
    "TooLargeError",
    "TransportError",
    "UnsupportedMediaType",
    "ValidationError",
    "error_from_body",
]


class GdosError(Exception):
    """Root of every error GDOS raises on purpose.

    Parameters:
        message: a sentence for a human.
        details: optional JSON-safe data for a program (field paths, limits, ids).

    Example::

        try:
            client.get_node("nope")
        except gdos_sdk.NotFoundError as exc:
            print(exc.code, exc.message)
    """

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500
    #: Headers the master sends with this error, name -> meaning (the API reference lists them).
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        """The JSON error body the master sends for this error."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}

    def http_headers(self) -> dict[str, str]:
        """The values of :attr:`headers` for this error's HTTP answer."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ValidationError(GdosError, ValueError):
    """The input is malformed; ``details`` names the field paths at fault."""

    code = "validation_error"
    status = 422


class ManifestError(ValidationError):
    """A ``service.json`` or a package's content is invalid."""

    code = "invalid_package"
    status = 422


class NotFoundError(GdosError, LookupError):
    """The named object does not exist."""

    code = "not_found"
    status = 404


class ConflictError(GdosError):
    """The request clashes with the current state (duplicate, in use, offline)."""

    code = "conflict"
    status = 409


class AuthError(GdosError):
    """Missing, expired or wrong credentials."""

    code = "unauthenticated"
    status = 401


class PermissionDenied(AuthError):
    """Authenticated, but the role or credential kind does not allow this."""

    code = "forbidden"
    status = 403


class PasswordChangeRequired(PermissionDenied):
    """The account's password must be changed (``POST /auth/password``) before anything else."""

    code = "password_change_required"
    status = 403


class TooLargeError(GdosError):
    """A body or an archive is over a configured size limit."""

    code = "too_large"
    status = 413


class RateLimitedError(GdosError):
    """Too many attempts; retry later (``details["retry_after"]``: seconds to wait)."""

    code = "rate_limited"
    status = 429
    headers = {"Retry-After": "seconds to wait before trying again"}

    @property
    def retry_after(self) -> int | None:
        """Seconds to wait before trying again, when the master said."""
        details = self.details if isinstance(self.details, dict) else {}
        value = details.get("retry_after")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def http_headers(self) -> dict[str, str]:
        # Always sent (the document says so): 1 s when the raiser named no wait.
        return {"Retry-After": str(1 if self.retry_after is None else self.retry_after)}


class StorageError(GdosError):
    """The package storage back end failed or is unreachable."""

    code = "storage_unavailable"
    status = 503


class TransportError(GdosError):
    """A connection between GDOS parts failed (timeout, refused, reset)."""

    code = "transport_error"
    status = 503


class ProtocolError(TransportError):
    """The peer sent something this side does not understand."""

    code = "protocol_error"
    status = 502


class RemoteError(GdosError):
    """A worker answered a command with an error; ``details`` has its code."""

    code = "worker_error"
    status = 502


class SpawnError(GdosError):
    """The operating system refused to start a process."""

    code = "spawn_failed"
    status = 500


class ConfigError(GdosError):
    """A configuration value is missing or malformed."""

    code = "config_error"
    status = 500


class AutostartError(GdosError):
    """Start at boot could not be installed or removed (not root, no systemd, tool failed)."""

    code = "autostart_failed"
    status = 500


class BadRequestError(ValidationError):
    """The request is not even well-formed (e.g. its body is not JSON)."""

    code = "bad_request"
    status = 400


class UnsupportedMediaType(BadRequestError):
    """A body sent without ``Content-Type: application/json`` where JSON is expected."""

    code = "unsupported_media_type"
    status = 415


class BackupError(ValidationError):
    """A backup archive is truncated, corrupt, foreign or too new; nothing was changed."""

    code = "invalid_backup"
    status = 422


class DeployFailed(GdosError):
    """A deployed service did not come up as ``deploy(wait=...)`` asked.

    It crashed or restarted within ``min_healthy_time``, failed its health check, or
    ended ``failed`` or ``stopped``. Raised by the client, never sent by the master:
    the instance record stays (inspect it, read its logs, destroy it).

    Attributes:
        instance: the :class:`~gdos_sdk.models.Instance` as last seen (``None`` if unknown).
        state: its state then (``backoff``, ``failed``, ``running`` ...).
        reason: the worker's reason (``exited with code 2; restarting in 1.0 s``).
        exit_code: the exit code of the last run, when it exited.
        log_lines: the last lines of its console log (empty when they could not be read).

    Example::

        try:
            gdos.deploy(module.id, node.id, wait="stable")
        except DeployFailed as exc:
            print(exc.state, exc.reason)
            print("\n".join(exc.log_lines))
    """

    code = "deploy_failed"
    status = 500

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        instance: Any = None,
        log_lines: list[str] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.instance = instance
        self.log_lines: list[str] = list(log_lines or [])

    @property
    def state(self) -> str | None:
        """The instance's state when the wait gave up."""
        state = getattr(self.instance, "state", None)
        return None if state is None else str(getattr(state, "value", state))

    @property
    def reason(self) -> str:
        """The worker's reason for that state."""
        return str(getattr(self.instance, "reason", "") or "")

    @property
    def exit_code(self) -> int | None:
        """The exit code of the last run, if it exited."""
        code = getattr(self.instance, "exit_code", None)
        return code if isinstance(code, int) else None

    def __str__(self) -> str:
        if not self.log_lines:
            return self.message
        tail = "\n".join(f"    {line}" for line in self.log_lines)
        return f"{self.message}\n  last lines of its console log:\n{tail}"


class DeployTimeout(DeployFailed, TimeoutError):
    """The service was not where ``deploy(wait=...)`` asked within ``timeout`` seconds."""

    code = "deploy_timeout"


def _all_subclasses(cls: type[GdosError]) -> list[type[GdosError]]:
    found: list[type[GdosError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def error_from_body(status: int, body: Any) -> GdosError:
    """Rebuild the error a master sent, choosing the class by ``code`` then by status.

    Example::

        error_from_body(404, {"error": {"code": "not_found", "message": "no node x"}})
    """
    code = None
    message = f"HTTP {status}"
    details = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = err.get("code")
        message = str(err.get("message", message))
        details = err.get("details")
    by_code = {c.code: c for c in reversed(_all_subclasses(GdosError))}
    cls: type[GdosError] | None = by_code.get(code) if code else None
    if cls is None:
        by_status: dict[int, type[GdosError]] = {
            400: BadRequestError,
            401: AuthError,
            403: PermissionDenied,
            404: NotFoundError,
            409: ConflictError,
            413: TooLargeError,
            415: UnsupportedMediaType,
            422: ValidationError,
            429: RateLimitedError,
            502: RemoteError,
            503: TransportError,
        }
        cls = by_status.get(status, GdosError)
    err_obj = cls(message, details=details)
    return err_obj
