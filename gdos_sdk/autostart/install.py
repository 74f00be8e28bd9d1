"""Install and remove start-at-boot definitions: the I/O around the pure renderers.

One installer per service manager, each taking its target folder and its
command-line tool as constructor parameters, so tests run them against a
temporary folder and a fake ``systemctl``/``launchctl``/``schtasks`` script::

    SystemdInstaller()                       # /etc/systemd/system + systemctl
    LaunchdInstaller()                       # /Library/LaunchDaemons + launchctl
    SchtasksInstaller()                      # schtasks.exe

Install writes the file atomically (temporary name, then rename) and asks the
service manager to enable and start it; if that fails, a file that did not
exist before is removed again, so a failed install leaves nothing behind.
Errors are :class:`~gdos_sdk.errors.AutostartError` with the tool's own words.

Example::

    installer = installer_for(sys.platform)
    print(installer.install(spec))
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from gdos_sdk.autostart.render import (
    AutostartSpec,
    Role,
    render_launchd_plist,
    render_systemd_unit,
    render_windows_task,
)
from gdos_sdk.errors import AutostartError

__all__ = [
    "Installer",
    "LaunchdInstaller",
    "SchtasksInstaller",
    "SystemdInstaller",
    "installer_for",
]


class Installer(Protocol):
    """Puts a definition in place for one service manager, or takes it away.

    Example::

        message = installer.install(spec)   # "installed and started ..."
        message = installer.remove("worker")
    """

    def install(self, spec: AutostartSpec) -> str:
        """Write, enable and start ``spec``; return what was done, for the operator."""
        ...

    def remove(self, role: Role) -> str:
        """Stop, disable and delete ``role``'s definition; a no-op if there is none."""
        ...


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a service-manager command; raise :class:`AutostartError` with its output on failure."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except OSError as exc:
        raise AutostartError(f"cannot run {argv[0]!r}: {exc.strerror}") from exc
    if check and done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        raise AutostartError(
            f"`{' '.join(argv)}` failed with exit code {done.returncode}: {' '.join(said)}"
        )
    return done


