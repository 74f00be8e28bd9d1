"""Who is calling: browser sessions, API tokens and node credentials.

Three credential kinds reach the master:

* a browser session: an HttpOnly ``gdos_session`` cookie, plus a CSRF token
  that mutating requests repeat in the ``X-CSRF-Token`` header;
* an API token: ``Authorization: Bearer gdos_...`` (scripts, the SDK);
* a node credential: ``Authorization: Bearer gdosn_...``, valid only on the
  agent endpoints; anywhere else it is refused with 403.

What a credential resolves to is cached (:class:`CredentialCache`) for as long as the
database has not changed: revoking a token, ending a session, deleting a node, changing a
user's role or password all write the database, so the next request reads it again and
revocation stays immediate. Expiry is checked on every request.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import attrs
from quart import Request, request, websocket
from werkzeug.http import parse_cookie

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
    "CredentialCache",
    "LoginAttempt",
    "LoginLimiter",
    "Principal",
    "authenticate",
    "authenticate_headers",
    "authenticate_websocket",
    "check_csrf",
    "client_key",
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
    session_hash: str = ""  # which browser session (its id's hash), for ending its sockets
    must_change_password: bool = False

    @property
    def label(self) -> str:
        if self.kind == "node":
            return f"node:{self.node_id}"
        if self.kind == "token":
            return f"{self.username} (token {self.token_id[:8]})"
        return self.username


def _bearer(headers: Any) -> str | None:
    return bearer_token(headers.get("Authorization", ""))


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header's value, if it is one."""
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


