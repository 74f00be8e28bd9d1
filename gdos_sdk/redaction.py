"""Keeping secrets out of API output, audit details and logs (pure, no I/O).

Three layers: write-only values in API answers (below), :func:`redact` for JSON-like data
(audit parameters, log fields: secret-looking keys, env maps and URLs), and :func:`scrub`
for free text (log messages, tracebacks): ``Bearer ...`` headers, GDOS API tokens and node
credentials, and ``password=`` / ``token=`` style pairs.

Write-only values: module env secrets and credentials in URLs (docs/security.md, "Secrets").

A secret the master stores for a service is written through the API and never
read back through it, by anyone (admins included, as Vault and Nomad do): the
answer shows that it is set, as :data:`MASK`, not what it is. The worker gets
the real value in the deploy command.

* An env variable is secret when its name looks like one (``*PASSWORD*``,
  ``*SECRET*``, ``*TOKEN*``, ``*KEY*``, ``*CREDENTIAL*``, ...), when the module
  lists it in ``secret_env``, or when its value is a URL that carries a password
  (``postgres://app:pw@db/app``).
* A URL (a webhook receiver's) is shown as its scheme, host and port only: the
  user info, path, query and fragment can each hold a credential (Slack and
  Discord put theirs in the path), so they are replaced by :data:`MASK`.

Editing keeps what it cannot see: :func:`merge_env` keeps a secret variable a
patch does not name, or names with the value :data:`MASK` (what a read gave);
:func:`keeps_url` tells a receiver update that the URL it got is the shown one.

Pure, no I/O.

Example::

    shown, masked = mask_env({"PORT": "80", "DB_PASSWORD": "pw"})
    shown   # {"PORT": "80", "DB_PASSWORD": "***"}
    merge_env({"PORT": "80", "DB_PASSWORD": "pw"}, {"PORT": "81"})
    # {"PORT": "81", "DB_PASSWORD": "pw"}
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "MASK",
    "REDACTED",
    "is_secret_env",
    "is_secret_key",
    "keeps_url",
    "mask_env",
    "mask_url",
    "merge_env",
    "redact",
    "scrub",
    "url_hides_something",
]

#: What a write-only value reads as.
MASK = "***"
#: What a redacted value reads as in audit details and logs (the same mask).
REDACTED = MASK

_SECRET_NAME = re.compile(
    r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE",
    re.IGNORECASE,
)


def _url_with_password(value: str) -> bool:
    if "://" not in value or "@" not in value:
        return False
    try:
        return urlsplit(value.strip()).password is not None
    except ValueError:
        return False


def is_secret_env(name: str, value: str = "", explicit: Collection[str] = ()) -> bool:
    """Whether an env variable is write-only: by name, by the module's list, or by value.

    Example::

        is_secret_env("DB_PASSWORD")                       # True
        is_secret_env("DATABASE_URL", "postgres://u:p@h")  # True
        is_secret_env("REGION", "eu", explicit=["REGION"]) # True
    """
    return name in explicit or bool(_SECRET_NAME.search(name)) or _url_with_password(value)


def mask_env(
    env: Mapping[str, str], explicit: Collection[str] = ()
) -> tuple[dict[str, str], list[str]]:
    """``env`` with every secret value replaced by :data:`MASK`, and the masked names."""
    shown: dict[str, str] = {}
    masked: list[str] = []
    for name, value in env.items():
        if is_secret_env(name, value, explicit):
            shown[name] = MASK
            masked.append(name)
        else:
            shown[name] = value
    return shown, masked


def merge_env(
    stored: Mapping[str, str],
    patch: Mapping[str, str | None],
    explicit: Collection[str] = (),
) -> dict[str, str]:
    """The env after a patch that replaces the visible variables and keeps the secret ones.

    * a name with a value sets it (the value :data:`MASK` on a stored secret keeps it:
      that is what the client read);
    * a name with ``None`` removes it;
    * a stored secret the patch does not name is kept; any other stored name the
      patch does not name is removed (the patch is the new set of visible variables).

    Example::

        merge_env({"A": "1", "TOKEN": "t"}, {"B": "2"})     # {"B": "2", "TOKEN": "t"}
        merge_env({"TOKEN": "t"}, {"TOKEN": None})          # {}
    """
    result: dict[str, str] = {}
    for name, value in patch.items():
        if value is None:
            continue
        old = stored.get(name)
        if value == MASK and old is not None and is_secret_env(name, old, explicit):
            result[name] = old
        else:
            result[name] = value
    for name, value in stored.items():
        if name not in patch and is_secret_env(name, value, explicit):
            result[name] = value
    return result


def mask_url(url: str) -> str:
    """Scheme, host and port of ``url``; anything that may hold a credential becomes MASK.

    Example::

        mask_url("https://alice:pw@hooks.example.com/T1/B2/XYZ?x=1")
        # "https://***@hooks.example.com/***"
        mask_url("https://alerts.example.com/")  # unchanged: nothing to hide
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return MASK
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    shown = f"{parts.scheme}://"
    if parts.username is not None or parts.password is not None:
        shown += f"{MASK}@"
    shown += host + (f":{port}" if port is not None else "")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        shown += f"/{MASK}"
    else:
        shown += parts.path
    return shown


def url_hides_something(url: str) -> bool:
    """Whether :func:`mask_url` hides part of ``url``."""
    return mask_url(url) != url


def keeps_url(stored: str, given: str) -> bool:
    """Whether an update that sends ``given`` means "keep ``stored``" (it sent the masked form).

    Example::

        keeps_url("https://h/secret-path", "https://h/***")  # True
    """
    return given != stored and given == mask_url(stored) and url_hides_something(stored)


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


# Credentials with a shape: bearer values, gdos_/gdosn_ secrets (256-bit url-safe), and
# key=value and "key": "value" pairs whose key names a secret.
_SHAPED = re.compile(
    r"(?P<bearer>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+"
    r"|\bgdosn?_[A-Za-z0-9_-]{20,}"
    r"|(?P<pair>\b[\w-]*(?:pass(?:word)?|secret|token|credential|api[_-]?key|access[_-]?key)"
    r"[\w-]*(?:\s*=\s*|[\"']\s*:\s*[\"']))(?P<value>[^\s\"'&,;}]+)",
    re.IGNORECASE,
)


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
