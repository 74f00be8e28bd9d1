"""Start-at-boot definitions as text: one template per platform, rendered by pure functions.

An :class:`AutostartSpec` says what to run (the exact command line, its
working directory); :func:`render_systemd_unit`, :func:`render_launchd_plist`
and :func:`render_windows_task` turn it into the file each platform's service
manager reads. Nothing here touches the disk or runs a program: the installers
in :mod:`gdos_sdk.autostart.install` do that.

Example::

    spec = build_spec("worker", ["-config", "worker.yaml"], cwd="/srv/gdos",
                      argv0="/usr/local/bin/gdos-worker", executable="/usr/bin/python3")
    spec.argv          # ('/usr/local/bin/gdos-worker', '-config', '/srv/gdos/worker.yaml')
    text = render_systemd_unit(spec, environment_file="/etc/gdos/worker.env")
"""

from __future__ import annotations

import ntpath
import os
import plistlib
import re
import subprocess
from collections.abc import Callable, Sequence
from typing import Literal
from xml.sax.saxutils import escape as xml_escape

import attrs

from gdos_sdk.errors import AutostartError

__all__ = [
    "AutostartSpec",
    "Role",
    "absolute_config",
    "build_spec",
    "program_argv",
    "render_launchd_plist",
    "render_systemd_unit",
    "render_windows_task",
    "systemd_quote",
]

Role = Literal["master", "worker"]
"""Which GDOS server autostart is for."""

_ROLES = ("master", "worker")
# C0 controls and DEL: a unit file line, an XML 1.0 document and a plist cannot hold them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _valid_argv(_: object, attribute: attrs.Attribute[tuple[str, ...]], value: object) -> None:
    if not isinstance(value, tuple) or not value or not all(isinstance(a, str) for a in value):
        raise ValueError(f"{attribute.name} must be a non-empty tuple of strings")


@attrs.frozen
class AutostartSpec:
    """What a boot-time definition runs, independent of the platform.

    Parameters:
        role: ``"master"`` or ``"worker"``; names the unit, plist label and task.
        argv: the full command line; ``argv[0]`` is an absolute path.
        working_dir: absolute directory the server runs in (relative paths in its
            flags and config file resolve against it, as they did when installing).

    Example::

        AutostartSpec("worker", ("/usr/local/bin/gdos-worker", "-master", "http://m:8080"),
                      "/srv/gdos")
    """

    role: Role = attrs.field(validator=attrs.validators.in_(_ROLES))
    argv: tuple[str, ...] = attrs.field(validator=_valid_argv)
    working_dir: str

    @property
    def title(self) -> str:
        """``"GDOS worker"``: the description shown by the service manager."""
        return f"GDOS {self.role}"

    @property
    def unit_name(self) -> str:
        """The systemd unit: ``gdos-worker.service``."""
        return f"gdos-{self.role}.service"

    @property
    def launchd_label(self) -> str:
        """The launchd job label (and plist file stem): ``io.gdos.worker``."""
        return f"io.gdos.{self.role}"

    @property
    def task_name(self) -> str:
        """The Windows scheduled task: ``GDOS Worker``."""
        return f"GDOS {self.role.capitalize()}"


# --- the command line -----------------------------------------------------------------------


def program_argv(
    role: Role,
    *,
    argv0: str,
    executable: str,
    cwd: str,
    exists: Callable[[str], bool] = os.path.isfile,
) -> list[str]:
    """How to start ``role`` again: its console script if that is what ran, else ``python -m``.

    Paths are made absolute but symlinks are kept: resolving a virtualenv's
    ``python`` would escape the virtualenv, and a retargeted symlink should keep
    working after an upgrade.

    Parameters:
        role: the server.
        argv0: ``sys.argv[0]`` of the running command.
        executable: ``sys.executable``.
        cwd: the directory relative paths are taken from.
        exists: file test (injectable so Windows names can be tested anywhere).

    Example::

        program_argv("worker", argv0="gdos-worker", executable="/venv/bin/python",
                     cwd="/usr/local/bin")  # ['/usr/local/bin/gdos-worker']
    """
    script = f"gdos-{role}"
    base = os.path.basename(argv0).lower()
    if base in (script, f"{script}.exe"):
        path = os.path.abspath(os.path.join(cwd, argv0))
        # Windows launchers may report the script without its ".exe".
        for candidate in (path, f"{path}.exe"):
            if exists(candidate):
                return [candidate]
    return [os.path.abspath(os.path.join(cwd, executable)), "-m", f"gdos_{role}"]


