"""Size-based rotation of an instance's console log, safe while the service writes.

The service writes ``console.log`` directly through a descriptor opened with
``O_APPEND``, so the worker is never in its output path and a dead worker
never blocks it. Rotation therefore copies and truncates (the only way to
rotate a file another process holds open): ``console.log`` is copied to
``console.log.1`` (older copies shift up to ``backups``) and truncated; the
service's next ``O_APPEND`` write lands at the new end. Bytes written between
the copy and the truncate can be lost; the window is one copy of at most
``max_bytes``, the same trade-off as logrotate's ``copytruncate``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["rotate_if_needed"]


def rotate_if_needed(path: Path, *, max_bytes: int, backups: int) -> bool:
    """Rotate ``path`` if it is larger than ``max_bytes``; return True if it did.

    Example::

        rotate_if_needed(Path("logs/console.log"), max_bytes=10 << 20, backups=5)
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size <= max_bytes:
        return False
    if backups <= 0:
        os.truncate(path, 0)
        return True
    oldest = path.with_name(f"{path.name}.{backups}")
    oldest.unlink(missing_ok=True)
    for n in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.rename(path.with_name(f"{path.name}.{n + 1}"))
    first = path.with_name(f"{path.name}.1")
    fd = os.open(first, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(path, "rb") as src, open(fd, "wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
    os.truncate(path, 0)
    return True
