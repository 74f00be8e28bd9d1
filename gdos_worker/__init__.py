"""The GDOS worker: supervises instances on one node and talks to the master."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
