"""``--help`` text of the server commands, generated from the settings classes.

Every option of :class:`~gdos_sdk.config.MasterSettings` / :class:`~gdos_sdk.config.WorkerSettings`
is listed with its flag (if it has one), default, environment variable, YAML key and one line
of meaning, read from the same definitions the loader uses: the help cannot drift from what
the command accepts.

Example::

    print(render_help(MasterSettings, prog="gdos-master", summary="Run the master.",
                      usage=["[FLAGS]"], env_prefix="OPS_MASTER_", default_file="config.yaml"))
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from typing import Any

import attrs

from gdos_sdk.config import Option, iter_options

__all__ = ["HELP_FLAGS", "VERSION_FLAGS", "Flag", "has_flag", "render_help"]

HELP_FLAGS = frozenset({"-h", "-help", "--help"})
VERSION_FLAGS = frozenset({"-version", "--version"})

WIDTH = 100
INDENT = 26  # column where descriptions start


@attrs.frozen
class Flag:
    """A flag the command handles itself (``-config``, ``-autostart``, ``-to``...)."""

    name: str
    metavar: str
    help: str


def _metavar(option: Option) -> str:
    if option.type is bool:
        return "BOOL"
    if option.type is int:
        return "N"
    if option.type is float:
        return "NUMBER"
    name = option.name
    if option.many:
        return "URL[,URL...]" if name.endswith("url") else "VALUE[,VALUE...]"
    if name == "listen":
        return "ADDR"
    if name.endswith("_dir"):
        return "DIR"
    if name.endswith(("_url", "url")) or option.flag == "master":
        return "URL"
    if name in {"path", "tls_cert", "tls_key", "ca_file"}:
        return "FILE"
    return "VALUE"


def _default(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _entry(head: str, lines: Sequence[str]) -> list[str]:
    """``head`` in the left column, ``lines`` wrapped in the right one."""
    out: list[str] = []
    pad = " " * INDENT
    first = f"  {head}"
    wrapped: list[str] = []
    for line in lines:
        wrapped += textwrap.wrap(line, WIDTH - INDENT, break_on_hyphens=False) or [""]
    if len(first) < INDENT - 1:
        out.append(first.ljust(INDENT) + wrapped[0])
        rest = wrapped[1:]
    else:
        out.append(first)
        rest = wrapped
    out += [pad + line for line in rest]
    return out


def _meaning(option: Option) -> str:
    if option.default == "" and "default" in option.help:
        return option.help  # the help says what an empty value means
    return f"{option.help} [default {_default(option.default)}]"


def render_help(
    cls: type[Any],
    *,
    prog: str,
    summary: str,
    usage: Sequence[str],
    env_prefix: str,
    default_file: str,
    flags: Sequence[Flag] = (),
    footer: str = "",
) -> str:
    """The full ``--help`` text of a command whose settings are ``cls``.

    Parameters:
        cls: the settings class (its options are listed).
        prog: the command's name, shown in the usage lines.
        summary: what the command does, one or two sentences.
        usage: usage lines after ``prog`` (``["[FLAGS]", "migrate-storage -to ..."]``).
        env_prefix: ``OPS_MASTER_`` or ``OPS_WORKER_``.
        default_file: the YAML file read when there is no ``-config``.
        flags: the command's own flags, listed before the settings' flags.
        footer: a closing paragraph (where the docs are).
    """
    options = iter_options(cls)
    lines = [f"usage: {prog} {usage[0]}"]
    lines += [f"       {prog} {u}" for u in usage[1:]]
    lines += ["", *textwrap.wrap(summary, WIDTH), ""]
    lines += textwrap.wrap(
        "Each setting is taken from the first of: its flag (-name VALUE, -name=VALUE, one dash"
        f" or two), its environment variable, the YAML file (./{default_file}, or -config FILE),"
        " its default.",
        WIDTH,
    )
    lines += ["", "Flags:"]
    for flag in flags:
        lines += _entry(f"-{flag.name} {flag.metavar}".rstrip(), [flag.help])
    for option in options:
        if option.flag is None:
            continue
        meaning = [_meaning(option), f"env {option.env_name(env_prefix)}, file {option.key}"]
        if option.secret:
            meaning.append("secret: prefer the variable or the file (flags show in ps)")
        lines += _entry(f"-{option.flag} {_metavar(option)}", meaning)
    lines += _entry("-h, --help", ["show this help and exit"])
    lines += _entry("--version", ["print the version and exit"])
    lines += ["", "Settings without a flag (environment variable or file key):"]
    for option in options:
        if option.flag is not None:
            continue
        lines += _entry(
            option.env_name(env_prefix),
            [_meaning(option), f"file {option.key}"],
        )
    if footer:
        lines += ["", *textwrap.wrap(footer, WIDTH)]
    return "\n".join(lines) + "\n"


def has_flag(args: Sequence[str], names: frozenset[str]) -> bool:
    """True when one of ``names`` stands where a flag stands in ``args``.

    Every setting flag takes a value, so the token after one is its value, never a flag
    (``-join_token --help`` sets an odd token, it asks for no help).

    Example::

        has_flag(["-port", ":9", "--help"], HELP_FLAGS)  # True
    """
    i = 0
    while i < len(args):
        token = args[i]
        if token in names:
            return True
        i += 1 if "=" in token or not token.startswith("-") else 2
    return False
