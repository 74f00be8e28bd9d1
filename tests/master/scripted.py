"""A scripted worker end of the agent channel for in-process master tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from gdos_master.app import Master
from gdos_master.fleet import AgentConnection
from gdos_sdk.models import Fingerprint
from gdos_sdk.protocol import (
    PROTOCOL_VERSION,
    Command,
    DeployCommand,
    DestroyCommand,
    Hello,
    InstanceStatus,
    Request,
    Response,
    decode,
)
from gdos_sdk.states import DesiredState, Health, InstanceState

__all__ = ["Answer", "ScriptedWorker", "join", "status"]

Answer = Callable[[Command], Response | None]  # None: the worker stays silent


def status(
    instance_id: str, state: InstanceState = InstanceState.RUNNING, pid: int = 4242
) -> InstanceStatus:
    """What a worker reports about an instance (``pid`` only while it runs)."""
    running = state == InstanceState.RUNNING
    return InstanceStatus(
        instance_id=instance_id,
        desired_state=DesiredState.RUNNING if running else DesiredState.STOPPED,
        state=state,
        health=Health.NONE,
        pid=pid if running else None,
        started_at=time.time() if running else None,
        restarts=0,
        exit_code=None,
        reason=state.value,
        package="demo",
        version="1.0.0",
    )


class ScriptedWorker:
    """The worker's end of one agent channel, answering as ``answer`` says."""

    def __init__(self, master: Master, node_id: str) -> None:
        self.master = master
        self.node_id = node_id
        self.received: list[Request] = []
        self.received_at: list[float] = []  # time.monotonic() of each request
        self._arrived = asyncio.Event()
        self.answer: Answer = self.ok
        self.conn = AgentConnection(node_id, self._receive, self._close)

    def ok(self, command: Command) -> Response | None:
        instance_id = (
            command.spec.instance_id
            if isinstance(command, DeployCommand)
            else getattr(command, "instance_id", "")
        )
        result = None if isinstance(command, DestroyCommand) else status(instance_id)
        return Response(id="", ok=True, result=result)

    async def _receive(self, text: str) -> None:
        request = decode(text)
        assert isinstance(request, Request)
        self.received.append(request)
        self.received_at.append(time.monotonic())
        self._arrived.set()
        answer = self.answer(request.command)
        if answer is not None:
            reply = Response(id=request.id, ok=answer.ok, result=answer.result, error=answer.error)
            asyncio.get_running_loop().call_soon(self.conn.resolve, reply)

    async def _close(self) -> None:
        return None

    async def wait_requests(self, count: int, timeout: float = 10.0) -> None:
        """Return once ``count`` requests have arrived in all."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

    def commands(self) -> list[Command]:
        return [r.command for r in self.received]

    async def connect(self) -> None:
        await self.master.fleet.connect(self.conn, approved=True)
        self.master.fleet.heartbeat(self.node_id, [], [])


def join(master: Master) -> str:
    hello = Hello(
        protocol=PROTOCOL_VERSION,
        node_id=str(uuid.uuid4()),
        hostname=f"host-{uuid.uuid4().hex[:6]}",
        agent_version="test",
        fingerprint=Fingerprint("Linux", "12", "6.1", "x86_64", "cpu", 2, 1, 1),
    )
    node_id, _ = master.nodes.join(hello, via_join_token=True, node_id="")
    return node_id
