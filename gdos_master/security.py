"""Secrets: password hashing, random credentials, and redaction (pure, no I/O).

Redaction itself lives in :mod:`gdos_sdk.redaction` (the worker's logs use it too); it is
re-exported here for the master's modules.

Passwords use scrypt from the standard library (memory-hard, no extra
dependency). API tokens, session ids and node credentials are 256-bit random
values, so a plain SHA-256 of them is enough to store: nobody can brute-force
a 256-bit preimage, and lookup by hash stays an index hit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from gdos_sdk.redaction import REDACTED, is_secret_key, redact

__all__ = [
    "REDACTED",
    "hash_password",
    "hash_secret",
    "is_secret_key",
    "new_secret",
    "redact",
    "verify_password",
]

_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1


def hash_password(password: str) -> str:
    """A self-describing scrypt hash: ``scrypt$n$r$p$salt$hash``.

    Example::

        stored = hash_password("s3cret")
        verify_password("s3cret", stored)  # True
    """
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return "$".join(
        [
            "scrypt",
            str(_SCRYPT_N),
            str(_SCRYPT_R),
            str(_SCRYPT_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; constant-time comparison."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        digest = hashlib.scrypt(
            password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def new_secret(prefix: str) -> str:
    """A random credential such as ``gdos_...`` (token) or ``gdosn_...`` (node)."""
    return f"{prefix}{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    """Storage form of a high-entropy secret."""
    return hashlib.sha256(secret.encode()).hexdigest()
