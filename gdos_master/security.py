"""Secrets: password hashing, random credentials, and redaction (pure, no I/O).

Passwords use scrypt from the standard library (memory-hard, no extra
dependency). API tokens, session ids and node credentials are 256-bit random
values, so a plain SHA-256 of them is enough to store: nobody can brute-force
a 256-bit preimage, and lookup by hash stays an index hit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Collection
from typing import Any

from gdos_sdk.redaction import is_secret_env, mask_url

__all__ = [
    "REDACTED",
    "hash_password",
    "hash_secret",
    "is_secret_key",
    "new_secret",
    "redact",
    "verify_password",
]

REDACTED = "***"

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


_SECRET_KEY = re.compile(
    r"(pass(word)?|secret|token|credential|api[_-]?key|access[_-]?key|private|authorization|cookie)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """True for keys whose values must never be logged or echoed."""
    return bool(_SECRET_KEY.search(key))


def redact(value: Any, *, secret_env: Collection[str] = ()) -> Any:
    """A copy of JSON-like ``value`` with secret-looking keys' values replaced.

    An ``env`` map is masked as the API shows it (``gdos_sdk.redaction.mask_env``: by
    name, by the ``secret_env`` beside it or given here, by a URL value with a
    password); a ``url`` keeps its scheme, host and port only.

    Example::

        redact({"username": "a", "password": "x"})  # {"username": "a", "password": "***"}
    """
    if isinstance(value, dict):
        explicit = set(secret_env)
        if isinstance(value.get("secret_env"), list):
            explicit |= {str(v) for v in value["secret_env"]}
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if is_secret_key(str(k)) and v not in (None, ""):
                out[k] = REDACTED
            elif k == "env" and isinstance(v, dict):
                out[k] = {
                    name: REDACTED
                    if isinstance(val, str) and is_secret_env(str(name), val, explicit)
                    else val
                    for name, val in v.items()
                }
            elif k == "url" and isinstance(v, str):
                out[k] = mask_url(v)
            else:
                out[k] = redact(v, secret_env=secret_env)
        return out
    if isinstance(value, list):
        return [redact(v, secret_env=secret_env) for v in value]
    return value
