"""Commands for a node connected to another master, carried over the bus (docs/scale-out.md).

A request for a node (deploy, stop, start, restart, destroy, upgrade, a fleet command, a
log read, a terminal's open request) may reach any master. When the node's worker is
connected to another master (it holds the node's lease),
:meth:`Fleet.connection <gdos_master.fleet.Fleet.connection>` hands out a
:class:`RemoteConnection`: the same ``ask``/``request`` as a worker's own channel, sent
to the owner on subject ``gdos.master.<owner id>.ask``. The owner (:class:`CommandRelay`)
sends it down the worker's channel and returns the worker's
``response`` as it came. A worker's error keeps its meaning on the asking master (409,
422, 502); a lost owner or a timeout is a :class:`~gdos_sdk.errors.TransportError`.

Not carried: answers that come after the request timed out (``on_late``; the worker's
next report still updates the record through its owner), and a fleet command's output
pieces as they arrive (its final result is carried), and a terminal's bytes: the open
request carries the asking master's ``server.public_url`` and the worker dials its stream
straight there (:mod:`gdos_master.terminal`).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from gdos_master.bus import Bus
from gdos_master.fleet import AgentConnection, LateHandler, worker_error
from gdos_sdk.errors import ConflictError, GdosError, TransportError
from gdos_sdk.protocol import (
    PROTOCOL_VERSION,
    TERMINAL_ELSEWHERE_PROTOCOL,
    Command,
    Request,
    Response,
    RunCommand,
    TerminalOpenCommand,
    decode,
    encode,
)

if TYPE_CHECKING:
    from gdos_master.commands import CommandRuns
    from gdos_master.fleet import Fleet

__all__ = ["CommandRelay", "RemoteConnection", "ask_subject"]

log = logging.getLogger("gdos.master.relay")

# Seconds the bus may add to a command's own timeout before the asking master gives up.
BUS_MARGIN = 5.0


def ask_subject(master_id: str) -> str:
    """The subject on which a master takes commands for the nodes connected to it."""
    return f"gdos.master.{master_id}.ask"


class RemoteConnection(AgentConnection):
    """A node's channel on another master, reached over the bus (see the module docstring)."""

    def __init__(
        self, node_id: str, owner: str, bus: Bus, commands: CommandRuns | None = None
    ) -> None:
        async def no_send(text: str) -> None:
            raise TransportError(
                f"node {node_id} is connected to master {owner}; only commands are relayed"
            )

        async def no_close() -> None:
            return None

        super().__init__(node_id, no_send, no_close, protocol=PROTOCOL_VERSION)
        self.owner = owner
        self.bus = bus
        self.commands = commands

    async def ask(
        self, command: Command, timeout: float, *, on_late: LateHandler | None = None
    ) -> Response:
        request = Request(id=uuid.uuid4().hex, command=command, timeout=timeout)
        reply = await self.bus.request(
            ask_subject(self.owner),
            {"node_id": self.node_id, "request": encode(request)},
            timeout=timeout + BUS_MARGIN,
        )
        error = reply.get("error")
        if error is not None:
            raise _error(error)
        pieces = int(reply.get("pieces") or 0)
        if pieces and self.commands is not None and isinstance(command, RunCommand):
            # The output came on another subject: it may arrive after this reply.
            await self.commands.wait_pieces(command.run_id, self.node_id, pieces)
        response = decode(reply["response"])
        if not isinstance(response, Response):
            raise TransportError(f"master {self.owner} sent a {response.type}, not a response")
        if not response.ok:
            raise worker_error(response, self.node_id)
        return response


def _check_terminal(command: Command, conn: AgentConnection, node_id: str) -> None:
    """Refuse a terminal dial-back elsewhere to a worker too old to know of it."""
    if (
        isinstance(command, TerminalOpenCommand)
        and command.master_url
        and conn.protocol < TERMINAL_ELSEWHERE_PROTOCOL
    ):
        raise ConflictError(
            f"the worker of node {node_id} speaks agent protocol {conn.protocol}; a terminal"
            f" through another master needs protocol {TERMINAL_ELSEWHERE_PROTOCOL}: upgrade"
            " the worker, or open the terminal on the master it is connected to"
        )


def _error(error: dict[str, Any]) -> GdosError:
    """The error a relaying master reported (its class by code; TransportError otherwise)."""
    code, message = str(error.get("code", "")), str(error.get("message", ""))
    for cls in _subclasses(GdosError):
        if getattr(cls, "code", None) == code:
            return cls(message, details=error.get("details"))
    return TransportError(message)


def _subclasses(cls: type[GdosError]) -> list[type[GdosError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


class CommandRelay:
    """The owner's side: take commands other masters send for nodes connected here."""

    def __init__(self, fleet: Fleet, bus: Bus, commands: CommandRuns | None = None) -> None:
        self.fleet = fleet
        self.bus = bus
        self.commands = commands

    async def start(self) -> None:
        await self.bus.serve(ask_subject(self.bus.master_id), self.answer)

    async def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        node_id = str(message.get("node_id", ""))
        try:
            request = decode(str(message.get("request", "")))
            if not isinstance(request, Request):
                raise TransportError("expected a request")
            conn = self.fleet.connection(node_id)
            if conn is None or isinstance(conn, RemoteConnection):
                raise TransportError(
                    f"node {node_id} is not connected to master {self.bus.master_id} any more"
                )
            _check_terminal(request.command, conn, node_id)
            response = await conn.ask(request.command, request.timeout)
        except GdosError as exc:
            log.info("relayed command for node %s failed: %s", node_id, exc.message)
            return {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
        reply: dict[str, Any] = {"response": encode(response)}
        if self.commands is not None and isinstance(request.command, RunCommand):
            reply["pieces"] = self.commands.pieces_sent(request.command.run_id, node_id)
        return reply
