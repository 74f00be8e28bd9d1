"""Fleet commands on the master: start a run on many nodes, collect output, push it live.

A run lives in memory (the last :data:`KEEP` runs): its output is streamed by
the workers as ``command_output`` messages on their agent channels, appended
here, and pushed to browsers on the live topic ``command:<run id>``. What is
durable is the audit trail: ``command.run`` (command text with secret-looking
values masked, nodes, user) when it starts and ``command.done`` (exit codes,
timeouts) when the last node has answered.

Example::

    run = runs.start(CommandRequest(node_ids=[a, b], command="uptime"), principal)
    finished = await runs.wait(run.id, timeout=60)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from gdos_master.audit import record_audit
from gdos_master.auth import Principal
from gdos_master.live import Topic, View
from gdos_sdk.codec import unstructure
from gdos_sdk.commands import CommandRequest, CommandRun, NodeCommandResult, NodeRunState
from gdos_sdk.errors import GdosError, NotFoundError
from gdos_sdk.models import Role
from gdos_sdk.protocol import CommandOutput, RunCommand

if TYPE_CHECKING:
    from gdos_master.app import Master

__all__ = ["KEEP", "CommandRuns", "CommandTopic", "redact_command"]

KEEP = 50
KILL_GRACE = 15.0  # a worker answers this long after the timeout at worst (kill + drain)
NODE_OUTPUT_LIMIT = 2 * 1024 * 1024 + 65536  # the worker keeps 1 MiB per stream

_SECRET_WORDS = (
    r"pass(?:word|wd)?|secret|token|credential|api[_-]?key|access[_-]?key"
    r"|private[_-]?key|authorization"
)
# Linear time on any text (a command may be 16 KiB of one word): a key starts only where a
# word starts (look-behind), contains a secret word (look-ahead) and is taken whole without
# backtracking (possessive ``++``).
_ASSIGNMENT = re.compile(
    rf"(?i)(?<![\w.-])(?=[\w.-]*?(?:{_SECRET_WORDS}))([\w.-]++)(\s*[=:]\s*|\s+)"
    r"((?:bearer|basic|digest)\s+)?(\"[^\"]*\"|'[^']*'|[^\s'\"]+)"
)
_URL_USERINFO = re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*+://[^/\s:@]++:)([^/\s@]++)(@)")


def redact_command(text: str) -> str:
    """``text`` with values of secret-looking options and URL passwords masked for the audit.

    Example::

        redact_command("mysql --password hunter2 -e 'select 1'")
        # "mysql --password *** -e 'select 1'"
    """
    text = _URL_USERINFO.sub(r"\1***\3", text)
    return _ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}***", text)


@attrs.define
class _NodeRun:
    node_id: str
    state: NodeRunState = NodeRunState.RUNNING
    chunks: list[tuple[str, str]] = attrs.field(factory=list)
    size: int = 0
    exit_code: int | None = None
    timed_out: bool = False
    truncated: bool = False
    error: str = ""
    duration: float = 0.0

    def result(self, *, output: bool = True) -> NodeCommandResult:
        out = "".join(d for s, d in self.chunks if s == "stdout") if output else ""
        err = "".join(d for s, d in self.chunks if s == "stderr") if output else ""
        return NodeCommandResult(
            node_id=self.node_id,
            state=self.state,
            exit_code=self.exit_code,
            timed_out=self.timed_out,
            stdout=out,
            stderr=err,
            truncated=self.truncated,
            error=self.error,
            duration=self.duration,
        )


@attrs.define
class _Run:
    id: str
    command: str
    timeout: float
    principal: Principal
    ip: str
    started_at: float
    nodes: dict[str, _NodeRun]
    finished_at: float | None = None
    # (node id, stream, text) in arrival order, and node ids whose state changed: the live topic
    events: list[tuple[str, str, str]] = attrs.field(factory=list)
    done: asyncio.Event = attrs.field(factory=asyncio.Event)

    def model(self, *, output: bool = True) -> CommandRun:
        return CommandRun(
            id=self.id,
            command=self.command,
            timeout=self.timeout,
            user=self.principal.label,
            started_at=self.started_at,
            finished_at=self.finished_at,
            nodes=[n.result(output=output) for n in self.nodes.values()],
        )


class CommandRuns:
    """The recent fleet command runs of this master."""

    def __init__(self, master: Master, *, keep: int = KEEP) -> None:
        self.master = master
        self.keep = keep
        #: With several masters: hands a piece for a run this master does not hold to the
        #: master that runs it (gdos_master.mesh).
        self.elsewhere: Callable[[str, CommandOutput], None] | None = None
        # Output pieces sent to (out) or received from (in) another master, per run and
        # node: the run's master waits for them all before it ends the node's run.
        self.relayed_out: collections.Counter[tuple[str, str]] = collections.Counter()
        self.relayed_in: collections.Counter[tuple[str, str]] = collections.Counter()
        self._piece_arrived = asyncio.Event()
        self.runs: collections.OrderedDict[str, _Run] = collections.OrderedDict()

    def start(self, request: CommandRequest, principal: Principal, ip: str = "") -> CommandRun:
        """Send ``request`` to its nodes (each in its own task); return the run at once.

        Raises:
            NotFoundError: a node id that does not exist.
        """
        node_ids = list(dict.fromkeys(request.node_ids))
        for node_id in node_ids:
            self.master.nodes.row(node_id)  # NotFoundError for an unknown id
        run = _Run(
            id=uuid.uuid4().hex,
            command=request.command,
            timeout=request.timeout,
            principal=principal,
            ip=ip,
            started_at=time.time(),
            nodes={n: _NodeRun(n) for n in node_ids},
        )
        self.runs[run.id] = run
        while len(self.runs) > self.keep:
            self.runs.popitem(last=False)
        for node_id in node_ids:
            self.master.spawn(self._run_node(run, node_id))
        return run.model()

    async def _run_node(self, run: _Run, node_id: str) -> None:
        node = run.nodes[node_id]
        began = time.monotonic()
        try:
            conn = self.master.fleet.connection(node_id)
            if conn is None:
                raise GdosError(f"node {node_id} is offline")
            command = RunCommand(run_id=run.id, command=run.command, timeout=run.timeout)
            response = await conn.ask(command, run.timeout + KILL_GRACE)
            result = response.command_exit
            if result is None:
                raise GdosError("the worker does not support fleet commands (upgrade it)")
            node.exit_code, node.timed_out = result.exit_code, result.timed_out
            node.truncated = node.truncated or result.truncated
            node.duration = result.duration
            node.state = NodeRunState.DONE
        except GdosError as exc:
            node.state, node.error = NodeRunState.FAILED, exc.message
            node.duration = time.monotonic() - began
        run.events.append((node_id, "state", ""))
        if all(n.state != NodeRunState.RUNNING for n in run.nodes.values()):
            self._finish(run)

    def _finish(self, run: _Run) -> None:
        run.finished_at = time.time()
        run.done.set()
        record_audit(
            self.master.db,
            principal=run.principal,
            ip=run.ip,
            action="command.done",
            target=f"command:{run.id}",
            params={
                "exit_codes": {n.node_id: n.exit_code for n in run.nodes.values()},
                "timed_out": [n.node_id for n in run.nodes.values() if n.timed_out],
                "failed": {n.node_id: n.error for n in run.nodes.values() if n.error},
            },
            status=200,
        )

    def output(self, node_id: str, message: CommandOutput, *, relayed: bool = False) -> None:
        """Append output a worker streamed (called by the agent channel's receive loop).

        A piece of a run another master holds goes to it (:attr:`elsewhere`); ``relayed``:
        it came that way, from the node's owner.
        """
        run = self.runs.get(message.run_id)
        if run is None and not relayed and self.elsewhere is not None:
            self.relayed_out[(message.run_id, node_id)] += 1
            self.elsewhere(node_id, message)
            return
        if relayed:
            self.relayed_in[(message.run_id, node_id)] += 1
            self._piece_arrived.set()
        node = run.nodes.get(node_id) if run is not None else None
        if run is None or node is None or node.state != NodeRunState.RUNNING:
            return
        if node.size + len(message.data) > NODE_OUTPUT_LIMIT:
            node.truncated = True
            return
        node.size += len(message.data)
        node.chunks.append((message.stream, message.data))
        run.events.append((node_id, message.stream, message.data))

    def _get(self, run_id: str) -> _Run:
        run = self.runs.get(run_id)
        if run is None:
            raise NotFoundError(
                f"no command run {run_id!r} (the master keeps the last {self.keep} runs)"
            )
        return run

    def get(self, run_id: str) -> CommandRun:
        return self._get(run_id).model()

    def list_runs(self) -> list[CommandRun]:
        """Recent runs, newest first, without their output."""
        return [r.model(output=False) for r in reversed(self.runs.values())]

    async def wait(self, run_id: str, timeout: float) -> CommandRun:
        """The run once every node has answered, or as it stands after ``timeout``."""
        run = self._get(run_id)
        if timeout > 0 and not run.done.is_set():
            try:
                await asyncio.wait_for(asyncio.shield(run.done.wait()), timeout)
            except TimeoutError:
                pass
        return run.model()

    def pieces_sent(self, run_id: str, node_id: str) -> int:
        """How many output pieces of a run held elsewhere went to its master (then forgot)."""
        return self.relayed_out.pop((run_id, node_id), 0)

    async def wait_pieces(self, run_id: str, node_id: str, count: int, timeout: float = 5) -> None:
        """Wait until ``count`` relayed output pieces of the run's node arrived (bounded)."""
        key = (run_id, node_id)
        deadline = time.monotonic() + timeout
        while self.relayed_in[key] < count and time.monotonic() < deadline:
            self._piece_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._piece_arrived.wait(), deadline - time.monotonic())
        self.relayed_in.pop(key, None)

    def topic(self, name: str, run_id: str) -> CommandTopic:
        return CommandTopic(name, self._get(run_id))


class CommandTopic(Topic):
    """Live topic ``command:<id>``: ``output`` pieces as they arrive, ``nodes`` as they end.

    Frames after the snapshot (the whole run)::

        {"output": [{"node_id", "stream", "data"}], "nodes": [NodeCommandResult without
         output], "finished_at": float | null}
    """

    role = Role.ADMIN

    def __init__(self, name: str, run: _Run) -> None:
        super().__init__(name)
        self.run = run
        self.seen = 0

    def poll(self, view: View) -> Any | None:
        events = self.run.events[self.seen :]
        self.seen += len(events)
        if not events:
            return None
        output = [{"node_id": n, "stream": s, "data": d} for n, s, d in events if s != "state"]
        ended = {n for n, s, _ in events if s == "state"}
        nodes = [unstructure(self.run.nodes[n].result(output=False)) for n in ended]
        return {"output": output, "nodes": nodes, "finished_at": self.run.finished_at}

    def snapshot(self) -> Any:
        self.seen = len(self.run.events)
        return {"snapshot": True, **unstructure(self.run.model())}
