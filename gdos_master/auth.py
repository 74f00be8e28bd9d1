"""Who is calling: browser sessions, API tokens and node credentials.

Three credential kinds reach the master:

* a browser session: an HttpOnly ``gdos_session`` cookie, plus a CSRF token
  that mutating requests repeat in the ``X-CSRF-Token`` header;
* an API token: ``Authorization: Bearer gdos_...`` (scripts, the SDK);
* a node credential: ``Authorization: Bearer gdosn_...``, valid only on the
  agent endpoints; anywhere else it is refused with 403.
"""

from __future__ import annotations

import hmac
import time
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any

import attrs
from quart import request, websocket

from gdos_master.security import hash_secret
from gdos_sdk.errors import AuthError, PermissionDenied, RateLimitedError
from gdos_sdk.models import Role

if TYPE_CHECKING:
    from gdos_master.db import Database

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "NODE_PREFIX",
    "SESSION_COOKIE",
    "TOKEN_PREFIX",
    "LoginLimiter",
    "Principal",
    "authenticate",
    "authenticate_headers",
    "authenticate_websocket",
    "check_csrf",
]

SESSION_COOKIE = "gdos_session"
CSRF_COOKIE = "gdos_csrf"
CSRF_HEADER = "X-CSRF-Token"
TOKEN_PREFIX = "gdos_"
NODE_PREFIX = "gdosn_"


@attrs.frozen
class Principal:
    """An authenticated caller."""

    kind: str  # session, token, node
    role: Role
    user_id: str = ""
    username: str = ""
    token_id: str = ""
    node_id: str = ""
    csrf: str = ""

    @property
    def label(self) -> str:
        if self.kind == "node":
            return f"node:{self.node_id}"
        if self.kind == "token":
            return f"{self.username} (token {self.token_id[:8]})"
        return self.username


def _bearer(headers: Any) -> str | None:
    value = headers.get("Authorization", "")
    if value[:7].lower() == "bearer ":
        return str(value[7:].strip())
    return None


def authenticate_headers(db: Database, headers: Any, cookies: Any) -> Principal:
    """Resolve a credential from request headers/cookies, or raise AuthError."""
    now = time.time()
    token = _bearer(headers)
    if token is not None:
        if token.startswith(NODE_PREFIX):
            row = db.one("SELECT id FROM nodes WHERE credential_hash = ?", (hash_secret(token),))
            if row is None:
                raise AuthError("unknown or revoked node credential")
            return Principal(kind="node", role=Role.VIEWER, node_id=row["id"])
        row = db.one(
            "SELECT t.id, t.role, t.expires_at, t.revoked, u.id AS uid, u.username, u.role AS"
            " urole, u.disabled FROM api_tokens t JOIN users u ON u.id = t.user_id"
            " WHERE t.secret_hash = ?",
            (hash_secret(token),),
        )
        if row is None or row["revoked"] or row["disabled"]:
            raise AuthError("invalid or revoked API token")
        if row["expires_at"] is not None and row["expires_at"] < now:
            raise AuthError("API token has expired")
        # A token never carries more than its owner's current role.
        role = min(Role(row["role"]), Role(row["urole"]), key=lambda r: r.rank)
        return Principal(
            kind="token",
            role=role,
            user_id=row["uid"],
            username=row["username"],
            token_id=row["id"],
        )
    session = cookies.get(SESSION_COOKIE)
    if session:
        row = db.one(
            "SELECT s.csrf, s.expires_at, u.id, u.username, u.role, u.disabled FROM sessions s"
            " JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?",
            (hash_secret(session),),
        )
        if row is None or row["disabled"] or row["expires_at"] < now:
            raise AuthError("session expired; log in again")
        return Principal(
            kind="session",
            role=Role(row["role"]),
            user_id=row["id"],
            username=row["username"],
            csrf=row["csrf"],
        )
    raise AuthError("authentication required: log in or send 'Authorization: Bearer <token>'")


async def authenticate(master: Any) -> Principal:
    """The caller of the current HTTP request."""
    return authenticate_headers(master.db, request.headers, request.cookies)


def authenticate_websocket(master: Any) -> Principal:
    """The caller of the current WebSocket handshake."""
    return authenticate_headers(master.db, websocket.headers, websocket.cookies)


def check_csrf(principal: Principal) -> None:
    """Browser sessions must echo their CSRF token on every mutating request."""
    if principal.kind != "session":
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent, principal.csrf):
        raise PermissionDenied(f"missing or wrong {CSRF_HEADER} header")


class LoginLimiter:
    """Failed logins per (client address, username) in a sliding window."""

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def check(self, ip: str, username: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        failures = self._recent((ip, username), now)
        if len(failures) >= self.attempts:
            retry = int(failures[0] + self.window - now) + 1
            raise RateLimitedError(
                f"too many failed logins; retry in {retry} s", details={"retry_after": retry}
            )

    def failed(self, ip: str, username: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._recent((ip, username), now).append(now)
        if len(self._failures) > 10_000:  # bound memory under a spray of usernames
            for key in [k for k, v in self._failures.items() if not v]:
                del self._failures[key]

    def succeeded(self, ip: str, username: str) -> None:
        self._failures.pop((ip, username), None)
