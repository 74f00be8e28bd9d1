"""Users, API tokens and browser sessions.

The first start creates one admin. Its password comes from
``auth.admin_password`` or is random and returned to the caller, which prints
it once; only its scrypt hash is stored.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
import uuid
from datetime import UTC, datetime

import anyio.to_thread

from gdos_master.db import Database
from gdos_master.security import hash_password, hash_secret, new_secret, verify_password
from gdos_sdk.errors import AuthError, ConflictError, NotFoundError, ValidationError
from gdos_sdk.models import ApiToken, Role, TokenCreate, TokenCreated, User, UserCreate, UserPatch

__all__ = ["Accounts"]

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValidationError(
            f"password must have at least {MIN_PASSWORD} characters",
            details=[{"path": "$.password", "message": "too short"}],
        )


class Accounts:
    """CRUD for users and tokens, plus login and sessions."""

    def __init__(self, db: Database, *, session_hours: float) -> None:
        self.db = db
        self.session_seconds = session_hours * 3600

    # --- users ------------------------------------------------------------------------------

    def _user(self, r: sqlite3.Row) -> User:
        return User(
            id=r["id"],
            username=r["username"],
            role=Role(r["role"]),
            created_at=datetime.fromtimestamp(r["created_at"], UTC),
            disabled=bool(r["disabled"]),
        )

    def ensure_admin(self, username: str, password: str) -> str | None:
        """Create the first admin if there are no users; return the password to print."""
        if self.db.scalar("SELECT COUNT(*) FROM users"):
            return None
        chosen = password or secrets.token_urlsafe(12)
        self.db.execute(
            "INSERT INTO users(id, username, password_hash, role, created_at) VALUES(?,?,?,?,?)",
            (str(uuid.uuid4()), username, hash_password(chosen), Role.ADMIN.value, time.time()),
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
        if not _USERNAME.match(body.username):
            raise ValidationError(
                "username must be 1-64 letters, digits or . _ @ -",
                details=[{"path": "$.username", "message": "invalid characters or length"}],
            )
        _check_password(body.password)
        if self.db.one("SELECT 1 FROM users WHERE username = ?", (body.username,)):
            raise ConflictError(f"user {body.username!r} already exists")
        hashed = await anyio.to_thread.run_sync(hash_password, body.password)
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
        if body.password is not None:
            _check_password(body.password)
            hashed = await anyio.to_thread.run_sync(hash_password, body.password)
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
        return self.get_user(user_id)

    def delete_user(self, user_id: str) -> None:
        user = self.get_user(user_id)
        if user.role == Role.ADMIN:
            self._keep_an_admin(user_id)
        self.db.execute("DELETE FROM users WHERE id = ?", (user_id,))

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
        # Hash even for unknown users so timing does not reveal which names exist.
        stored = row["password_hash"] if row is not None else hash_password("x" * 12)
        ok = await anyio.to_thread.run_sync(verify_password, password, stored)
        if row is None or not ok or row["disabled"]:
            raise AuthError("wrong username or password")
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        now = time.time()
        self.db.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
        self.db.execute(
            "INSERT INTO sessions(id_hash, user_id, csrf, created_at, expires_at)"
            " VALUES(?,?,?,?,?)",
            (hash_secret(session_id), row["id"], csrf, now, now + self.session_seconds),
        )
        return session_id, csrf, self._user(row)

    def logout(self, session_id: str) -> None:
        self.db.execute("DELETE FROM sessions WHERE id_hash = ?", (hash_secret(session_id),))

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
        if not name or len(name) > 100:
            raise ValidationError(
                "token name must be 1-100 characters",
                details=[{"path": "$.name", "message": "empty or too long"}],
            )
        role = body.role or user.role
        if not user.role.allows(role):
            raise ValidationError(
                f"a token cannot have more than its owner's role ({user.role.value})",
                details=[{"path": "$.role", "message": "above the owner's role"}],
            )
        expires_at = None
        if body.expires_in_days is not None:
            if not 1 <= body.expires_in_days <= 3650:
                raise ValidationError(
                    "expires_in_days must be between 1 and 3650",
                    details=[{"path": "$.expires_in_days", "message": "out of range"}],
                )
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
        self.get_token(token_id)
        self.db.execute("UPDATE api_tokens SET revoked = 1 WHERE id = ?", (token_id,))
        return self.get_token(token_id)
