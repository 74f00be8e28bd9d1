"""The worker's side of the log viewer: list, tail, follow, search and read an instance's logs.

Only names :func:`gdos_sdk.logfiles.log_sources` lists are readable (console
output and the manifest's ``log_paths``); anything else is refused with
:class:`~gdos_sdk.errors.PermissionDenied` and logged here, so the master
can answer 403 and audit the refusal. File reads run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from gdos_sdk.errors import PermissionDenied, ValidationError
from gdos_sdk.logfiles import (
    LogChunk,
    LogCursor,
    LogFile,
    LogSearch,
    LogSource,
    log_sources,
    open_log,
    read_follow,
    resolve_log_file,
    search_file,
    tail_lines,
)
from gdos_sdk.protocol import LogListCommand, LogReadCommand, LogSearchCommand
from gdos_worker.supervisor import Supervisor

__all__ = ["DOWNLOAD_CHUNK", "LogViewer"]

log = logging.getLogger("gdos.worker.logs")

# 512 KiB of text is at most 3 MiB once JSON-escaped: under the agent frame limit (MAX_FRAME).
DOWNLOAD_CHUNK = 512 * 1024
MAX_WAIT = 30.0
POLL = 0.2


class LogViewer:
    """Answers the master's ``log_list``, ``log_read`` and ``log_search`` commands."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def sources(self, instance_id: str) -> dict[str, LogSource]:
        runner = self.supervisor.get(instance_id)
        paths = list(runner.manifest.log_paths)
        adoption = runner.record.spec.adoption
        if adoption is not None:
            paths += [p for p in adoption.log_paths if p not in paths]
        return log_sources(runner.paths.app, runner.paths.logs, paths)

    def _resolve(
        self, instance_id: str, name: str, *, must_exist: bool = True
    ) -> tuple[Path, Path | None]:
        """The file's real path, and the folder the file opened must lie in (None: anywhere)."""
        sources = self.sources(instance_id)
        try:
            path = resolve_log_file(name, sources, must_exist=must_exist)
        except PermissionDenied as exc:
            log.warning("instance %s: %s", instance_id, exc.message)
            raise
        return path, sources[name].root

    def list_files(self, command: LogListCommand) -> list[LogFile]:
        files = []
        for source in self.sources(command.instance_id).values():
            try:
                st = os.stat(source.path)
                files.append(LogFile(source.name, source.kind, st.st_size, st.st_mtime))
            except OSError:
                files.append(LogFile(source.name, source.kind))
        return files

    async def read(self, command: LogReadCommand) -> LogChunk:
        if not 0 <= command.lines <= 10000:
            raise ValidationError("lines must be between 0 and 10000")
        following = command.cursor is not None and command.offset is None
        path, root = await asyncio.to_thread(
            self._resolve, command.instance_id, command.file, must_exist=not following
        )
        if command.offset is not None:
            return await asyncio.to_thread(_read_raw, path, command.file, command.offset, root)
        if command.cursor is None:
            text, cursor = await asyncio.to_thread(tail_lines, path, command.lines, root=root)
            return LogChunk(command.file, text, cursor)
        deadline = time.monotonic() + min(max(command.wait, 0.0), MAX_WAIT)
        while True:
            chunk, got = await asyncio.to_thread(
                read_follow, path, command.cursor, name=command.file, root=root
            )
            if got or time.monotonic() >= deadline:
                return chunk
            await asyncio.sleep(POLL)

    async def search(self, command: LogSearchCommand) -> LogSearch:
        if not command.query:
            raise ValidationError("query must not be empty")
        limit = min(max(command.limit, 1), 5000)
        path, root = await asyncio.to_thread(self._resolve, command.instance_id, command.file)
        return await asyncio.to_thread(
            search_file, path, command.file, command.query, limit=limit, root=root
        )


def _read_raw(path: Path, name: str, offset: int, root: Path | None) -> LogChunk:
    with open_log(path, root) as handle:
        st = os.fstat(handle.fileno())
        handle.seek(offset)
        data = handle.read(DOWNLOAD_CHUNK)
    if len(data) == DOWNLOAD_CHUNK and (cut := data.rfind(b"\n")) >= 0:
        data = data[: cut + 1]  # whole lines, so no UTF-8 character is split between chunks
    end = offset + len(data)
    return LogChunk(
        name,
        data.decode("utf-8", errors="replace"),
        LogCursor(st.st_dev, st.st_ino, end),
        more=end < st.st_size,
    )