class CredentialCache:
    """Principals of credentials seen lately, valid while the database is unchanged.

    Each API request used to hash its credential and read the database (10-13 % of a
    ``GET /nodes``). An entry here is keyed by the credential's hash and remembers the
    database's write counter (:attr:`~gdos_master.db.Database.changes`, alike on both
    engines) when it was read: any write since (a revoked token, a logout, a role change,
    a deleted node, a restored backup) makes every entry stale. Entries also keep their
    expiry, checked on every use. At most ``size`` entries; past that, the cache starts
    over.

    Several masters on one database (issue 15) must also drop entries when another master
    writes; this cache sees only this master's writes (docs/database.md).
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: dict[str, tuple[Principal, float | None]] = {}
        self._version = -1
        self.hits = 0
        self.misses = 0

    def get(self, db: Database, key: str, now: float) -> Principal | None:
        version = db.changes
        if version != self._version:
            self._entries.clear()
            self._version = version
            self.misses += 1
            return None
        found = self._entries.get(key)
        if found is None or (found[1] is not None and found[1] < now):
            self.misses += 1
            return None
        self.hits += 1
        return found[0]

    def put(self, db: Database, key: str, principal: Principal, expires: float | None) -> None:
        if db.changes != self._version:
            return  # written meanwhile: do not keep what was read before
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = (principal, expires)

    def clear(self) -> None:
        self._entries.clear()
        self._version = -1


def authenticate_headers(
    db: Database, headers: Any, cookies: Any, cache: CredentialCache | None = None
) -> Principal:
    """Resolve a credential from request headers/cookies, or raise AuthError."""
    token = _bearer(headers)
    return _principal(db, token, None if token is not None else cookies.get(SESSION_COOKIE), cache)


def _principal(
    db: Database, token: str | None, session: str | None, cache: CredentialCache | None
) -> Principal:
    """The caller with bearer ``token`` or, without one, ``session`` (the cookie's value)."""
    secret = token if token is not None else session
    if not secret:
        raise AuthError("authentication required: log in or send 'Authorization: Bearer <token>'")
    now = time.time()
    key = hash_secret(secret)
    cache_key = ("t" if token is not None else "s") + key
    if cache is not None:
        found = cache.get(db, cache_key, now)
        if found is not None:
            return found
    principal, expires = _resolve(db, token, key, now)
    if cache is not None:
        cache.put(db, cache_key, principal, expires)
    return principal


def _resolve(
    db: Database, token: str | None, key: str, now: float
) -> tuple[Principal, float | None]:
    """Read what a credential (``key``: its hash) stands for, and until when."""
    if token is not None:
        if token.startswith(NODE_PREFIX):
            row = db.one("SELECT id FROM nodes WHERE credential_hash = ?", (key,))
            if row is None:
                raise AuthError("unknown or revoked node credential")
            return Principal(kind="node", role=Role.VIEWER, node_id=row["id"]), None
        row = db.one(
            "SELECT t.id, t.role, t.expires_at, t.revoked, u.id AS uid, u.username, u.role AS"
            " urole, u.disabled, u.must_change_password FROM api_tokens t"
            " JOIN users u ON u.id = t.user_id WHERE t.secret_hash = ?",
            (key,),
        )
        if row is None or row["revoked"] or row["disabled"]:
            raise AuthError("invalid or revoked API token")
        expires: float | None = row["expires_at"]
        if expires is not None and expires < now:
            raise AuthError("API token has expired")
        # A token never carries more than its owner's current role.
        role = min(Role(row["role"]), Role(row["urole"]), key=lambda r: r.rank)
        principal = Principal(
            kind="token",
            role=role,
            user_id=row["uid"],
            username=row["username"],
            token_id=row["id"],
            must_change_password=bool(row["must_change_password"]),
        )
        return principal, expires
    row = db.one(
        "SELECT s.csrf, s.expires_at, u.id, u.username, u.role, u.disabled,"
        " u.must_change_password FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.id_hash = ?",
        (key,),
    )
    if row is None or row["disabled"] or row["expires_at"] < now:
        raise AuthError("session expired; log in again")
    principal = Principal(
        kind="session",
        role=Role(row["role"]),
        user_id=row["id"],
        username=row["username"],
        csrf=row["csrf"],
        session_hash=key,
        must_change_password=bool(row["must_change_password"]),
    )
    return principal, float(row["expires_at"])


async def authenticate(master: Any, req: Request | None = None) -> Principal:
    """The caller of the current HTTP request (``req``: that request, when at hand)."""
    found: Any = request if req is None else req
    token = _bearer(found.headers)
    # Cookies are parsed only for a caller without a bearer token (a browser).
    session = None if token is not None else found.cookies.get(SESSION_COOKIE)
    return _principal(master.db, token, session, master.credentials)


def authenticate_raw(master: Any, authorization: str, cookie: str) -> Principal:
    """The caller whose request carries these raw ``Authorization`` and ``Cookie`` header
    values (empty when absent); for code that answers below Quart (gdos_master.fastlane)."""
    token = bearer_token(authorization)
    session = None
    if token is None and cookie:  # cookies parsed only without a bearer token
        session = parse_cookie(cookie).get(SESSION_COOKIE)
    return _principal(master.db, token, session, master.credentials)


def authenticate_websocket(master: Any) -> Principal:
    """The caller of the current WebSocket handshake."""
    return authenticate_headers(master.db, websocket.headers, websocket.cookies, master.credentials)


def check_csrf(principal: Principal) -> None:
    """Browser sessions must echo their CSRF token on every mutating request."""
    if principal.kind != "session":
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent, principal.csrf):
        raise PermissionDenied(f"missing or wrong {CSRF_HEADER} header")