def _denied(exc: OSError, path: Path) -> AutostartError:
    hint = ""
    if exc.errno in (errno.EACCES, errno.EPERM):
        hint = " (installing start at boot needs root: run it with sudo)"
    return AutostartError(f"cannot write {path}: {exc.strerror}{hint}")


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise _denied(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # Service managers refuse definitions others can write (launchd) or warn (systemd).
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _denied(exc, path) from exc


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AutostartError(f"cannot read {path}: {exc.strerror}") from exc


def _delete(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise _denied(exc, path) from exc


class SystemdInstaller:
    """A systemd system unit: ``/etc/systemd/system/gdos-<role>.service``.

    Parameters:
        unit_dir: where units are written.
        systemctl: the command (and leading arguments) that talks to systemd.
        environment_dir: where the optional ``<role>.env`` file is looked for at start.

    Example::

        SystemdInstaller(unit_dir=tmp_path, systemctl=[str(fake_systemctl)]).install(spec)
    """

    def __init__(
        self,
        *,
        unit_dir: str | os.PathLike[str] = "/etc/systemd/system",
        systemctl: Sequence[str] = ("systemctl",),
        environment_dir: str = "/etc/gdos",
    ) -> None:
        self.unit_dir = Path(unit_dir)
        self.systemctl = list(systemctl)
        self.environment_dir = environment_dir

    def path(self, role: Role) -> Path:
        """Where ``role``'s unit lives."""
        return self.unit_dir / f"gdos-{role}.service"

    def install(self, spec: AutostartSpec) -> str:
        """Write the unit, ``daemon-reload``, ``enable --now``; restart it if it changed."""
        path = self.path(spec.role)
        text = render_systemd_unit(
            spec, environment_file=f"{self.environment_dir}/{spec.role}.env"
        ).encode()
        before = _read(path)
        _write_atomically(path, text, 0o644)
        try:
            _run([*self.systemctl, "daemon-reload"])
            _run([*self.systemctl, "enable", "--now", spec.unit_name])
            if before is not None and before != text:
                # enable --now leaves a running old command alone. Restarting is safe:
                # KillMode=process stops only the server, never its services.
                _run([*self.systemctl, "try-restart", spec.unit_name])
        except AutostartError:
            # Leave the machine as it was: no new unit, or the previous one back.
            if before is None:
                _delete(path)
            else:
                _write_atomically(path, before, 0o644)
            with contextlib.suppress(AutostartError):  # the first error is the one to report
                _run([*self.systemctl, "daemon-reload"], check=False)
            raise
        return (
            f"installed {path}, enabled and started {spec.unit_name}; "
            f"status: systemctl status {spec.unit_name}"
        )

    def remove(self, role: Role) -> str:
        """``disable --now`` (services keep running), delete the unit, ``daemon-reload``."""
        path = self.path(role)
        if _read(path) is None:
            return f"nothing to remove: {path} does not exist"
        _run([*self.systemctl, "disable", "--now", path.name])
        _delete(path)
        _run([*self.systemctl, "daemon-reload"])
        return f"stopped and disabled {path.name}, removed {path}"


class LaunchdInstaller:
    """A launchd daemon: ``/Library/LaunchDaemons/io.gdos.<role>.plist``.

    Parameters:
        daemon_dir: where daemon plists are written.
        launchctl: the command that talks to launchd.
        log_dir: where the server's stdout/stderr file goes (``gdos-<role>.log``).

    Example::

        LaunchdInstaller(daemon_dir=tmp_path, launchctl=[str(fake)]).install(spec)
    """

    def __init__(
        self,
        *,
        daemon_dir: str | os.PathLike[str] = "/Library/LaunchDaemons",
        launchctl: Sequence[str] = ("launchctl",),
        log_dir: str = "/Library/Logs",
    ) -> None:
        self.daemon_dir = Path(daemon_dir)
        self.launchctl = list(launchctl)
        self.log_dir = log_dir

    def path(self, role: Role) -> Path:
        """Where ``role``'s plist lives."""
        return self.daemon_dir / f"io.gdos.{role}.plist"

    def install(self, spec: AutostartSpec) -> str:
        """Write the plist and ``launchctl load -w`` it (RunAtLoad starts it now)."""
        path = self.path(spec.role)
        data = render_launchd_plist(spec, log_path=f"{self.log_dir}/gdos-{spec.role}.log")
        before = _read(path)
        if before is not None:
            # load refuses a job that is already loaded; unload stops only the server.
            _run([*self.launchctl, "unload", str(path)], check=False)
        _write_atomically(path, data, 0o644)
        try:
            _run([*self.launchctl, "load", "-w", str(path)])
        except AutostartError:
            if before is None:
                _delete(path)
            else:
                _write_atomically(path, before, 0o644)
                with contextlib.suppress(AutostartError):  # report the first error
                    _run([*self.launchctl, "load", "-w", str(path)], check=False)
            raise
        return f"installed and loaded {path}; status: sudo launchctl list {spec.launchd_label}"

    def remove(self, role: Role) -> str:
        """``launchctl unload -w`` (services keep running), then delete the plist."""
        path = self.path(role)
        if _read(path) is None:
            return f"nothing to remove: {path} does not exist"
        _run([*self.launchctl, "unload", "-w", str(path)])
        _delete(path)
        return f"unloaded and removed {path}"


class SchtasksInstaller:
    """A Windows scheduled task named ``GDOS Worker`` / ``GDOS Master``, run at boot.

    Parameters:
        schtasks: the command that talks to Task Scheduler.
        temp_dir: where the task XML is written for ``schtasks /Create /XML``
            (deleted right after); ``None`` for the system's temporary folder.

    Example::

        SchtasksInstaller().install(spec)
    """

    def __init__(
        self, *, schtasks: Sequence[str] = ("schtasks",), temp_dir: str | None = None
    ) -> None:
        self.schtasks = list(schtasks)
        self.temp_dir = temp_dir

    @staticmethod
    def task_name(role: Role) -> str:
        """``GDOS Worker`` or ``GDOS Master``."""
        return f"GDOS {role.capitalize()}"

    def install(self, spec: AutostartSpec) -> str:
        """Register the task from its XML (replacing one of the same name) and start it."""
        # UTF-16 with a byte-order mark, as the XML declaration says: schtasks reads that.
        data = render_windows_task(spec).encode("utf-16")
        name = spec.task_name
        fd, tmp = tempfile.mkstemp(dir=self.temp_dir, prefix="gdos-task-", suffix=".xml")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            _run([*self.schtasks, "/Create", "/XML", tmp, "/TN", name, "/F"])
        except AutostartError as exc:
            if "denied" not in exc.message.lower():
                raise
            raise AutostartError(
                f"{exc.message} (a task that runs as SYSTEM can only be registered from an "
                "elevated prompt: Run as administrator)"
            ) from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        _run([*self.schtasks, "/Run", "/TN", name])
        return (
            f"registered and started the scheduled task {name!r}; "
            f'status: schtasks /Query /TN "{name}" /V'
        )

    def remove(self, role: Role) -> str:
        """End the running task (services keep running), then delete it."""
        name = self.task_name(role)
        if _run([*self.schtasks, "/Query", "/TN", name], check=False).returncode != 0:
            return f"nothing to remove: no scheduled task {name!r}"
        _run([*self.schtasks, "/End", "/TN", name], check=False)  # fails when not running
        _run([*self.schtasks, "/Delete", "/TN", name, "/F"])
        return f"ended and deleted the scheduled task {name!r}"


def installer_for(platform: str) -> Installer:
    """The installer for ``platform`` (a :data:`sys.platform` value).

    Raises:
        AutostartError: no supported service manager on that platform.

    Example::

        installer_for("linux")  # SystemdInstaller()
    """
    if platform.startswith("linux"):
        return SystemdInstaller()
    if platform == "darwin":
        return LaunchdInstaller()
    if platform == "win32":
        return SchtasksInstaller()
    raise AutostartError(
        f"start at boot is not supported on {platform!r} (systemd, launchd or Windows only)"
    )
