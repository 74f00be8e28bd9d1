"""The agent protocol: messages on the worker <-> master WebSocket.

One JSON object per text frame, tagged by ``type``. The worker dials
``/api/v1/agent/ws`` with ``Authorization: Bearer <credential>`` (its
per-node credential, or the cluster join token on first contact, together
with ``X-GDOS-Node-Id``) and then::

    worker -> master   hello            protocol version, fingerprint, full inventory
    master -> worker   welcome          credential (first join), heartbeat interval
    worker -> master   heartbeat        the 1 s samples since the last one (every push interval)
    master -> worker   configure        a new push interval
    worker -> master   instance_state   an instance changed state
    master -> worker   request          a command with an id and a timeout (protocol 2 adds
                                        ``upgrade``: a new version in place)
    worker -> master   response         the command's result or error, same id
    worker -> master   command_output   output of a running fleet command, as it arrives
    either             error            fatal problem; the sender closes after it

After ``welcome`` the master reconciles: it compares the inventory with the
desired state it holds and sends the commands that close the gap.

A frame from the worker is at most :data:`MAX_FRAME` characters (the master closes
the channel with code 1009 otherwise). The worker splits a heartbeat whose samples
would not fit into :data:`HEARTBEAT_FRAME` pieces, and answers a request whose
response would not fit with an error instead (docs/security.md, "Nodes and the
agent channel").

Example::

    from gdos_sdk.protocol import decode, encode, Heartbeat
    text = encode(Heartbeat(ts=..., node_samples=[sample], instance_samples=[]))
    msg = decode(text)
"""

from __future__ import annotations

import json
from typing import Any, Literal

import attrs
from cattrs.gen import make_dict_unstructure_fn, override

from gdos_sdk.adoption import AdoptionSpec, ProcessCandidate
from gdos_sdk.codec import converter, parse_json, structure, unstructure
from gdos_sdk.commands import CommandExit
from gdos_sdk.errors import ProtocolError, ValidationError
from gdos_sdk.logfiles import LogChunk, LogCursor, LogFile, LogSearch
from gdos_sdk.models import DiskUsage, Fingerprint, InstanceSample, NetRate, NodeSample
from gdos_sdk.states import DesiredState, Health, InstanceState

__all__ = [
    "HEARTBEAT_FRAME",
    "MAX_FRAME",
    "MIN_PROTOCOL",
    "PROTOCOL_VERSION",
    "TERMINAL_ELSEWHERE_PROTOCOL",
    "UPGRADE_PROTOCOL",
    "CandidatesCommand",
    "Command",
    "CommandOutput",
    "Configure",
    "DeployCommand",
    "DestroyCommand",
    "ErrorInfo",
    "ErrorMessage",
    "Heartbeat",
    "Hello",
    "InstanceEvent",
    "InstanceSpec",
    "InstanceStatus",
    "LogListCommand",
    "LogReadCommand",
    "LogSearchCommand",
    "Message",
    "Request",
    "Response",
    "RestartCommand",
    "RunCommand",
    "StartCommand",
    "StopCommand",
    "TerminalOpenCommand",
    "UpgradeCommand",
    "Welcome",
    "decode",
    "encode",
    "heartbeat_frames",
]

# 2 added the ``upgrade`` command. A master speaks every version from MIN_PROTOCOL up, so
# upgrade the master first, then the workers: an older worker keeps working, but its
# instances cannot change version in place (a rollout reports them as needing a newer
# worker). A worker speaks only its own version.
# 3 added ``TerminalOpenCommand.master_url``: the dial-back to another master (a terminal
# opened on a master the node is not connected to). The field is sent only when set, so an
# older worker still opens terminals on the master it is connected to.
PROTOCOL_VERSION = 3
MIN_PROTOCOL = 1
UPGRADE_PROTOCOL = 2  # the first version with UpgradeCommand
TERMINAL_ELSEWHERE_PROTOCOL = 3  # the first version with TerminalOpenCommand.master_url

# Largest frame a worker may send, in characters (frames are ASCII JSON, so also bytes).
# Sized for a big, legitimate node; a real worker with 200 instances measured (see
# docs/security.md): hello 49 KB, heartbeat 38 KB per second of samples, so ~0.6 MB at the
# slowest push interval (15 s). A log download chunk (512 KiB of text) is at most 3 MiB
# once JSON-escaped.
MAX_FRAME = 4 * 1024 * 1024
# A worker splits a heartbeat into frames of about this size: its backlog after a 5 minute
# outage would be ~12 MB for 200 instances.
HEARTBEAT_FRAME = 1024 * 1024