def absolute_config(flags: Sequence[str], *, cwd: str) -> list[str]:
    """``flags`` with the ``-config`` path made absolute (every spelling of the flag).

    Example::

        absolute_config(["--config=w.yaml", "-port", ":9"], cwd="/srv")
        # ['--config=/srv/w.yaml', '-port', ':9']
    """
    out: list[str] = []
    pending = False
    for token in flags:
        if pending:
            out.append(os.path.abspath(os.path.join(cwd, token)))
            pending = False
            continue
        name, eq, value = token.lstrip("-").partition("=")
        if token.startswith("-") and name == "config":
            if eq:
                dashes = token[: len(token) - len(token.lstrip("-"))]
                out.append(f"{dashes}config={os.path.abspath(os.path.join(cwd, value))}")
            else:
                out.append(token)
                pending = True
            continue
        out.append(token)
    return out


def build_spec(
    role: Role,
    flags: Sequence[str],
    *,
    cwd: str,
    argv0: str,
    executable: str,
    exists: Callable[[str], bool] = os.path.isfile,
) -> AutostartSpec:
    """The spec for the command being run now: same program and flags (minus ``-autostart``).

    Parameters:
        role: the server.
        flags: the command-line flags without ``-autostart`` and its value.
        cwd: the current directory; becomes the working directory.
        argv0: ``sys.argv[0]``.
        executable: ``sys.executable``.
        exists: file test for :func:`program_argv`.

    Example::

        build_spec("master", ["-port", ":8080"], cwd=os.getcwd(), argv0=sys.argv[0],
                   executable=sys.executable)
    """
    cwd = os.path.abspath(cwd)
    argv = [
        *program_argv(role, argv0=argv0, executable=executable, cwd=cwd, exists=exists),
        *absolute_config(flags, cwd=cwd),
    ]
    return AutostartSpec(role=role, argv=tuple(argv), working_dir=cwd)


def _plain(value: str, what: str) -> str:
    if _CONTROL.search(value):
        raise AutostartError(f"{what} {value!r} contains a control character (newline, tab ...)")
    return value


# --- systemd --------------------------------------------------------------------------------

# KillMode=process: on stop or restart systemd signals only the worker itself.
# Services live in the worker's cgroup but must outlive it (Nomad's unit does
# the same); the worker re-attaches to them when it comes back.
_SYSTEMD_TEMPLATE = """\
# Written by `{command} -autostart 1`; remove with `{command} -autostart 0`.
# See docs/autostart.md. Local changes belong in a drop-in: systemctl edit {unit}
[Unit]
Description={title}
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec_start}
WorkingDirectory={working_dir}
EnvironmentFile=-{environment_file}
# Stop or restart only the {role} process: the services it runs keep running.
KillMode=process
Restart=on-failure
RestartSec=5
# Services are started by the {role} and inherit these limits.
LimitNOFILE=65536
TasksMax=infinity

[Install]
WantedBy=multi-user.target
"""

_SYSTEMD_SAFE = re.compile(r"[A-Za-z0-9_@+=:,./-]+")
_SYSTEMD_ESCAPES = {"\\": "\\\\", '"': '\\"', "%": "%%", "$": "$$"}


def systemd_quote(arg: str) -> str:
    """One ``ExecStart=`` argument that systemd passes on as exactly ``arg``.

    Words of safe characters stay bare; anything else is double-quoted with
    ``\\`` and ``"`` backslash-escaped. ``%`` becomes ``%%`` (specifiers) and
    ``$`` becomes ``$$`` (variable expansion) in both cases. Control characters
    cannot be written on a unit line and are refused. For arguments, not the
    program: systemd neither expands ``$`` in the program path nor accepts
    quotes or backslashes there.

    Raises:
        AutostartError: ``arg`` contains a control character.

    Example::

        systemd_quote("/etc/gdos/my worker.yaml")  # '"/etc/gdos/my worker.yaml"'
        systemd_quote("50%")                        # '50%%'
    """
    _plain(arg, "argument")
    if _SYSTEMD_SAFE.fullmatch(arg):
        return arg
    return '"' + "".join(_SYSTEMD_ESCAPES.get(ch, ch) for ch in arg) + '"'


def _systemd_program(path: str) -> str:
    # systemd refuses quotes and backslashes in the executable's path, and does
    # not expand (or unescape) "$" in it; "%" specifiers are still expanded.
    _plain(path, "program")
    if not path.startswith("/"):
        raise AutostartError(f"program {path!r} must be an absolute path")
    if any(ch in path for ch in "\"'\\"):
        raise AutostartError(f"systemd cannot run a program whose path has quotes or \\: {path!r}")
    escaped = path.replace("%", "%%")
    return escaped if _SYSTEMD_SAFE.fullmatch(path) else f'"{escaped}"'


def _systemd_path(path: str, what: str) -> str:
    # Path settings take the rest of the line verbatim, apart from specifiers.
    _plain(path, what)
    if not path.startswith("/") or path != path.strip() or path.endswith("\\"):
        raise AutostartError(f"{what} {path!r} must be an absolute path without edge spaces")
    return path.replace("%", "%%")


