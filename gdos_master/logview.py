"""The log viewer on the master: ask an instance's worker for its log files.

Every request goes over the agent channel to the worker that runs the
instance, which alone decides what may be read (console output and the
manifest's ``log_paths``; see :mod:`gdos_sdk.logfiles`). A refusal comes back
as :class:`~gdos_sdk.errors.PermissionDenied` (403, naming the problem); it is
logged here and written to the audit trail as ``log.refused``, successful
reads are not (reading is not a change).

Example::

    files = await logs.list_files(instance_id)
    chunk = await logs.read(instance_id, "console.log", lines=200)
    chunk = await logs.read(instance_id, "console.log", cursor=chunk.cursor, wait=10)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from gdos_master.audit import record_audit
from gdos_master.auth import Principal
from gdos_sdk.errors import (
    GdosError,
    NotFoundError,
    PermissionDenied,
    RemoteError,
    TransportError,
    ValidationError,
)
from gdos_sdk.logfiles import LogChunk, LogCursor, LogFile, LogSearch
from gdos_sdk.protocol import (
    Command,
    LogListCommand,
    LogReadCommand,
    LogSearchCommand,
    Response,
)

if TYPE_CHECKING:
    from gdos_master.app import Master

__all__ = ["InstanceLogs", "parse_cursor"]

log = logging.getLogger("gdos.master.logs")

REQUEST_TIMEOUT = 30.0
MAX_WAIT = 25.0

_REMOTE: dict[str, type[GdosError]] = {
    PermissionDenied.code: PermissionDenied,
    NotFoundError.code: NotFoundError,
    ValidationError.code: ValidationError,
}


def parse_cursor(text: str | None) -> LogCursor | None:
    """A cursor from its query-string form ``dev:ino:offset``."""
    if not text:
        return None
    try:
        dev, ino, offset = (int(p) for p in text.split(":"))
    except ValueError:
        raise ValidationError(
            "cursor must be 'dev:ino:offset' as a previous read returned it",
            details=[{"path": "query.cursor", "message": "expected dev:ino:offset"}],
        ) from None
    if min(dev, ino, offset) < 0:
        raise ValidationError("cursor values must not be negative")
    return LogCursor(dev, ino, offset)


class InstanceLogs:
    """List, read, follow, search and download an instance's log files through its worker."""

    def __init__(self, master: Master) -> None:
        self.master = master

    async def _ask(self, instance_id: str, command: Command, timeout: float) -> Response:
        instance = self.master.orchestrator.get(instance_id)
        conn = self.master.fleet.connection(instance.node_id)
        if conn is None:
            raise TransportError(
                f"node {instance.node_id} of instance {instance_id} is offline: its logs"
                " cannot be read now"
            )
        try:
            return await conn.ask(command, timeout)
        except RemoteError as exc:
            code = str((exc.details or {}).get("code", ""))
            cls = _REMOTE.get(code)
            if cls is None:
                raise
            raise cls(exc.message) from None

    async def list_files(self, instance_id: str) -> list[LogFile]:
        response = await self._ask(instance_id, LogListCommand(instance_id), REQUEST_TIMEOUT)
        return response.log_files or []

    async def read(
        self,
        instance_id: str,
        file: str,
        *,
        lines: int = 100,
        cursor: LogCursor | None = None,
        wait: float = 0.0,
        offset: int | None = None,
    ) -> LogChunk:
        """The last ``lines`` lines, or what follows ``cursor`` (waiting up to ``wait`` s)."""
        wait = min(max(wait, 0.0), MAX_WAIT)
        command = LogReadCommand(
            instance_id, file, lines=lines, cursor=cursor, wait=wait, offset=offset
        )
        response = await self._ask(instance_id, command, REQUEST_TIMEOUT + wait)
        if response.log_chunk is None:
            raise TransportError("the worker does not support the log viewer (upgrade it)")
        return response.log_chunk

    async def search(self, instance_id: str, file: str, query: str, limit: int) -> LogSearch:
        command = LogSearchCommand(instance_id, file, query, limit)
        response = await self._ask(instance_id, command, REQUEST_TIMEOUT * 2)
        if response.log_search is None:
            raise TransportError("the worker does not support the log viewer (upgrade it)")
        return response.log_search

    async def download(self, instance_id: str, file: str) -> AsyncIterator[bytes]:
        """The whole file, chunk by chunk; the first chunk is fetched before returning."""
        first = await self.read(instance_id, file, offset=0)

        async def chunks() -> AsyncIterator[bytes]:
            chunk = first
            while True:
                yield chunk.text.encode()
                if not chunk.more or chunk.cursor is None:
                    return
                chunk = await self.read(instance_id, file, offset=chunk.cursor.offset)

        return chunks()

    def refused(
        self, principal: Principal | None, ip: str, instance_id: str, file: str, exc: GdosError
    ) -> None:
        """Log and audit a refused path (called by the API for every 403)."""
        log.warning("refused log file %r of instance %s: %s", file, instance_id, exc.message)
        record_audit(
            self.master.db,
            principal=principal,
            ip=ip,
            action="log.refused",
            target=f"instance:{instance_id}",
            params={"file": file},
            status=exc.status,
            message=exc.message,
        )
