"""The GDOS master: REST API, agent channel, web console, all on one Hypercorn server."""

from __future__ import annotations

from gdos_sdk.__about__ import __version__

__all__ = ["__version__"]
