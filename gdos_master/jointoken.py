"""The cluster join token: stored as a hash, shown in clear only once.

Anyone holding the join token can enrol a node (which then waits for approval if
``auth.require_approval`` is on), so the database keeps only its SHA-256, like node
credentials and API tokens (the token is 256 random bits: a plain hash is enough). The
master prints a generated token once, at its first start; an admin who needs it again
rotates it (``POST /api/v1/settings/join-token``), which shows the new one once.

A token set in the configuration (``auth.join_token``) is used as given, never stored,
and cannot be rotated through the API. A database from before this change holds the token
in clear under ``join_token``: :func:`load` replaces it with its hash (the old token keeps
working) and scrubs the clear text from the database file.

Example::

    state = load(db, configured="")
    if state.shown_once:
        print("join token:", state.shown_once)
    state.matches(presented)  # constant-time
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING

import attrs

from gdos_master.security import hash_secret

if TYPE_CHECKING:
    from gdos_master.db import Database

__all__ = ["JoinTokenState", "load", "rotate"]

KV_HASH = "join_token_hash"
KV_CLEAR = "join_token"  # before the token was hashed


@attrs.frozen
class JoinTokenState:
    """What the master knows of its join token."""

    hash: str = attrs.field(repr=False)
    source: str  # "configuration" or "database"
    # A token generated just now: shown once (the first start prints it), else None.
    shown_once: str | None = attrs.field(default=None, repr=False)

    def matches(self, token: str) -> bool:
        """True when ``token`` is the join token (constant-time comparison)."""
        return bool(token) and hmac.compare_digest(hash_secret(token), self.hash)


def load(db: Database, *, configured: str) -> JoinTokenState:
    """The join token from the configuration, or from the database (made on first start)."""
    if configured:
        return JoinTokenState(hash=hash_secret(configured), source="configuration")
    clear = db.get_kv(KV_CLEAR)
    if clear:
        _scrub_clear(db, clear)
    stored = db.get_kv(KV_HASH)
    if stored:
        return JoinTokenState(hash=stored, source="database")
    token = _store_new(db)
    return JoinTokenState(hash=hash_secret(token), source="database", shown_once=token)


def rotate(db: Database) -> tuple[JoinTokenState, str]:
    """Replace the stored join token; return the new state and the new token (shown once)."""
    token = _store_new(db)
    return JoinTokenState(hash=hash_secret(token), source="database"), token


def _store_new(db: Database) -> str:
    token = secrets.token_urlsafe(32)
    db.set_kv(KV_HASH, hash_secret(token))
    return token


def _scrub_clear(db: Database, clear: str) -> None:
    """Keep the hash of an old clear-text token and erase the clear text from the file."""
    db.set_kv(KV_HASH, hash_secret(clear))
    conn = db.conn
    # secure_delete overwrites the freed bytes; the checkpoint empties the WAL, which
    # still holds the page as it was.
    conn.execute("PRAGMA secure_delete = ON")
    try:
        db.execute("DELETE FROM kv WHERE key = ?", (KV_CLEAR,))
    finally:
        conn.execute("PRAGMA secure_delete = OFF")
    if db.path is not None:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
