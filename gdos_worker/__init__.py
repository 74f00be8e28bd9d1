"""The GDOS worker: supervises instances on one node and talks to the master."""

from __future__ import annotations

from gdos_sdk.__about__ import __version__

__all__ = ["__version__"]
