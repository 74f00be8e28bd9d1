"""Version-aware ordering for package versions.

Package versions are free-form strings chosen by their authors (``1.2.10``,
``v2.0.0-rc.1``, ``2024.01.15``, ``1.0-final``), so the order here follows
semantic versioning where a string looks like it and degrades to a sane
natural order where it does not. It never raises.

Rules, in order of precedence:

* a leading ``v``/``V`` before a digit is ignored (``v1.0`` == ``1.0``);
* ``+build`` metadata is ignored (``1.0+abc`` == ``1.0``);
* the release part is compared identifier by identifier (split on ``.``),
  numerically when both are numbers (``1.2.10 > 1.2.9``); trailing zero
  identifiers do not count (``1.0`` == ``1.0.0``);
* a pre-release (anything after the first ``-``) sorts before the release
  itself (``1.0.0-rc.1 < 1.0.0``) and pre-releases compare like semver
  (``alpha < beta``, ``rc.2 < rc.10``, numeric identifiers before words);
* inside a word, runs of digits compare as numbers (``rc10 > rc9``).

Example::

    >>> sort_versions(["1.2.10", "1.2.9", "v1.3.0-rc.1"], newest_first=True)
    ['v1.3.0-rc.1', '1.2.10', '1.2.9']
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "MAX_VERSION_LENGTH",
    "VERSION_PATTERN",
    "VersionKey",
    "is_valid_version",
    "sort_versions",
    "version_key",
]

#: Longest version string a package may carry.
MAX_VERSION_LENGTH = 64

#: What a valid version looks like (also used by the service.json schema).
VERSION_PATTERN = r"^v?[0-9][0-9A-Za-z.+_-]*$"

_VERSION_RE = re.compile(VERSION_PATTERN)
# ASCII digits only: "\d" would also match "²", which int() cannot parse.
_RUNS_RE = re.compile(r"[0-9]+|[^0-9]+")

# A comparable identifier: (0, number, ()) for numbers, (1, 0, runs) for words.
# The leading rank keeps ints and strs from ever being compared directly,
# which is what makes odd inputs safe instead of a TypeError.
_Ident = tuple[int, int, tuple[tuple[int, int, str], ...]]

#: The sort key :func:`version_key` returns: (release, (has no pre-release, pre-release)).
VersionKey = tuple[tuple[_Ident, ...], tuple[int, tuple[_Ident, ...]]]


def _runs(word: str) -> tuple[tuple[int, int, str], ...]:
    """Natural-order chunks of a word: ``rc10`` -> word 'rc', number 10."""
    return tuple(
        (0, int(run), "") if run[0] in "0123456789" else (1, 0, run)
        for run in _RUNS_RE.findall(word)
    )


def _ident(part: str) -> _Ident:
    # isascii() matters: str.isdigit() accepts '²', which int() rejects.
    if part.isascii() and part.isdigit():
        return (0, int(part), ())
    return (1, 0, _runs(part.lower()))


def version_key(version: str) -> VersionKey:
    """A key that orders version strings by version semantics; never raises.

    Parameters:
        version: any string; invalid ones still get a stable key.

    Example::

        >>> version_key("1.2.10") > version_key("1.2.9")
        True
        >>> version_key("v1.0") == version_key("1.0.0")
        True
    """
    text = version.strip()
    if len(text) > 1 and text[0] in "vV" and text[1] in "0123456789":
        text = text[1:]
    text = text.split("+", 1)[0]
    release, sep, pre = text.partition("-")
    parts = [_ident(p) for p in release.split(".")] if release else []
    # 1.0 and 1.0.0 name the same release; drop zeros that only pad.
    while parts and parts[-1] == (0, 0, ()):
        parts.pop()
    if sep:
        # semver: a pre-release sorts before the release it precedes.
        return (tuple(parts), (0, tuple(_ident(p) for p in pre.split("."))))
    return (tuple(parts), (1, ()))


def sort_versions(versions: Iterable[str], *, newest_first: bool = False) -> list[str]:
    """Sort version strings by :func:`version_key`, oldest first by default.

    Versions with equal keys (``v1.0`` and ``1.0``) keep a deterministic
    order by falling back to the plain string.

    Parameters:
        versions: the strings to sort.
        newest_first: reverse the order (what a version picker shows).

    Example::

        >>> sort_versions(["1.10", "1.9", "1.9.1"])
        ['1.9', '1.9.1', '1.10']
    """
    return sorted(versions, key=lambda v: (version_key(v), v), reverse=newest_first)


def is_valid_version(version: str) -> bool:
    """Whether ``version`` is acceptable as a package version.

    Valid means: non-empty, at most 64 characters, only ``[0-9A-Za-z.+_-]``,
    and starting with a digit or ``v`` followed by a digit.

    Example::

        >>> is_valid_version("v1.2.3-rc.1"), is_valid_version("latest")
        (True, False)
    """
    return (
        isinstance(version, str)
        and 0 < len(version) <= MAX_VERSION_LENGTH
        # fullmatch, not match: "$" alone would accept a trailing newline.
        and _VERSION_RE.fullmatch(version) is not None
    )
