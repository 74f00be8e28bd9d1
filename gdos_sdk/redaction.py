"""Keeping secrets out of logs, audit details and API output (pure, no I/O).

Two layers: :func:`redact` replaces the values of secret-looking keys in JSON-like data
(audit parameters, log fields), and :func:`scrub` masks credentials that have a recognisable
shape inside free text (log messages, tracebacks): ``Bearer ...`` headers, GDOS API tokens
and node credentials, and ``password=`` / ``token=`` style pairs.

Example::

    redact({"username": "a", "password": "x"})  # {"username": "a", "password": "***"}
    scrub("Authorization: Bearer gdos_Zm9v...")  # "Authorization: Bearer ***"
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["REDACTED", "is_secret_key", "redact", "scrub"]

REDACTED = "***"

_SECRET_KEY = re.compile(
    r"(pass(word)?|secret|token|credential|api[_-]?key|access[_-]?key|private|authorization|cookie)",
    re.IGNORECASE,
)

# Credentials with a shape: bearer values, gdos_/gdosn_ secrets (256-bit url-safe), and
# key=value and "key": "value" pairs whose key names a secret.
_SHAPED = re.compile(
    r"(?P<bearer>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+"
    r"|\bgdosn?_[A-Za-z0-9_-]{20,}"
    r"|(?P<pair>\b[\w-]*(?:pass(?:word)?|secret|token|credential|api[_-]?key|access[_-]?key)"
    r"[\w-]*(?:\s*=\s*|[\"']\s*:\s*[\"']))(?P<value>[^\s\"'&,;}]+)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """True for keys whose values must never be logged or echoed."""
    return bool(_SECRET_KEY.search(key))


def redact(value: Any) -> Any:
    """A copy of JSON-like ``value`` with secret-looking keys' values replaced.

    Example::

        redact({"username": "a", "password": "x"})  # {"username": "a", "password": "***"}
    """
    if isinstance(value, dict):
        return {
            k: (REDACTED if is_secret_key(str(k)) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _mask(match: re.Match[str]) -> str:
    if match["bearer"]:
        return match["bearer"] + REDACTED
    if match["pair"]:
        return match["pair"] + REDACTED
    return REDACTED


def scrub(text: str) -> str:
    """``text`` with credential-shaped substrings masked (for free text such as log lines).

    Example::

        scrub("login failed: password=hunter2 user=bob")  # "... password=*** user=bob"
    """
    return _SHAPED.sub(_mask, text)