@attrs.frozen
class InstanceSpec:
    """Everything a worker needs to deploy an instance, independent of the master's DB."""

    instance_id: str
    module_id: str
    system_id: str
    module_name: str
    package: str
    version: str
    sha256: str
    size: int
    download_path: str  # relative to the master URL, or an absolute presigned URL
    manifest: dict[str, Any]
    env: dict[str, str] = attrs.field(factory=dict)
    args: list[str] | None = None
    # An adopted module: no package to fetch (package, sha256 and download_path are empty).
    adoption: AdoptionSpec | None = None
    # The module's health_check override (a service.json health_check object), if any.
    health_check: dict[str, Any] | None = None
    # The module's account override; "" = the manifest's, else the worker's default_user.
    user: str = ""
    group: str = ""


@attrs.frozen
class InstanceStatus:
    """A worker's report of one instance."""

    instance_id: str
    desired_state: DesiredState
    state: InstanceState
    health: Health = Health.NONE
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    exit_code: int | None = None
    reason: str = ""
    package: str = ""
    version: str = ""


@attrs.frozen
class ErrorInfo:
    code: str
    message: str


# --- commands (master -> worker, inside a request) ------------------------------------------


@attrs.frozen
class DeployCommand:
    spec: InstanceSpec
    start: bool = False
    kind: Literal["deploy"] = "deploy"


@attrs.frozen
class StartCommand:
    instance_id: str
    kind: Literal["start"] = "start"


@attrs.frozen
class StopCommand:
    instance_id: str
    kind: Literal["stop"] = "stop"


@attrs.frozen
class RestartCommand:
    instance_id: str
    kind: Literal["restart"] = "restart"


@attrs.frozen
class DestroyCommand:
    instance_id: str
    kind: Literal["destroy"] = "destroy"


@attrs.frozen
class UpgradeCommand:
    """Move an existing instance to the package version ``spec`` names, keeping its id.

    The worker fetches and extracts the new version beside the running one, then stops
    the instance, switches its ``app/`` folder to the new version and starts it again
    (if its desired state is running). Its logs, restart count and record stay. The
    versions it ran before are kept on disk (``runtime.keep_versions``), so moving back
    to one of them needs no download. An instance already on ``spec``'s package is
    left as it is. The answer is the instance's status after the switch.
    """

    spec: InstanceSpec
    kind: Literal["upgrade"] = "upgrade"


@attrs.frozen
class CandidatesCommand:
    """List the processes on the node that ``adoption`` would adopt (nothing is changed)."""

    adoption: AdoptionSpec
    kind: Literal["candidates"] = "candidates"


@attrs.frozen
class RunCommand:
    """Run shell text; stream ``command_output`` messages tagged ``run_id``; answer the exit."""

    run_id: str
    command: str
    timeout: float
    kind: Literal["run_command"] = "run_command"


@attrs.frozen
class LogListCommand:
    """List an instance's readable log files."""

    instance_id: str
    kind: Literal["log_list"] = "log_list"


@attrs.frozen
class LogReadCommand:
    """Read a log file: the last ``lines`` lines (no cursor) or what follows ``cursor``.

    With ``wait`` > 0 and nothing new, the worker waits up to ``wait`` seconds for more
    (a long poll: following a log costs one request per burst of lines, not per second).
    With ``offset`` set, it reads raw bytes from there instead (downloads).
    """

    instance_id: str
    file: str
    lines: int = 100
    cursor: LogCursor | None = None
    wait: float = 0.0
    offset: int | None = None
    kind: Literal["log_read"] = "log_read"


@attrs.frozen
class LogSearchCommand:
    """The last ``limit`` lines of a log file containing ``query``."""

    instance_id: str
    file: str
    query: str
    limit: int = 500
    kind: Literal["log_search"] = "log_search"


@attrs.frozen
class TerminalOpenCommand:
    """Open a PTY and dial back ``/api/v1/agent/terminal/<session_id>`` with ``token``.

    The worker answers once the stream socket is up (or with the error that prevented it);
    the terminal's bytes then flow on that socket, never on the agent channel.
    ``master_url`` (protocol 3) names the master to dial back when it is not the one the
    worker is connected to (a terminal opened on another master, relayed by the owner);
    the worker dials it only if its own ``connect.master_url`` lists it. Empty (the
    default, and then not sent at all): the master the worker is connected to.
    """

    session_id: str
    token: str
    rows: int = 24
    cols: int = 80
    kind: Literal["terminal_open"] = "terminal_open"
    master_url: str = ""


