"""The GDOS master: REST API, agent channel, web console, all on one Hypercorn server."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
