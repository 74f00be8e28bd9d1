"""``gdos``: the operator's command line for a GDOS fleet, built on :mod:`gdos_sdk`.

Every command talks to the master through :class:`gdos_sdk.Client` (the same API as the
web console); the reference is docs/cli.md and ``gdos --help``.

Example::

    gdos login https://gdos.example.com
    gdos nodes
    gdos ps --state failed -o json
"""

from __future__ import annotations

from gdos_cli.app import cli, main

__all__ = ["cli", "main"]
