"""Autostart: the three templates, the installers against fake service-manager tools, apply().

The systemd unit is checked by the real ``systemd-analyze verify`` when it can
run here; the launchd plist and the Windows task XML are parsed and their
elements checked (no launchd or Task Scheduler on Linux).
"""

from __future__ import annotations

import plistlib
import re
import shlex
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdos_sdk import autostart
from gdos_sdk.autostart import (
    AutostartSpec,
    LaunchdInstaller,
    SchtasksInstaller,
    SystemdInstaller,
    absolute_config,
    build_spec,
    installer_for,
    parse_switch,
    program_argv,
    render_launchd_plist,
    render_systemd_unit,
    render_windows_task,
    split_autostart_flag,
    systemd_quote,
)
from gdos_sdk.errors import AutostartError, ConfigError

TASK_NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
NASTY = "a b\"c'd 50% $HOME \\x ;é&<>"


def spec_for(tmp_path: Path, *args: str) -> AutostartSpec:
    return AutostartSpec(
        role="worker", argv=(sys.executable, "-m", "gdos_worker", *args), working_dir=str(tmp_path)
    )


# --- the command line -----------------------------------------------------------------------


def test_split_autostart_flag_spellings() -> None:
    assert split_autostart_flag(["-autostart", "1", "-port", ":9"]) == ("1", ["-port", ":9"])
    assert split_autostart_flag(["--autostart=0"]) == ("0", [])
    assert split_autostart_flag(["-master", "http://m", "--autostart", "1"]) == (
        "1",
        ["-master", "http://m"],
    )
    assert split_autostart_flag(["-autostart"]) == ("", [])
    assert split_autostart_flag(["-port", ":9"]) == (None, ["-port", ":9"])
    # A flag's value is never read as a flag, and look-alike flags are not taken.
    assert split_autostart_flag(["-join_token", "-autostart"]) == (
        None,
        ["-join_token", "-autostart"],
    )
    assert split_autostart_flag(["-autostartx", "1"]) == (None, ["-autostartx", "1"])


def test_parse_switch() -> None:
    assert parse_switch("1") and parse_switch(" TRUE ") and parse_switch("on")
    assert not parse_switch("0") and not parse_switch("no")
    with pytest.raises(ConfigError, match="takes 1"):
        parse_switch("maybe")
    with pytest.raises(ConfigError):
        parse_switch("")


def test_program_argv_prefers_the_console_script(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "gdos-worker"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    # Relative argv0 is made absolute against cwd; symlinks are not resolved.
    assert program_argv(
        "worker", argv0="bin/gdos-worker", executable="/venv/bin/python", cwd=str(tmp_path)
    ) == [str(script)]


def test_program_argv_falls_back_to_python_m(tmp_path: Path) -> None:
    argv = program_argv(
        "master",
        argv0=str(tmp_path / "gdos_master" / "__main__.py"),
        executable="/venv/bin/python",
        cwd=str(tmp_path),
    )
    assert argv == ["/venv/bin/python", "-m", "gdos_master"]
    # The script name alone is not enough: it must exist.
    argv = program_argv("worker", argv0="/gone/gdos-worker", executable="/venv/bin/python", cwd="/")
    assert argv == ["/venv/bin/python", "-m", "gdos_worker"]


def test_program_argv_windows_launcher_without_exe_suffix() -> None:
    seen = {"/venv/Scripts/gdos-worker.exe"}
    argv = program_argv(
        "worker",
        argv0="/venv/Scripts/gdos-worker",
        executable="/venv/Scripts/python.exe",
        cwd="/",
        exists=seen.__contains__,
    )
    assert argv == ["/venv/Scripts/gdos-worker.exe"]


def test_absolute_config_every_spelling() -> None:
    assert absolute_config(["-config", "w.yaml", "-port", ":9"], cwd="/srv") == [
        "-config",
        "/srv/w.yaml",
        "-port",
        ":9",
    ]
    assert absolute_config(["--config=conf/w.yaml"], cwd="/srv") == ["--config=/srv/conf/w.yaml"]
    assert absolute_config(["--config", "/etc/w.yaml"], cwd="/srv") == ["--config", "/etc/w.yaml"]
    # Only the config flag: other values stay as given (they resolve against the working dir).
    assert absolute_config(["-work_dir", "work"], cwd="/srv") == ["-work_dir", "work"]


def test_build_spec_carries_the_command(tmp_path: Path) -> None:
    spec = build_spec(
        "worker",
        ["-master", "http://m:8080", "-config", "w.yaml"],
        cwd=str(tmp_path),
        argv0="gdos_worker/__main__.py",
        executable="/venv/bin/python",
    )
    assert spec.argv == (
        "/venv/bin/python",
        "-m",
        "gdos_worker",
        "-master",
        "http://m:8080",
        "-config",
        str(tmp_path / "w.yaml"),
    )
    assert spec.working_dir == str(tmp_path)
    assert (spec.unit_name, spec.launchd_label, spec.task_name) == (
        "gdos-worker.service",
        "io.gdos.worker",
        "GDOS Worker",
    )


def test_spec_validation() -> None:
    with pytest.raises(ValueError):
        AutostartSpec(role="agent", argv=("/bin/x",), working_dir="/")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AutostartSpec(role="worker", argv=(), working_dir="/")


# --- systemd --------------------------------------------------------------------------------


def _systemd_words(line: str) -> list[str]:
    """Split an ExecStart= value the way systemd.service(5) describes (enough for our output)."""
    words = []
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"|(\S+)', line):
        quoted, bare = match.groups()
        text = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        words.append(text.replace("%%", "%").replace("$$", "$"))
    return words


@given(st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=0, max_size=40))
def test_systemd_quote_round_trips(arg: str) -> None:
    assert _systemd_words(systemd_quote(arg)) == [arg]


