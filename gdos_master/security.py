"""Secrets: password hashing, random credentials, and redaction (pure, no I/O).

Redaction itself lives in :mod:`gdos_sdk.redaction` (the worker's logs use it too); it is
re-exported here for the master's modules.

Passwords use scrypt from the standard library (memory-hard, no extra
dependency) at OWASP's cost: N=2^17, r=8, p=1, which takes 128 MiB and about
half a second per hash. The cost is written into each hash, so hashes made
at an older cost still verify (and are redone at the current cost on the
next login, see :func:`needs_rehash`). API tokens, session ids and node
credentials are 256-bit random values, so a plain SHA-256 of them is enough
to store: nobody can brute-force a 256-bit preimage, and lookup by hash stays
an index hit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from gdos_sdk.config import MAX_PASSWORD_COST
from gdos_sdk.redaction import REDACTED, is_secret_key, redact

__all__ = [
    "PASSWORD_COST",
    "REDACTED",
    "dummy_password_hash",
    "hash_password",
    "hash_secret",
    "is_secret_key",
    "needs_rehash",
    "new_secret",
    "redact",
    "scrypt_memory",
    "verify_password",
]

#: log2 of scrypt's N: 17 is OWASP's recommendation (N=2^17, r=8, p=1: 128 MiB per hash).
PASSWORD_COST = 17

_SCRYPT_R = 8
_SCRYPT_P = 1


def scrypt_memory(n: int, r: int = _SCRYPT_R, p: int = _SCRYPT_P) -> int:
    """Bytes one scrypt computation allocates (what OpenSSL's ``maxmem`` must allow)."""
    return 128 * r * (n + 2) + 128 * r * p


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL refuses more than 32 MiB unless told otherwise; allow exactly what N needs.
    maxmem = scrypt_memory(n, r, p) + 1024 * 1024
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


def _encode(n: int, salt: bytes, digest: bytes) -> str:
    return "$".join(
        [
            "scrypt",
            str(n),
            str(_SCRYPT_R),
            str(_SCRYPT_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def hash_password(password: str, *, cost: int = PASSWORD_COST) -> str:
    """A self-describing scrypt hash: ``scrypt$n$r$p$salt$hash`` (CPU-bound: ~0.5 s at cost 17).

    Example::

        stored = hash_password("s3cret")
        verify_password("s3cret", stored)  # True
    """
    salt = secrets.token_bytes(16)
    n = 2**cost
    return _encode(n, salt, _scrypt(password, salt, n, _SCRYPT_R, _SCRYPT_P, 32))


def dummy_password_hash(*, cost: int = PASSWORD_COST) -> str:
    """A hash of no password at ``cost``: checking any password against it costs a real check.

    Used for unknown user names, so that they take as long as known ones. It is made of
    random bytes, not computed, so making it costs nothing.
    """
    return _encode(2**cost, secrets.token_bytes(16), secrets.token_bytes(32))


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return None
        return int(n), int(r), int(p), base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except (ValueError, TypeError):
        return None


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; constant-time comparison."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, expected = parsed
    if not 1 < n <= 2**MAX_PASSWORD_COST or scrypt_memory(n, r, p) > 2 * 2**30:
        return False  # not a hash this master would make; do not allocate for it
    try:
        digest = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def needs_rehash(stored: str, *, cost: int = PASSWORD_COST) -> bool:
    """True when ``stored`` was made with other parameters than ``cost`` (redo it at login)."""
    parsed = _parse(stored)
    return parsed is None or parsed[:3] != (2**cost, _SCRYPT_R, _SCRYPT_P)


def new_secret(prefix: str) -> str:
    """A random credential such as ``gdos_...`` (token) or ``gdosn_...`` (node)."""
    return f"{prefix}{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    """Storage form of a high-entropy secret."""
    return hashlib.sha256(secret.encode()).hexdigest()