Command = (
    DeployCommand
    | StartCommand
    | StopCommand
    | RestartCommand
    | DestroyCommand
    | UpgradeCommand
    | CandidatesCommand
    | RunCommand
    | LogListCommand
    | LogReadCommand
    | LogSearchCommand
    | TerminalOpenCommand
)

_COMMANDS: dict[str, type[Any]] = {
    "deploy": DeployCommand,
    "start": StartCommand,
    "stop": StopCommand,
    "restart": RestartCommand,
    "destroy": DestroyCommand,
    "upgrade": UpgradeCommand,
    "candidates": CandidatesCommand,
    "run_command": RunCommand,
    "log_list": LogListCommand,
    "log_read": LogReadCommand,
    "log_search": LogSearchCommand,
    "terminal_open": TerminalOpenCommand,
}

# --- messages -------------------------------------------------------------------------------


@attrs.frozen
class Hello:
    protocol: int
    node_id: str
    hostname: str
    agent_version: str
    fingerprint: Fingerprint
    addresses: list[str] = attrs.field(factory=list)
    instances: list[InstanceStatus] = attrs.field(factory=list)
    type: Literal["hello"] = "hello"


@attrs.frozen
class Welcome:
    node_id: str
    heartbeat_interval: float
    server_time: float
    credential: str | None = None  # only on first join; the worker stores it
    approved: bool = True
    type: Literal["welcome"] = "welcome"


@attrs.frozen
class Heartbeat:
    """Liveness plus every 1 s sample taken since the previous heartbeat (oldest first)."""

    ts: float
    node_samples: list[NodeSample] = attrs.field(factory=list)
    instance_samples: list[InstanceSample] = attrs.field(factory=list)
    type: Literal["heartbeat"] = "heartbeat"


@attrs.frozen
class Configure:
    """Master -> worker: how often to push heartbeats (1 s while someone watches the node)."""

    push_interval: float
    type: Literal["configure"] = "configure"


@attrs.frozen
class InstanceEvent:
    status: InstanceStatus
    type: Literal["instance_state"] = "instance_state"


@attrs.frozen
class Request:
    id: str
    command: Command
    timeout: float = 30.0
    type: Literal["request"] = "request"


@attrs.frozen
class Response:
    id: str
    ok: bool
    result: InstanceStatus | None = None
    error: ErrorInfo | None = None
    candidates: list[ProcessCandidate] | None = None  # answer to a candidates command
    command_exit: CommandExit | None = None  # answer to run_command
    log_files: list[LogFile] | None = None  # answer to log_list
    log_chunk: LogChunk | None = None  # answer to log_read
    log_search: LogSearch | None = None  # answer to log_search
    type: Literal["response"] = "response"


@attrs.frozen
class CommandOutput:
    """Output of a running fleet command (``stream`` is ``stdout`` or ``stderr``)."""

    run_id: str
    stream: Literal["stdout", "stderr"]
    data: str
    type: Literal["command_output"] = "command_output"


@attrs.frozen
class ErrorMessage:
    code: str
    message: str
    type: Literal["error"] = "error"


Message = (
    Hello
    | Welcome
    | Heartbeat
    | Configure
    | InstanceEvent
    | Request
    | Response
    | CommandOutput
    | ErrorMessage
)

_MESSAGES: dict[str, type[Any]] = {
    "hello": Hello,
    "welcome": Welcome,
    "heartbeat": Heartbeat,
    "configure": Configure,
    "instance_state": InstanceEvent,
    "request": Request,
    "response": Response,
    "command_output": CommandOutput,
    "error": ErrorMessage,
}


def _structure_command(data: Any, _: Any) -> Command:
    if not isinstance(data, dict):
        raise TypeError("command must be an object")
    cls = _COMMANDS.get(data.get("kind", ""))
    if cls is None:
        raise ValueError(f"unknown command kind {data.get('kind')!r}")
    result: Command = converter.structure(data, cls)
    return result


converter.register_structure_hook(Command, _structure_command)
# ``master_url`` only when set: a worker older than protocol 3 refuses unknown keys.
converter.register_unstructure_hook(
    TerminalOpenCommand,
    make_dict_unstructure_fn(
        TerminalOpenCommand, converter, master_url=override(omit_if_default=True)
    ),
)


def encode(message: Message) -> str:
    """A message as one JSON text frame."""
    return json.dumps(unstructure(message), separators=(",", ":"))