def test_systemd_quote_examples() -> None:
    assert systemd_quote("/usr/bin/python3") == "/usr/bin/python3"
    assert systemd_quote("http://m:8080") == "http://m:8080"
    assert systemd_quote("a b") == '"a b"'
    assert systemd_quote('say "hi"') == '"say \\"hi\\""'
    assert systemd_quote("50%") == '"50%%"'
    assert systemd_quote("$HOME") == '"$$HOME"'
    assert systemd_quote("c:\\x") == '"c:\\\\x"'
    assert systemd_quote("") == '""'
    with pytest.raises(AutostartError, match="control character"):
        systemd_quote("two\nlines")


def test_systemd_unit_content(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "-config", "/etc/gdos/worker.yaml")
    text = render_systemd_unit(spec, environment_file="/etc/gdos/worker.env")
    lines = text.splitlines()
    for line in (
        "[Unit]",
        "After=network-online.target",
        "Wants=network-online.target",
        "[Service]",
        "KillMode=process",
        "Restart=on-failure",
        f"WorkingDirectory={tmp_path}",
        "EnvironmentFile=-/etc/gdos/worker.env",
        "[Install]",
        "WantedBy=multi-user.target",
    ):
        assert line in lines, line
    exec_start = next(line for line in lines if line.startswith("ExecStart="))
    assert _systemd_words(exec_start.removeprefix("ExecStart=")) == list(spec.argv)
    assert "autostart" not in text.split("[Unit]")[1]  # only the header comment names it


def test_systemd_unit_refuses_what_it_cannot_express(tmp_path: Path) -> None:
    with pytest.raises(AutostartError, match="absolute"):
        render_systemd_unit(
            AutostartSpec(role="worker", argv=("gdos-worker",), working_dir="/"),
            environment_file="/etc/gdos/worker.env",
        )
    with pytest.raises(AutostartError, match="working directory"):
        render_systemd_unit(
            AutostartSpec(role="worker", argv=("/bin/true",), working_dir="relative"),
            environment_file="/etc/gdos/worker.env",
        )
    with pytest.raises(AutostartError, match="control character"):
        render_systemd_unit(spec_for(tmp_path, "a\tb"), environment_file="/etc/gdos/w.env")
    for bad in ('/opt/my "app"/gdos-worker', "/opt/it's/gdos-worker", "/opt/a\\b/gdos-worker"):
        with pytest.raises(AutostartError, match="quotes"):
            render_systemd_unit(
                AutostartSpec(role="worker", argv=(bad,), working_dir="/"),
                environment_file="/etc/gdos/worker.env",
            )


