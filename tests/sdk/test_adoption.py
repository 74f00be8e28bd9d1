"""Adoption without processes: pid + create-time identity, pid files, matching, validation."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from gdos_sdk.adoption import (
    AdoptionSpec,
    AdoptionStrategy,
    PidFile,
    ProcessCandidate,
    ProcessIdentity,
    clean_cmdline,
    find_candidates,
    list_processes,
    pid_file_candidate,
    read_pid_file,
    same_create_time,
)
from gdos_sdk.codec import structure, unstructure
from gdos_sdk.errors import ValidationError
from gdos_sdk.models import ModuleCreate

T0 = 1_700_000_000.0


def proc(
    pid: int,
    name: str,
    *cmdline: str,
    created: float = T0,
    ppid: int = 1,
    cwd: str = "/",
    user: str = "root",
) -> ProcessCandidate:
    return ProcessCandidate(
        pid=pid,
        create_time=created,
        name=name,
        cmdline=list(cmdline) or [name],
        cwd=cwd,
        user=user,
        ppid=ppid,
    )


TABLE = [
    proc(10, "nginx", "nginx: master process /usr/sbin/nginx", created=T0 + 1),
    proc(11, "nginx", "nginx: worker process", created=T0 + 2, ppid=10, user="www-data"),
    proc(12, "nginx", "nginx: worker process", created=T0 + 2, ppid=10, user="www-data"),
    proc(20, "redis-server", "redis-server 127.0.0.1:6379", created=T0 + 5, user="redis"),
    proc(21, "redis-server", "redis-server 127.0.0.1:7000", created=T0 + 3, cwd="/srv/r2"),
    proc(30, "bash", "bash", "-c", "redis-server --port 7001", created=T0 + 4),
]


# --- identity -------------------------------------------------------------------------------


def test_identity_is_pid_and_create_time() -> None:
    tracked = ProcessIdentity(42, T0 + 0.25)
    assert tracked.matches(ProcessIdentity(42, T0 + 0.25))
    # The same pid started later is another process (the OS reused the number).
    assert not tracked.matches(ProcessIdentity(42, T0 + 300.5))
    assert not tracked.matches(ProcessIdentity(43, T0 + 0.25))


def test_create_time_tolerates_a_boot_time_step_only() -> None:
    assert same_create_time(T0 + 1.25, T0 + 0.25)  # boot time re-read one second apart
    assert not same_create_time(T0 + 1.75, T0 + 0.25)
    assert not same_create_time(T0 + 0.1, T0)


def test_candidate_identity() -> None:
    assert TABLE[0].identity == ProcessIdentity(10, T0 + 1)


# --- pid files ------------------------------------------------------------------------------


def test_read_pid_file(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    path.write_text("1234\n")
    got = read_pid_file(str(path))
    assert got.pid == 1234 and got.mtime == pytest.approx(path.stat().st_mtime)
    path.write_text("garbage")
    assert read_pid_file(str(path)).pid is None
    assert "holds no pid" in read_pid_file(str(path)).problem
    missing = read_pid_file(str(tmp_path / "none.pid"))
    assert missing.pid is None and "cannot read" in missing.problem


def test_pid_file_names_the_process_that_wrote_it() -> None:
    spec = AdoptionSpec(strategy=AdoptionStrategy.PID_FILE, pid_file="/run/nginx.pid")
    found, why = pid_file_candidate(spec, PidFile(10, mtime=T0 + 1.5), TABLE)
    assert found is TABLE[0] and why == ""


def test_stale_pid_file_pointing_at_a_reused_pid_is_not_the_service() -> None:
    spec = AdoptionSpec(strategy=AdoptionStrategy.PID_FILE, pid_file="/run/old.pid")
    # Written long before pid 20 started: whoever wrote it is gone, the pid was reused.
    found, why = pid_file_candidate(spec, PidFile(20, mtime=T0 - 600), TABLE)
    assert found is None and "stale" in why
    assert find_candidates(spec, TABLE, pid_file=PidFile(20, mtime=T0 - 600)) == []


def test_pid_file_of_a_dead_process_or_the_wrong_program() -> None:
    spec = AdoptionSpec(strategy=AdoptionStrategy.PID_FILE, pid_file="/run/x.pid", name="nginx")
    assert "not running" in pid_file_candidate(spec, PidFile(99, T0 + 10), TABLE)[1]
    found, why = pid_file_candidate(spec, PidFile(20, T0 + 10), TABLE)
    assert found is None and "does not match" in why
    assert pid_file_candidate(spec, PidFile(None, problem="gone"), TABLE) == (None, "gone")


# --- matching -------------------------------------------------------------------------------


def pids(spec: AdoptionSpec, table: list[ProcessCandidate] = TABLE) -> list[int]:
    return [p.pid for p in find_candidates(spec, table)]


def test_match_by_name_takes_the_top_of_the_tree_not_its_workers() -> None:
    assert pids(AdoptionSpec(strategy=AdoptionStrategy.MATCH, name="nginx")) == [10]


def test_match_by_name_oldest_first() -> None:
    assert pids(AdoptionSpec(strategy=AdoptionStrategy.MATCH, name="redis-server")) == [21, 20]


def test_match_by_cmdline_regex_name_cwd_and_user() -> None:
    match = AdoptionStrategy.MATCH
    assert pids(AdoptionSpec(strategy=match, cmdline=r":6379\b")) == [20]
    # A regex alone also finds a shell that mentions the program; the name narrows it.
    assert pids(AdoptionSpec(strategy=match, cmdline="redis-server")) == [21, 30, 20]
    assert pids(AdoptionSpec(strategy=match, name="redis-server", cmdline="redis")) == [21, 20]
    assert pids(AdoptionSpec(strategy=match, name="redis-server", cwd="/srv/r2/")) == [21]
    assert pids(AdoptionSpec(strategy=match, name="redis-server", user="redis")) == [20]
    assert pids(AdoptionSpec(strategy=match, name="postgres")) == []


def test_excluded_pids_never_match() -> None:
    spec = AdoptionSpec(strategy=AdoptionStrategy.MATCH, name="redis-server")
    assert [p.pid for p in find_candidates(spec, TABLE, exclude_pids=frozenset({21}))] == [20]


def test_spawn_has_nothing_to_adopt() -> None:
    assert pids(AdoptionSpec(strategy=AdoptionStrategy.SPAWN, command="sleep 1")) == []


# --- validation and the wire ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        (AdoptionSpec(strategy=AdoptionStrategy.PID_FILE), "$.adoption.pid_file"),
        (
            AdoptionSpec(strategy=AdoptionStrategy.PID_FILE, pid_file="run/x.pid"),
            "$.adoption.pid_file",
        ),
        (AdoptionSpec(strategy=AdoptionStrategy.MATCH), "$.adoption.name"),
        (AdoptionSpec(strategy=AdoptionStrategy.MATCH, cmdline="(["), "$.adoption.cmdline"),
        (AdoptionSpec(strategy=AdoptionStrategy.SPAWN, command=" "), "$.adoption.command"),
        (
            AdoptionSpec(strategy=AdoptionStrategy.MATCH, name="x", log_paths=["rel.log"]),
            "$.adoption.log_paths[0]",
        ),
    ],
)
def test_invalid_specs_name_the_field(spec: AdoptionSpec, path: str) -> None:
    with pytest.raises(ValidationError) as info:
        spec.check()
    assert info.value.details == [{"path": path, "message": info.value.details[0]["message"]}]


def test_out_of_range_timeouts_are_refused_when_built_and_name_the_nested_field() -> None:
    with pytest.raises(ValidationError) as info:
        AdoptionSpec(strategy=AdoptionStrategy.MATCH, name="x", stop_timeout=0)
    assert info.value.details[0]["path"] == "$.stop_timeout"
    body = {"name": "m", "kind": "adopted", "adoption": {"strategy": "match", "start_timeout": 4e3}}
    with pytest.raises(ValidationError) as info:
        structure(body, ModuleCreate)
    assert [d["path"] for d in info.value.details] == ["$.adoption.start_timeout"]


def test_valid_spec_round_trips() -> None:
    spec = AdoptionSpec(
        strategy=AdoptionStrategy.PID_FILE,
        pid_file=os.path.abspath("/run/nginx.pid"),
        name="nginx",
        start_command="nginx",
        stop_command="nginx -s quit",
        log_paths=["/var/log/nginx/error.log"],
    )
    spec.check()
    assert structure(unstructure(spec), AdoptionSpec) == spec
    assert structure(unstructure(TABLE[0]), ProcessCandidate) == TABLE[0]


def test_a_rewritten_title_reads_as_a_command_line() -> None:
    padded = ["/usr/bin/redis-server 127.0.0.1:54077", *[""] * 70]
    assert clean_cmdline(padded) == ["/usr/bin/redis-server", "127.0.0.1:54077"]
    assert clean_cmdline(["nginx: worker process", ""]) == ["nginx:", "worker", "process"]
    # Real empty arguments between others stay; a plain command line is left as it is.
    assert clean_cmdline(["sh", "-c", "", "x", ""]) == ["sh", "-c", "", "x"]
    assert clean_cmdline(["/opt/my app/run"]) == ["/opt/my", "app/run"]  # as psutil reads it
    assert clean_cmdline(["python3", "-m", "http.server"]) == ["python3", "-m", "http.server"]
    assert clean_cmdline(["", ""]) == []


REDIS = shutil.which("redis-server")


@pytest.mark.skipif(REDIS is None, reason="redis-server is not installed (CI installs it)")
def test_redis_server_is_listed_with_its_title_cleaned(tmp_path: Path) -> None:
    assert REDIS is not None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    redis = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:  # redis rewrites its title once it is set up
            found = [p for p in list_processes(details=False) if p.pid == redis.pid]
            if found and any(f":{port}" in arg for arg in found[0].cmdline):
                break
            assert time.monotonic() < deadline, found
            time.sleep(0.05)
        assert found[0].cmdline == [REDIS, f"127.0.0.1:{port}"]
        assert "" not in found[0].cmdline
    finally:
        redis.kill()
        redis.wait(10)
