"""Write-only values: module env secrets and credentials in URLs (docs/security.md, "Secrets").

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
from urllib.parse import urlsplit

__all__ = [
    "MASK",
    "is_secret_env",
    "keeps_url",
    "mask_env",
    "mask_url",
    "merge_env",
    "url_hides_something",
]

#: What a write-only value reads as.
MASK = "***"

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