def _systemd_analyze() -> str:
    """The systemd-analyze binary, or skip (with the reason) when it cannot verify units here."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd); content checked")
    return tool


def _verify(tool: str, unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    # A known-good unit first: if even that fails, the tool cannot run in this environment.
    probe = tmp_path / "probe" / "gdos-probe.service"
    probe.parent.mkdir()
    probe.write_text("[Service]\nExecStart=/bin/true\n")
    done = _verify(tool, probe)
    if done.returncode != 0:
        pytest.skip(f"systemd-analyze verify cannot run here: {done.stderr.strip()}")

    # The program's own name carries every character systemd allows there that needs
    # care: if it read ExecStart differently, it would report that file as missing.
    program = tmp_path / "bin" / "gdos a b 50% $HOME ;é&<>"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    spec = AutostartSpec(
        role="worker", argv=(str(program), "-config", f"/etc/{NASTY}.yaml"), working_dir="/"
    )
    unit = tmp_path / "gdos-worker.service"
    unit.write_text(render_systemd_unit(spec, environment_file=f"/etc/gdos/{NASTY}.env"))
    done = _verify(tool, unit)
    assert done.returncode == 0, done.stderr
    assert "gdos-worker.service" not in done.stderr + done.stdout, done.stderr

    # And the check has teeth: a program that does not exist is reported.
    broken = tmp_path / "broken" / "gdos-worker.service"
    broken.parent.mkdir()
    gone = AutostartSpec(role="worker", argv=(str(tmp_path / "gone"),), working_dir="/")
    broken.write_text(render_systemd_unit(gone, environment_file="/etc/gdos/worker.env"))
    assert _verify(tool, broken).returncode != 0


# --- launchd --------------------------------------------------------------------------------


def test_launchd_plist_content() -> None:
    spec = AutostartSpec(
        role="worker",
        argv=("/usr/local/bin/gdos-worker", "-config", f"/etc/{NASTY}.yaml"),
        working_dir="/var/lib/gdos",
    )
    data = render_launchd_plist(spec, log_path="/Library/Logs/gdos-worker.log")
    plist = plistlib.loads(data)
    assert plist == {
        "Label": "io.gdos.worker",
        "ProgramArguments": list(spec.argv),
        "WorkingDirectory": "/var/lib/gdos",
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "AbandonProcessGroup": True,
        "StandardOutPath": "/Library/Logs/gdos-worker.log",
        "StandardErrorPath": "/Library/Logs/gdos-worker.log",
        "ProcessType": "Standard",
    }
    assert b"&amp;&lt;&gt;" in data  # escaped, and parsed back above


# --- Windows Task Scheduler -----------------------------------------------------------------


def _task(spec: AutostartSpec) -> ET.Element:
    # Parsed from the bytes actually written: UTF-16 with a byte-order mark.
    return ET.fromstring(render_windows_task(spec).encode("utf-16"))


def _text(root: ET.Element, path: str) -> str | None:
    found = root.find(path, TASK_NS)
    assert found is not None, path
    return found.text


def test_windows_task_content() -> None:
    spec = AutostartSpec(
        role="worker",
        argv=(
            r"C:\Program Files\gdos\gdos-worker.exe",
            "-config",
            r"C:\gdos\my worker.yaml",
            "-join_token",
            'a&b<c>"d',
        ),
        working_dir=r"C:\gdos",
    )
    root = _task(spec)
    assert root.get("version") == "1.2"
    assert _text(root, "t:RegistrationInfo/t:URI") == "\\GDOS Worker"
    assert _text(root, "t:Triggers/t:BootTrigger/t:Enabled") == "true"
    assert _text(root, "t:Principals/t:Principal/t:UserId") == "S-1-5-18"  # SYSTEM
    assert _text(root, "t:Principals/t:Principal/t:RunLevel") == "HighestAvailable"
    settings = "t:Settings/t:"
    assert _text(root, settings + "MultipleInstancesPolicy") == "IgnoreNew"
    assert _text(root, settings + "ExecutionTimeLimit") == "PT0S"
    assert _text(root, settings + "DisallowStartIfOnBatteries") == "false"
    assert _text(root, settings + "StopIfGoingOnBatteries") == "false"
    assert _text(root, settings + "Priority") == "4"
    assert _text(root, settings + "RestartOnFailure/t:Interval") == "PT1M"
    assert _text(root, settings + "RestartOnFailure/t:Count") == "999"
    assert _text(root, "t:Actions/t:Exec/t:Command") == f'"{spec.argv[0]}"'  # has a space
    arguments = _text(root, "t:Actions/t:Exec/t:Arguments")
    # The C runtime's quoting (only what needs it), XML-escaped and parsed back.
    assert arguments == r'-config "C:\gdos\my worker.yaml" -join_token a&b<c>\"d'
    assert arguments == subprocess.list2cmdline(spec.argv[1:])
    assert _text(root, "t:Actions/t:Exec/t:WorkingDirectory") == r"C:\gdos"


def test_windows_task_refuses_a_relative_program() -> None:
    with pytest.raises(AutostartError, match="absolute"):
        render_windows_task(AutostartSpec(role="master", argv=("gdos-master",), working_dir="C:\\"))


# --- installers with fake tools -------------------------------------------------------------


def fake_tool(tmp_path: Path, name: str, body: str = "") -> tuple[Path, Path]:
    """An executable shell script that appends its argv (one line per call) to a log."""
    log = tmp_path / f"{name}.calls"
    script = tmp_path / name
    script.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> {shlex.quote(str(log))}\n{body}\nexit 0\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_systemd_install_and_remove(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    tool, log = fake_tool(tmp_path, "systemctl")
    installer = SystemdInstaller(unit_dir=units, systemctl=[str(tool)])
    spec = spec_for(tmp_path, "-master", "http://m:8080")

    message = installer.install(spec)
    unit = units / "gdos-worker.service"
    assert unit.read_text() == render_systemd_unit(spec, environment_file="/etc/gdos/worker.env")
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert calls(log) == ["daemon-reload", "enable --now gdos-worker.service"]
    assert str(unit) in message and "systemctl status gdos-worker.service" in message
    assert [p.name for p in units.iterdir()] == ["gdos-worker.service"]  # no temp file left

    log.unlink()
    installer.install(spec)  # unchanged: nothing to restart
    assert calls(log) == ["daemon-reload", "enable --now gdos-worker.service"]

    log.unlink()
    installer.install(spec_for(tmp_path, "-master", "http://other:8080"))
    assert calls(log) == [
        "daemon-reload",
        "enable --now gdos-worker.service",
        "try-restart gdos-worker.service",  # a changed command takes effect now
    ]

    log.unlink()
    assert "removed" in installer.remove("worker")
    assert not unit.exists()
    assert calls(log) == ["disable --now gdos-worker.service", "daemon-reload"]

    log.unlink()
    assert "nothing to remove" in installer.remove("worker")
    assert calls(log) == []


def test_systemd_failed_install_leaves_nothing(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    failing = 'case "$*" in enable*) echo "Failed to enable unit: Access denied" >&2; exit 1;; esac'
    tool, log = fake_tool(tmp_path, "systemctl", failing)
    installer = SystemdInstaller(unit_dir=units, systemctl=[str(tool)])
    with pytest.raises(AutostartError, match="Access denied"):
        installer.install(spec_for(tmp_path))
    assert list(units.iterdir()) == []
    assert calls(log) == ["daemon-reload", "enable --now gdos-worker.service", "daemon-reload"]


def test_systemd_failed_reinstall_restores_the_previous_unit(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    unit = units / "gdos-worker.service"
    unit.write_text("previous\n")
    failing = 'case "$*" in enable*) echo "boom" >&2; exit 1;; esac'
    tool, _ = fake_tool(tmp_path, "systemctl", failing)
    with pytest.raises(AutostartError, match="boom"):
        SystemdInstaller(unit_dir=units, systemctl=[str(tool)]).install(spec_for(tmp_path))
    assert unit.read_text() == "previous\n"


def test_systemd_unwritable_target_is_a_clear_error(tmp_path: Path) -> None:
    tool, log = fake_tool(tmp_path, "systemctl")
    installer = SystemdInstaller(unit_dir=tmp_path / "missing", systemctl=[str(tool)])
    with pytest.raises(AutostartError, match=r"cannot write .*gdos-worker\.service"):
        installer.install(spec_for(tmp_path))
    assert calls(log) == []


def test_missing_tool_is_a_clear_error(tmp_path: Path) -> None:
    installer = SystemdInstaller(unit_dir=tmp_path, systemctl=[str(tmp_path / "no-systemctl")])
    with pytest.raises(AutostartError, match="cannot run"):
        installer.install(spec_for(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_launchd_install_and_remove(tmp_path: Path) -> None:
    daemons = tmp_path / "LaunchDaemons"
    daemons.mkdir()
    tool, log = fake_tool(tmp_path, "launchctl")
    installer = LaunchdInstaller(daemon_dir=daemons, launchctl=[str(tool)], log_dir="/var/log")
    spec = spec_for(tmp_path)
    plist_path = daemons / "io.gdos.worker.plist"

    installer.install(spec)
    plist = plistlib.loads(plist_path.read_bytes())
    assert plist["ProgramArguments"] == list(spec.argv)
    assert plist["StandardOutPath"] == "/var/log/gdos-worker.log"
    assert stat.S_IMODE(plist_path.stat().st_mode) == 0o644
    assert calls(log) == [f"load -w {plist_path}"]

    log.unlink()
    installer.install(spec)  # loaded already: unload first, or load refuses
    assert calls(log) == [f"unload {plist_path}", f"load -w {plist_path}"]

    log.unlink()
    installer.remove("worker")
    assert not plist_path.exists()
    assert calls(log) == [f"unload -w {plist_path}"]


def test_schtasks_install_and_remove(tmp_path: Path) -> None:
    saved = tmp_path / "saved.xml"
    flag = tmp_path / "registered"
    # A stateful fake: /Create keeps a copy of the XML and registers, /Query reports it.
    body = f"""