def client_key(ip: str) -> str:
    """The address a limit applies to: IPv4 as is, IPv6 by its /64 (one host's usual share)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class _Window:
    """Failures per key in a sliding window, plus attempts still in flight; bounded keys."""

    def __init__(self, limit: int, window: float, max_keys: int) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.failures: dict[str, deque[float]] = {}
        self.in_flight: dict[str, int] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self.failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self.failures[key]
            return None
        return failures

    def retry_after(self, key: str, now: float) -> int | None:
        """Seconds until ``key`` may try again, or None when it may now."""
        failures = self._recent(key, now)
        used = (len(failures) if failures else 0) + self.in_flight.get(key, 0)
        if used < self.limit:
            return None
        if failures and len(failures) >= self.limit:
            # The oldest failure that keeps the key over its limit leaves the window then.
            return int(failures[len(failures) - self.limit] + self.window - now) + 1
        return 1  # over the limit only by attempts in flight: they end within seconds

    def begin(self, key: str) -> None:
        self.in_flight[key] = self.in_flight.get(key, 0) + 1

    def end(self, key: str, now: float, *, failed: bool) -> None:
        left = self.in_flight.get(key, 0) - 1
        if left > 0:
            self.in_flight[key] = left
        else:
            self.in_flight.pop(key, None)
        if failed:
            self.failures.setdefault(key, deque()).append(now)
            if len(self.failures) > self.max_keys:
                self.purge(now)

    def purge(self, now: float) -> None:
        """Forget keys whose failures all left the window; then the oldest beyond ``max_keys``."""
        for key in list(self.failures):
            self._recent(key, now)
        excess = len(self.failures) - self.max_keys
        for key in list(self.failures)[: max(0, excess)]:
            del self.failures[key]


@attrs.define
class LoginAttempt:
    """One login in flight (see :meth:`LoginLimiter.attempt`)."""

    ip: str
    account: str
    ok: bool = False

    def succeeded(self) -> None:
        self.ok = True


class LoginLimiter:
    """Failed logins per client address and per account, in a sliding window.

    A client address (IPv6: its /64) may fail ``per_ip`` times per window, whatever
    names it tries; an account name may fail ``per_account`` times per window, from
    all addresses together. Logins still being checked count as failures until
    they end, so a burst of parallel requests meets the same limit as a sequence.
    An address that logged in to an account within ``trust_seconds`` is not held
    back by that account's limit (someone guessing elsewhere cannot lock its owner
    out); its own address limit still applies. Keys leave when their window has
    passed, and at most ``max_keys`` of each kind are kept, so a spray of names or
    addresses cannot grow the master's memory.

    Example::

        limiter = LoginLimiter(per_account=10, per_ip=30, window=300)
        with limiter.attempt("192.0.2.7", "admin") as attempt:  # 429 when over a limit
            ...check the password (AuthError counts as a failure)...
            attempt.succeeded()
    """

    def __init__(
        self,
        *,
        per_account: int,
        per_ip: int,
        window: float,
        trust_seconds: float = 12 * 3600,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.trust_seconds = trust_seconds
        self.max_keys = max_keys
        self.clock = clock
        self._ips = _Window(per_ip, window, max_keys)
        self._accounts = _Window(per_account, window, max_keys)
        self._trusted: dict[tuple[str, str], float] = {}  # (address, account) -> until
        self._next_purge = 0.0

    @property
    def keys(self) -> int:
        """Keys held now (addresses, accounts and trusted pairs): bounded by ``3 * max_keys``."""
        return len(self._ips.failures) + len(self._accounts.failures) + len(self._trusted)

    def _purge(self, now: float) -> None:
        if now < self._next_purge:
            return
        self._next_purge = now + min(self.window, 60.0)
        self._ips.purge(now)
        self._accounts.purge(now)
        for pair in [p for p, until in self._trusted.items() if until <= now]:
            del self._trusted[pair]

    def _trusts(self, ip: str, account: str, now: float) -> bool:
        until = self._trusted.get((ip, account))
        return until is not None and until > now

    def check(self, ip: str, username: str) -> None:
        """Raise :class:`RateLimitedError` (with ``retry_after``) if this login must wait."""
        now = self.clock()
        self._purge(now)
        key, account = client_key(ip), username[:128]
        waits = [self._ips.retry_after(key, now)]
        if not self._trusts(key, account, now):
            waits.append(self._accounts.retry_after(account, now))
        retry = max((w for w in waits if w is not None), default=None)
        if retry is not None:
            raise RateLimitedError(
                f"too many failed logins; retry in {retry} s", details={"retry_after": retry}
            )

    @contextlib.contextmanager
    def attempt(self, ip: str, username: str) -> Iterator[LoginAttempt]:
        """Check the limits, then count the login as in flight until the block ends.

        The block marks success with :meth:`LoginAttempt.succeeded`; leaving it with
        :class:`AuthError` records a failure; any other way out records nothing.
        """
        self.check(ip, username)
        attempt = LoginAttempt(ip=client_key(ip), account=username[:128])
        self._ips.begin(attempt.ip)
        self._accounts.begin(attempt.account)
        failed = False
        try:
            yield attempt
        except AuthError:
            failed = True
            raise
        finally:
            now = self.clock()
            self._ips.end(attempt.ip, now, failed=failed)
            self._accounts.end(attempt.account, now, failed=failed)
            if attempt.ok:
                self._trusted[(attempt.ip, attempt.account)] = now + self.trust_seconds
                if len(self._trusted) > self.max_keys:
                    oldest = next(iter(self._trusted))
                    del self._trusted[oldest]