def heartbeat_frames(beat: Heartbeat, limit: int = HEARTBEAT_FRAME) -> list[str]:
    """``beat`` as one frame, or as several of at most about ``limit`` characters each.

    Each piece is a heartbeat with the same ``ts`` and a share of the samples, oldest
    first. A single sample larger than ``limit`` still goes out alone (the master's
    :data:`MAX_FRAME` is the hard bound).

    Example::

        for text in heartbeat_frames(Heartbeat(ts=now, node_samples=backlog)):
            await ws.send(text)
    """
    text = encode(beat)
    total = len(beat.node_samples) + len(beat.instance_samples)
    if len(text) <= limit or total <= 1:
        return [text]
    parts = min(total, -(-len(text) // limit))
    frames: list[str] = []
    for i in range(parts):
        piece = Heartbeat(
            ts=beat.ts,
            node_samples=_share(beat.node_samples, i, parts),
            instance_samples=_share(beat.instance_samples, i, parts),
        )
        if piece.node_samples or piece.instance_samples:
            frames += heartbeat_frames(piece, limit)
    return frames


def _share(items: list[Any], index: int, parts: int) -> list[Any]:
    """The ``index``-th of ``parts`` consecutive, nearly equal slices of ``items``."""
    return items[len(items) * index // parts : len(items) * (index + 1) // parts]


_NODE_KEYS = frozenset(f.name for f in attrs.fields(NodeSample))
_INSTANCE_KEYS = frozenset(f.name for f in attrs.fields(InstanceSample))
_HEARTBEAT_KEYS = frozenset({"type", "ts", "node_samples", "instance_samples"})


def _fast_heartbeat(data: dict[str, Any]) -> Heartbeat | None:
    """Build a heartbeat without the general converter (the hottest message by far).

    Exactly the expected keys and plain numbers, or None: anything unusual takes the
    general path, which reports the problem precisely.
    """
    try:
        if data.keys() != _HEARTBEAT_KEYS:
            return None
        nodes = []
        for n in data["node_samples"]:
            if n.keys() != _NODE_KEYS:
                return None
            nodes.append(
                NodeSample(
                    ts=float(n["ts"]),
                    cpu_percent=float(n["cpu_percent"]),
                    load1=float(n["load1"]),
                    load5=float(n["load5"]),
                    load15=float(n["load15"]),
                    mem_total=int(n["mem_total"]),
                    mem_used=int(n["mem_used"]),
                    mem_percent=float(n["mem_percent"]),
                    swap_total=int(n["swap_total"]),
                    swap_used=int(n["swap_used"]),
                    disk_read_bps=float(n["disk_read_bps"]),
                    disk_write_bps=float(n["disk_write_bps"]),
                    uptime_seconds=float(n["uptime_seconds"]),
                    disks=[
                        DiskUsage(
                            str(d["mountpoint"]),
                            int(d["total_bytes"]),
                            int(d["used_bytes"]),
                            float(d["percent"]),
                        )
                        for d in n["disks"]
                    ],
                    net=[
                        NetRate(str(r["interface"]), float(r["rx_bps"]), float(r["tx_bps"]))
                        for r in n["net"]
                    ],
                )
            )
        instances = []
        for i in data["instance_samples"]:
            if i.keys() != _INSTANCE_KEYS or not isinstance(i["instance_id"], str):
                return None
            instances.append(
                InstanceSample(
                    ts=float(i["ts"]),
                    instance_id=i["instance_id"],
                    cpu_percent=float(i["cpu_percent"]),
                    rss_bytes=int(i["rss_bytes"]),
                    read_bps=float(i["read_bps"]),
                    write_bps=float(i["write_bps"]),
                    threads=int(i["threads"]),
                    open_files=int(i["open_files"]),
                    processes=int(i["processes"]),
                )
            )
        return Heartbeat(ts=float(data["ts"]), node_samples=nodes, instance_samples=instances)
    except (TypeError, ValueError, KeyError, AttributeError):
        return None


def decode(text: str | bytes) -> Message:
    """Parse one frame; anything malformed raises :class:`ProtocolError`."""
    try:
        data = parse_json(text, max_depth=None)  # typed messages: deep values fail structure()
    except ValueError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from exc
    if isinstance(data, dict) and data.get("type") == "heartbeat":
        fast = _fast_heartbeat(data)
        if fast is not None:
            return fast
    kind = data.get("type") if isinstance(data, dict) else None
    cls = _MESSAGES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r}")
    try:
        message: Message = structure(data, cls, what=f"{kind} message")
    except ValidationError as exc:
        raise ProtocolError(exc.message, details=exc.details) from exc
    return message