case "$1" in
  /Create) cp "$3" {shlex.quote(str(saved))}; touch {shlex.quote(str(flag))};;
  /Query) [ -e {shlex.quote(str(flag))} ] || exit 1;;
  /Delete) rm -f {shlex.quote(str(flag))};;
esac"""
    tool, log = fake_tool(tmp_path, "schtasks", body)
    temp = tmp_path / "temp"
    temp.mkdir()
    installer = SchtasksInstaller(schtasks=[str(tool)], temp_dir=str(temp))
    spec = AutostartSpec(
        role="worker", argv=("C:\\gdos\\gdos-worker.exe", "-port", ":8081"), working_dir="C:\\"
    )

    assert "registered and started" in installer.install(spec)
    create, run = calls(log)
    assert re.fullmatch(r"/Create /XML .*\.xml /TN GDOS Worker /F", create)
    assert run == "/Run /TN GDOS Worker"
    raw = saved.read_bytes()
    assert raw.startswith(b"\xff\xfe")  # UTF-16 (little-endian) byte-order mark
    assert _text(ET.fromstring(raw), "t:Actions/t:Exec/t:Arguments") == "-port :8081"
    assert list(temp.iterdir()) == []  # the XML file is deleted after registering

    log.unlink()
    assert "deleted" in installer.remove("worker")
    assert calls(log) == [
        "/Query /TN GDOS Worker",
        "/End /TN GDOS Worker",
        "/Delete /TN GDOS Worker /F",
    ]

    log.unlink()
    assert "nothing to remove" in installer.remove("worker")
    assert calls(log) == ["/Query /TN GDOS Worker"]


def test_schtasks_access_denied_says_to_elevate(tmp_path: Path) -> None:
    tool, _ = fake_tool(tmp_path, "schtasks", 'echo "ERROR: Access is denied." >&2; exit 1')
    installer = SchtasksInstaller(schtasks=[str(tool)], temp_dir=str(tmp_path))
    spec = AutostartSpec(role="master", argv=("C:\\gdos-master.exe",), working_dir="C:\\")
    with pytest.raises(AutostartError, match=r"Access is denied.*Run as administrator"):
        installer.install(spec)


def test_installer_for_platforms() -> None:
    assert isinstance(installer_for("linux"), SystemdInstaller)
    assert isinstance(installer_for("darwin"), LaunchdInstaller)
    assert isinstance(installer_for("win32"), SchtasksInstaller)
    with pytest.raises(AutostartError, match="not supported"):
        installer_for("freebsd14")


# --- apply(): what the command lines call ---------------------------------------------------


def test_apply_installs_the_running_command_and_removes_it(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    tool, log = fake_tool(tmp_path, "systemctl")
    script = tmp_path / "bin" / "gdos-worker"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    installer = SystemdInstaller(unit_dir=units, systemctl=[str(tool)])
    workdir = tmp_path / "srv"
    workdir.mkdir()

    flag, flags = split_autostart_flag(["-autostart", "1", "-config", "worker.yaml"])
    assert flag is not None and parse_switch(flag)
    autostart.apply(
        "worker",
        True,
        flags,
        installer=installer,
        cwd=str(workdir),
        argv0=str(script),
        executable=sys.executable,
    )
    text = (units / "gdos-worker.service").read_text()
    assert f"ExecStart={script} -config {workdir}/worker.yaml\n" in text
    assert f"WorkingDirectory={workdir}\n" in text
    assert "autostart" not in text.split("[Unit]")[1]  # only the header comment names it

    autostart.apply("worker", False, [], installer=installer)
    assert not (units / "gdos-worker.service").exists()
    assert calls(log)[-2:] == ["disable --now gdos-worker.service", "daemon-reload"]


@pytest.mark.parametrize(
    ("role", "flags", "variable"),
    [
        (
            "worker",
            ["-master", "http://m", "-join_token", "s3cret"],
            "OPS_WORKER_CONNECT_JOIN_TOKEN",
        ),
        ("worker", ["--join_token=s3cret"], "OPS_WORKER_CONNECT_JOIN_TOKEN"),
        ("master", ["-minio_secret_key", "k"], "OPS_MASTER_STORAGE_MINIO_SECRET_KEY"),
    ],
)
def test_apply_refuses_secrets_on_the_command_line(
    tmp_path: Path, role: autostart.Role, flags: list[str], variable: str
) -> None:
    tool, log = fake_tool(tmp_path, "systemctl")
    installer = SystemdInstaller(unit_dir=tmp_path, systemctl=[str(tool)])
    with pytest.raises(ConfigError, match=variable) as caught:
        autostart.apply(role, True, flags, installer=installer, cwd=str(tmp_path))
    assert "s3cret" not in caught.value.message
    assert calls(log) == [] and not list(tmp_path.glob("*.service"))
    # A value that merely looks like the flag is not a flag.
    autostart.refuse_secret_flags("worker", ["-master", "-join_token"])


def test_command_exit_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What ``gdos-<role> -autostart`` prints and returns, with a fake systemctl."""
    tool, log = fake_tool(tmp_path, "systemctl")
    installer = SystemdInstaller(unit_dir=tmp_path, systemctl=[str(tool)])
    seen: list[list[str]] = []

    def refuse(flags: list[str]) -> None:
        seen.append(flags)
        raise ConfigError("-port: not a port")

    # Settings that would fail at boot: exit 2, validated, nothing installed.
    assert (
        autostart.command("worker", "1", ["-port", "x"], validate=refuse, installer=installer) == 2
    )
    assert seen == [["-port", "x"]]
    assert capsys.readouterr().err == "gdos-worker: -port: not a port\n"
    assert calls(log) == [] and not list(tmp_path.glob("*.service"))
    # A bad switch value is a command-line error too.
    assert autostart.command("worker", "maybe", [], validate=seen.append, installer=installer) == 2
    assert "maybe" in capsys.readouterr().err
    # Installing: exit 0 and the installer's message on stdout.
    assert autostart.command("master", "on", [], validate=seen.append, installer=installer) == 0
    assert seen[-1] == [] and (tmp_path / "gdos-master.service").exists()
    assert capsys.readouterr().out.startswith("gdos-master: ")
    # Removing does not validate the flags.
    assert (
        autostart.command("master", "0", ["-port", "x"], validate=refuse, installer=installer) == 0
    )
    assert not (tmp_path / "gdos-master.service").exists() and len(seen) == 2
    # The service manager refusing is exit status 1.
    failing, _ = fake_tool(tmp_path, "systemctl-broken", "exit 3")
    broken = SystemdInstaller(unit_dir=tmp_path, systemctl=[str(failing)])
    assert autostart.command("worker", "1", [], validate=seen.append, installer=broken) == 1
    assert capsys.readouterr().err.startswith("gdos-worker: ")


def test_exported_names_are_sorted_and_present() -> None:
    for module in (autostart, autostart.render, autostart.install):
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), name
