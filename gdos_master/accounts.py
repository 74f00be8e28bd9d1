"""Users, API tokens and browser sessions.

The first start creates one admin. Its password comes from
``auth.admin_password`` or is random and returned to the caller, which prints
it once; only its scrypt hash is stored. A random one must be changed at the
first login (``must_change_password``); a configured one was chosen by whoever
configured it, and is not.

Whatever changes a user's rights or credentials (role, disabled, password,
deletion, a revoked token, a logout) calls the :attr:`Accounts.on_change`
listeners with the user's id: the live channel and the terminal relay check
that user's open sockets again at once.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from gdos_master.db import Database
from gdos_master.passwords import PasswordHasher
from gdos_master.security import hash_password, hash_secret, needs_rehash, new_secret
from gdos_sdk.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ValidationError,
)
from gdos_sdk.models import (
    PASSWORD,
    ApiToken,
    Role,
    TokenCreate,
    TokenCreated,
    User,
    UserCreate,
    UserPatch,
)

__all__ = ["Accounts"]

log = logging.getLogger("gdos.master.accounts")


def _check_password(password: str, path: str = "$.new_password") -> None:
    """A new password chosen after the body was read: the models' own PASSWORD check."""
    PASSWORD.validate(password, path)


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class Accounts:
    """CRUD for users and tokens, plus login and sessions."""

    def __init__(self, db: Database, *, session_hours: float, hasher: PasswordHasher) -> None:
        self.db = db
        self.session_seconds = session_hours * 3600
        self.hasher = hasher
        #: Called with a user id whenever that user's rights or credentials changed.
        self.on_change: list[Callable[[str], None]] = []

    def _changed(self, user_id: str) -> None:
        for listener in self.on_change:
            try:
                listener(user_id)
            except Exception:  # a listener's failure must not undo the change
                log.exception("rights-change listener failed for user %s", user_id)

    # --- users ------------------------------------------------------------------------------

    def _user(self, r: sqlite3.Row) -> User:
        return User(
            id=r["id"],
            username=r["username"],
            role=Role(r["role"]),
            created_at=datetime.fromtimestamp(r["created_at"], UTC),
            disabled=bool(r["disabled"]),
            must_change_password=bool(r["must_change_password"]),
        )

    def ensure_admin(self, username: str, password: str) -> str | None:
        """Create the first admin if there are no users; return the password to print.

        A generated password must be changed at the first login; a configured one is kept.
        """
        if self.db.scalar("SELECT COUNT(*) FROM users"):
            return None
        chosen = password or secrets.token_urlsafe(12)
        hashed = hash_password(chosen, cost=self.hasher.cost)  # once, before serving
        self.db.execute(
            "INSERT INTO users(id, username, password_hash, role, created_at,"
            " must_change_password) VALUES(?,?,?,?,?,?)",
            (str(uuid.uuid4()), username, hashed, Role.ADMIN.value, time.time(), int(not password)),
        )
        return None if password else chosen

    def list_users(self) -> list[User]:
        return [self._user(r) for r in self.db.all("SELECT * FROM users ORDER BY username")]

    def get_user(self, user_id: str) -> User:
        row = self.db.one("SELECT * FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise NotFoundError(f"no user with id {user_id!r}")
        return self._user(row)

    async def create_user(self, body: UserCreate) -> User:
        if self.db.one("SELECT 1 FROM users WHERE username = ?", (body.username,)):
            raise ConflictError(f"user {body.username!r} already exists")
        hashed = await self.hasher.hash(body.password)
        user_id = str(uuid.uuid4())
        self.db.execute(
            "INSERT INTO users(id, username, password_hash, role, created_at) VALUES(?,?,?,?,?)",
            (user_id, body.username, hashed, body.role.value, time.time()),
        )
        return self.get_user(user_id)

    async def patch_user(self, user_id: str, body: UserPatch) -> User:
        user = self.get_user(user_id)
        demoting = (body.role is not None and body.role != Role.ADMIN) or body.disabled
        if user.role == Role.ADMIN and demoting:
            self._keep_an_admin(user_id)
        hashed = None
        if body.password is not None:  # UserPatch checked its length already
            hashed = await self.hasher.hash(body.password)
        with self.db.transaction():
            if body.role is not None:
                self.db.execute(
                    "UPDATE users SET role = ? WHERE id = ?", (body.role.value, user_id)
                )
            if body.disabled is not None:
                self.db.execute(
                    "UPDATE users SET disabled = ? WHERE id = ?", (int(body.disabled), user_id)
                )
            if hashed is not None:
                self.db.execute(
                    "UPDATE users SET password_hash = ? WHERE id = ?", (hashed, user_id)
                )
                # A new password ends every browser session of that user.
                self.db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
        self._changed(user_id)
        return self.get_user(user_id)

    def delete_user(self, user_id: str) -> None:
        user = self.get_user(user_id)
        if user.role == Role.ADMIN:
            self._keep_an_admin(user_id)
        self.db.execute("DELETE FROM users WHERE id = ?", (user_id,))
        self._changed(user_id)

    async def change_password(self, user_id: str, current: str, new: str) -> User:
        """A user sets their own password; every browser session of theirs ends.

        Raises :class:`AuthError` when ``current`` is wrong (the caller counts it as a
        failed login) and :class:`ValidationError` for an unacceptable new password.
        """
        row = self.db.one("SELECT * FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise NotFoundError(f"no user with id {user_id!r}")
        if not await self.hasher.verify(current, row["password_hash"]):
            raise AuthError("the current password is wrong")
        _check_password(new)
        if new == current:
            raise ValidationError(
                "the new password must differ from the current one",
                details=[{"path": "$.new_password", "message": "same as the current password"}],
            )
        hashed = await self.hasher.hash(new)
        with self.db.transaction():
            self.db.execute(
                "UPDATE users SET password_hash = ?, must_change_password = 0 WHERE id = ?",
                (hashed, user_id),
            )
            self.db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
        self._changed(user_id)
        return self.get_user(user_id)

    def _keep_an_admin(self, user_id: str) -> None:
        others = self.db.scalar(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND id != ?",
            (user_id,),
        )
        if not others:
            raise ConflictError("this is the last active admin; create another admin first")

    # --- sessions ---------------------------------------------------------------------------

    async def login(self, username: str, password: str) -> tuple[str, str, User]:
        """Check credentials; return (session id, CSRF token, user)."""
        row = self.db.one("SELECT * FROM users WHERE username = ?", (username,))
        # An unknown name is checked against a dummy hash of the same cost, on the same
        # path, so timing does not tell which names exist.
        stored = row["password_hash"] if row is not None else None
        ok = await self.hasher.verify(password, stored)
        if row is None or not ok or row["disabled"]:
            raise AuthError("wrong username or password")
        if needs_rehash(row["password_hash"], cost=self.hasher.cost):
            await self._rehash(row["id"], password)
        session_id, csrf = self.new_session(row["id"])
        return session_id, csrf, self._user(row)

    async def _rehash(self, user_id: str, password: str) -> None:
        """Store the password again at the current cost (it was hashed at an older one)."""
        with contextlib.suppress(RateLimitedError):  # busy: the next login does it
            hashed = await self.hasher.hash(password)
            self.db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, user_id))

    def new_session(self, user_id: str) -> tuple[str, str]:
        """Start a browser session for ``user_id``; return (session id, CSRF token)."""
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        now = time.time()
        self.db.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
        self.db.execute(
            "INSERT INTO sessions(id_hash, user_id, csrf, created_at, expires_at)"
            " VALUES(?,?,?,?,?)",
            (hash_secret(session_id), user_id, csrf, now, now + self.session_seconds),
        )
        return session_id, csrf

    def logout(self, session_id: str) -> None:
        id_hash = hash_secret(session_id)
        row = self.db.one("SELECT user_id FROM sessions WHERE id_hash = ?", (id_hash,))
        self.db.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))
        if row is not None:
            self._changed(row["user_id"])

    # --- tokens -----------------------------------------------------------------------------

    def _token(self, r: sqlite3.Row) -> ApiToken:
        return ApiToken(
            id=r["id"],
            name=r["name"],
            user_id=r["user_id"],
            username=r["username"],
            role=Role(r["role"]),
            prefix=r["prefix"],
            created_at=datetime.fromtimestamp(r["created_at"], UTC),
            expires_at=_ts(r["expires_at"]),
            revoked=bool(r["revoked"]),
        )

    def list_tokens(self, user_id: str | None) -> list[ApiToken]:
        rows = self.db.all(
            "SELECT t.*, u.username FROM api_tokens t JOIN users u ON u.id = t.user_id"
            " WHERE (? IS NULL OR t.user_id = ?) ORDER BY t.created_at",
            (user_id, user_id),
        )
        return [self._token(r) for r in rows]

    def get_token(self, token_id: str) -> ApiToken:
        row = self.db.one(
            "SELECT t.*, u.username FROM api_tokens t JOIN users u ON u.id = t.user_id"
            " WHERE t.id = ?",
            (token_id,),
        )
        if row is None:
            raise NotFoundError(f"no API token with id {token_id!r}")
        return self._token(row)

    def create_token(self, user: User, body: TokenCreate) -> TokenCreated:
        name = body.name.strip()
        role = body.role or user.role
        if not user.role.allows(role):
            raise ValidationError(
                f"a token cannot have more than its owner's role ({user.role.value})",
                details=[{"path": "$.role", "message": "above the owner's role"}],
            )
        expires_at = None
        if body.expires_in_days is not None:
            expires_at = time.time() + body.expires_in_days * 86400
        secret = new_secret("gdos_")
        token_id = str(uuid.uuid4())
        self.db.execute(
            "INSERT INTO api_tokens(id, user_id, name, role, prefix, secret_hash, created_at,"
            " expires_at) VALUES(?,?,?,?,?,?,?,?)",
            (
                token_id,
                user.id,
                name,
                role.value,
                secret[:9],
                hash_secret(secret),
                time.time(),
                expires_at,
            ),
        )
        return TokenCreated(token=self.get_token(token_id), secret=secret)

    def revoke_token(self, token_id: str) -> ApiToken:
        token = self.get_token(token_id)
        self.db.execute("UPDATE api_tokens SET revoked = 1 WHERE id = ?", (token_id,))
        self._changed(token.user_id)
        return self.get_token(token_id)
