"""WebSocket compression per route under Hypercorn.

Hypercorn accepts ``permessage-deflate`` on every WebSocket whose client offers it (every
browser does) and gives the application no say. For the live channel and the agent channel
that is a good default: their JSON compresses well and is small. For the web terminal it is
not: bulk output crosses the master in frames of up to 256 KiB, and compressing them took
about a third of the master's CPU in the terminal benchmark (docs/benchmarks.md), while
keystroke echo frames are too small to gain anything. So terminal sockets are served
uncompressed.

Hypercorn 0.17/0.18 has no option for this; :func:`serve_uncompressed` wraps its
``WSStream._accept`` to drop the client's extension offer for the given path prefixes
before the handshake answer is built. When a Hypercorn version lacks that method the
wrapper is not installed (compression stays on; nothing breaks) and a warning is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

#: Routes served without permessage-deflate.
UNCOMPRESSED_PREFIXES = ("/api/v1/terminal/",)

_MARK = "_gdos_uncompressed_prefixes"


def serve_uncompressed(prefixes: tuple[str, ...] = UNCOMPRESSED_PREFIXES) -> bool:
    """Serve WebSockets under ``prefixes`` without compression; ``True`` if in effect."""
    try:
        from hypercorn.protocol.ws_stream import WSStream
    except ImportError:  # pragma: no cover - hypercorn is a dependency
        return False
    original: Callable[[Any, Any], Awaitable[None]] | None = getattr(WSStream, "_accept", None)
    if original is None:
        log.warning("this Hypercorn has no WSStream._accept; terminal sockets stay compressed")
        return False
    if getattr(original, _MARK, None) is not None:
        setattr(original, _MARK, prefixes)
        return True

    async def _accept(self: Any, message: Any) -> None:
        scope = getattr(self, "scope", None)
        handshake = getattr(self, "handshake", None)
        path = scope.get("path", "") if isinstance(scope, dict) else ""
        if handshake is not None and path.startswith(getattr(_accept, _MARK)):
            handshake.extensions = None  # as if the client had offered no extension
        await original(self, message)

    setattr(_accept, _MARK, prefixes)
    WSStream._accept = _accept  # type: ignore[method-assign]
    return True