def render_systemd_unit(spec: AutostartSpec, *, environment_file: str) -> str:
    """The systemd unit for ``spec`` (``/etc/systemd/system/gdos-worker.service``).

    Parameters:
        spec: what to run.
        environment_file: optional ``KEY=value`` file read at start (a missing file is
            not an error): the place for ``OPS_WORKER_*`` secrets such as the join token.

    Raises:
        AutostartError: a path or argument cannot be expressed in a unit file.

    Example::

        text = render_systemd_unit(spec, environment_file="/etc/gdos/worker.env")
    """
    return _SYSTEMD_TEMPLATE.format(
        command=f"gdos-{spec.role}",
        unit=spec.unit_name,
        title=spec.title,
        role=spec.role,
        exec_start=" ".join(
            [_systemd_program(spec.argv[0]), *(systemd_quote(arg) for arg in spec.argv[1:])]
        ),
        working_dir=_systemd_path(spec.working_dir, "working directory"),
        environment_file=_systemd_path(environment_file, "environment file"),
    )


# --- launchd --------------------------------------------------------------------------------


def render_launchd_plist(spec: AutostartSpec, *, log_path: str) -> bytes:
    """The launchd daemon plist for ``spec`` (``/Library/LaunchDaemons/io.gdos.worker.plist``).

    ``KeepAlive: {SuccessfulExit: false}`` restarts the server only when it
    fails; ``AbandonProcessGroup`` keeps launchd from killing what it started
    when it exits or is unloaded. :mod:`plistlib` does the XML escaping.

    Parameters:
        spec: what to run.
        log_path: file for the server's stdout and stderr (launchd creates it).

    Example::

        plistlib.loads(render_launchd_plist(spec, log_path="/Library/Logs/gdos-worker.log"))
    """
    for arg in spec.argv:
        _plain(arg, "argument")
    template = {
        "Label": spec.launchd_label,
        "ProgramArguments": list(spec.argv),
        "WorkingDirectory": _plain(spec.working_dir, "working directory"),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "AbandonProcessGroup": True,
        "StandardOutPath": _plain(log_path, "log path"),
        "StandardErrorPath": log_path,
        "ProcessType": "Standard",
    }
    return plistlib.dumps(template, fmt=plistlib.FMT_XML, sort_keys=False)


# --- Windows Task Scheduler -----------------------------------------------------------------

# Priority 4 is "normal": the default 7 is below normal, and the worker's
# services would inherit that priority class.
_TASK_TEMPLATE = """\
<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>{description}</Description>
    <URI>\\{task}</URI>
  </RegistrationInfo>
  <Triggers>
    <BootTrigger>
      <Enabled>true</Enabled>
    </BootTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>S-1-5-18</UserId>
      <RunLevel>HighestAvailable</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>true</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <IdleSettings>
      <StopOnIdleEnd>false</StopOnIdleEnd>
      <RestartOnIdle>false</RestartOnIdle>
    </IdleSettings>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <Hidden>false</Hidden>
    <RunOnlyIfIdle>false</RunOnlyIfIdle>
    <WakeToRun>false</WakeToRun>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <Priority>4</Priority>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>999</Count>
    </RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{command}</Command>
      <Arguments>{arguments}</Arguments>
      <WorkingDirectory>{working_dir}</WorkingDirectory>
    </Exec>
  </Actions>
</Task>
"""


def _xml_text(value: str, what: str) -> str:
    return xml_escape(_plain(value, what))


def render_windows_task(spec: AutostartSpec) -> str:
    """The Task Scheduler 1.2 XML for ``spec``: at boot, as SYSTEM, restarted on failure.

    The arguments are quoted as the Microsoft C runtime splits them
    (:func:`subprocess.list2cmdline`), then XML-escaped. Write the text as
    UTF-16, which is what its declaration says and what ``schtasks /XML`` reads.
    Task Scheduler expands ``%NAME%`` in the command, arguments and directory,
    as a console would.

    Example::

        ElementTree.fromstring(render_windows_task(spec))
    """
    if not ntpath.isabs(spec.argv[0]):
        raise AutostartError(f"program {spec.argv[0]!r} must be an absolute path")
    return _TASK_TEMPLATE.format(
        description=xml_escape(
            f"{spec.title}. Written by gdos-{spec.role} -autostart 1; "
            f"remove with gdos-{spec.role} -autostart 0."
        ),
        task=xml_escape(spec.task_name),
        # Quoted when it has spaces, as Task Scheduler itself writes such paths.
        command=_xml_text(subprocess.list2cmdline(spec.argv[:1]), "program"),
        arguments=_xml_text(subprocess.list2cmdline(spec.argv[1:]), "argument"),
        working_dir=_xml_text(spec.working_dir, "working directory"),
    )
