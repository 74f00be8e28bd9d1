"""Start GDOS at boot: ``gdos-worker -autostart 1`` installs it, ``-autostart 0`` removes it.

The same for ``gdos-master``. What gets installed (see docs/autostart.md):

========  ===================================================  ===========================
platform  definition                                           tool
========  ===================================================  ===========================
Linux     ``/etc/systemd/system/gdos-<role>.service``          ``systemctl``
macOS     ``/Library/LaunchDaemons/io.gdos.<role>.plist``      ``launchctl``
Windows   scheduled task ``GDOS Worker`` / ``GDOS Master``     ``schtasks``
========  ===================================================  ===========================

The definition runs the very command that installed it, minus ``-autostart``:
the same program (console script or ``python -m``), the same flags with the
``-config`` path made absolute, in the same working directory. Stopping or
restarting the worker through the service manager never stops the services it
runs (systemd ``KillMode=process``, launchd ``AbandonProcessGroup``).

:mod:`gdos_sdk.autostart.render` holds the pure templates,
:mod:`gdos_sdk.autostart.install` the installers; :func:`apply` is what the
command lines call.

Example::

    flag, flags = split_autostart_flag(sys.argv[1:])
    if flag is not None:
        print(apply("worker", parse_switch(flag), flags))
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from gdos_sdk.autostart.install import (
    Installer,
    LaunchdInstaller,
    SchtasksInstaller,
    SystemdInstaller,
    installer_for,
)
from gdos_sdk.autostart.render import (
    AutostartSpec,
    Role,
    absolute_config,
    build_spec,
    program_argv,
    render_launchd_plist,
    render_systemd_unit,
    render_windows_task,
    systemd_quote,
)
from gdos_sdk.config import MasterSettings, WorkerSettings, flag_takes_next, iter_options
from gdos_sdk.errors import ConfigError, GdosError

__all__ = [
    "AutostartSpec",
    "Installer",
    "LaunchdInstaller",
    "Role",
    "SchtasksInstaller",
    "SystemdInstaller",
    "absolute_config",
    "apply",
    "build_spec",
    "command",
    "installer_for",
    "parse_switch",
    "program_argv",
    "refuse_secret_flags",
    "render_launchd_plist",
    "render_systemd_unit",
    "render_windows_task",
    "split_autostart_flag",
    "systemd_quote",
]

_ON = {"1", "true", "yes", "on"}
_OFF = {"0", "false", "no", "off"}


def split_autostart_flag(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """Take ``-autostart V`` (any dash count, ``=`` or a separate value) out of ``args``.

    Every GDOS flag but a boolean one takes a value, so a token right after a flag is
    that flag's value and never read as a flag itself (``-join_token -autostart`` keeps
    its odd token); a boolean flag (``-insecure``) takes it only if it is a boolean word
    (:func:`~gdos_sdk.config.flag_takes_next`). Returns ``(None, args)`` when the flag is
    absent, and ``""`` as the value when it is last with no value.

    Example::

        split_autostart_flag(["-autostart", "1", "-port", ":9"])  # ("1", ["-port", ":9"])
    """
    value: str | None = None
    rest: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        name, eq, inline = token.lstrip("-").partition("=")
        following = args[i + 1] if i + 1 < len(args) else None
        takes_next = token.startswith("-") and not eq and flag_takes_next(name, following)
        if token.startswith("-") and name == "autostart":
            value = inline if eq else (args[i + 1] if takes_next else "")
        else:
            rest.append(token)
            if takes_next:
                rest.append(args[i + 1])
        i += 2 if takes_next else 1
    return value, rest


def parse_switch(value: str) -> bool:
    """``-autostart``'s value: ``1`` installs, ``0`` removes (also true/false, yes/no, on/off).

    Raises:
        ConfigError: anything else.

    Example::

        parse_switch("1")  # True
    """
    text = value.strip().lower()
    if text in _ON:
        return True
    if text in _OFF:
        return False
    raise ConfigError(f"-autostart takes 1 (install start at boot) or 0 (remove it), not {value!r}")


def refuse_secret_flags(role: Role, flags: Sequence[str]) -> None:
    """Refuse secret flags (``-join_token``, MinIO keys) on a command that becomes a definition.

    Unit files, plists and tasks are readable by other users (systemd shows
    ``ExecStart`` to anyone), so a secret must come from the environment file
    or the config file instead.

    Raises:
        ConfigError: names the flag and the variable to use instead.

    Example::

        refuse_secret_flags("worker", ["-join_token", "t"])  # raises ConfigError
    """
    settings, prefix = (
        (WorkerSettings, "OPS_WORKER_") if role == "worker" else (MasterSettings, "OPS_MASTER_")
    )
    secret = {o.flag: o for o in iter_options(settings) if o.secret and o.flag}
    i = 0
    while i < len(flags):
        token = flags[i]
        name, eq, _ = token.lstrip("-").partition("=")
        if token.startswith("-") and name in secret:
            option = secret[name]
            raise ConfigError(
                f"-{name} is a secret and would be readable by every user in the boot-time "
                f"definition; leave it out and set {option.env_name(prefix)} in "
                f"/etc/gdos/{role}.env (Linux) or {option.key} in the config file "
                "(see docs/autostart.md)"
            )
        following = flags[i + 1] if i + 1 < len(flags) else None
        takes_next = token.startswith("-") and not eq and flag_takes_next(name, following)
        i += 2 if takes_next else 1


def apply(
    role: Role,
    enable: bool,
    flags: Sequence[str],
    *,
    installer: Installer | None = None,
    cwd: str | None = None,
    argv0: str | None = None,
    executable: str | None = None,
) -> str:
    """Install (``enable``) or remove start at boot for ``role``; return what was done.

    Parameters:
        role: ``"worker"`` or ``"master"``.
        enable: install and start (``True``) or stop and remove (``False``).
        flags: the server's flags without ``-autostart``, carried into the definition.
        installer: the service manager's installer; the platform's by default.
        cwd, argv0, executable: the command being run; default the current process's.

    Raises:
        ConfigError: a secret flag among ``flags`` (see :func:`refuse_secret_flags`).
        AutostartError: not permitted (not root / not elevated), no service manager,
            or the service manager refused.

    Example::

        apply("worker", True, ["-master", "http://10.0.0.1:8080"],
              installer=SystemdInstaller(unit_dir=tmp, systemctl=[fake]))
    """
    if enable:
        refuse_secret_flags(role, flags)
    chosen = installer if installer is not None else installer_for(sys.platform)
    if not enable:
        return chosen.remove(role)
    spec = build_spec(
        role,
        flags,
        cwd=os.getcwd() if cwd is None else cwd,
        argv0=sys.argv[0] if argv0 is None else argv0,
        executable=sys.executable if executable is None else executable,
    )
    return chosen.install(spec)


def command(
    role: Role,
    value: str,
    flags: Sequence[str],
    *,
    validate: Callable[[list[str]], object],
    installer: Installer | None = None,
) -> int:
    """``gdos-<role> -autostart VALUE``: do it, say what was done; the exit status.

    ``validate`` loads the settings from ``flags`` before anything is installed,
    so that a definition which would fail at every boot is refused (a
    :class:`~gdos_sdk.errors.ConfigError` is exit status 2, nothing installed);
    any other GDOS error (not root, no service manager) is exit status 1.
    """
    program = f"gdos-{role}"
    try:
        enable = parse_switch(value)
        if enable:
            validate(list(flags))
        done = apply(role, enable, flags, installer=installer)
    except ConfigError as exc:
        print(f"{program}: {exc.message}", file=sys.stderr)
        return 2
    except GdosError as exc:
        print(f"{program}: {exc.message}", file=sys.stderr)
        return 1
    print(f"{program}: {done}")
    return 0
