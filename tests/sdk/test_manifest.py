"""service.json: validation collects every problem with its path; schema and code agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdos_sdk import manifest as manifest_module
from gdos_sdk.errors import ManifestError, ValidationError
from gdos_sdk.manifest import (
    HealthCheck,
    LogRotation,
    Manifest,
    RestartPolicy,
    json_schema,
    schema_text,
)

ROOT = Path(__file__).resolve().parents[2]


def base(**extra: Any) -> dict[str, Any]:
    return {"name": "api", "version": "1.0.0", "entrypoint": "bin/api", **extra}


def problems(data: Any) -> list[dict[str, Any]]:
    with pytest.raises(ManifestError) as info:
        Manifest.from_dict(data)
    details = info.value.details
    assert isinstance(details, list)
    return details


def by_path(data: Any) -> dict[str, str]:
    return {p["path"]: p["message"] for p in problems(data)}


def test_all_is_sorted_and_complete() -> None:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical.
    names = manifest_module.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert all(hasattr(manifest_module, n) for n in names)


def test_minimal_manifest_gets_documented_defaults() -> None:
    m = Manifest.from_dict(base())
    assert (m.name, m.version, m.entrypoint) == ("api", "1.0.0", "bin/api")
    assert m.description == "" and m.os == [] and m.args == [] and m.env == {}
    assert m.is_external is False and m.health_check is None and m.pid_strategy is None
    assert m.restart == RestartPolicy()
    assert (m.restart.policy, m.restart.max_restarts, m.restart.window_seconds) == (
        "always",
        5,
        60.0,
    )
    assert (m.restart.backoff_initial, m.restart.backoff_max, m.restart.start_seconds) == (
        1.0,
        30.0,
        1.0,
    )
    assert (m.stop_signal, m.stop_timeout) == ("SIGTERM", 10.0)
    assert (m.log.max_bytes, m.log.backups) == (10 * 1024 * 1024, 5)


def test_full_manifest_parses() -> None:
    m = Manifest.from_dict(
        base(
            description="the api",
            os=["linux", "darwin"],
            args=["--port", "8080"],
            stop_entrypoint="bin/stop",
            stop_args=["now"],
            env={"PORT": "8080", "_X1": ""},
            log_paths=["logs/app.log", "/var/log/api.log"],
            pid_strategy="spawn",
            health_check={"type": "http", "url": "http://127.0.0.1:8080/healthz", "retries": 2},
            restart={"policy": "on-failure", "max_restarts": 0, "backoff_max": 1},
            stop_signal="INT",
            stop_timeout=2,
            log={"max_bytes": 4096, "backups": 0},
        )
    )
    assert m.health_check == HealthCheck(
        type="http", url="http://127.0.0.1:8080/healthz", retries=2
    )
    assert m.restart == RestartPolicy(policy="on-failure", max_restarts=0, backoff_max=1.0)
    assert m.stop_signal == "SIGINT"
    assert m.log == LogRotation(max_bytes=4096, backups=0)
    assert isinstance(m.stop_timeout, float) and isinstance(m.restart.backoff_max, float)


def test_misspelt_field_is_named_with_a_suggestion() -> None:
    data = base()
    data["entrypont"] = data.pop("entrypoint")
    found = problems(data)
    assert found[0] == {
        "path": "$.entrypont",
        "message": "unknown field 'entrypont'; did you mean 'entrypoint'?",
        "suggestion": "entrypoint",
    }
    assert {
        "path": "$.entrypoint",
        "message": "entrypoint is required unless is_external is true",
    } in found


@pytest.mark.parametrize(
    ("data", "path", "suggestion"),
    [
        (base(restart={"max_restart": 3}), "$.restart.max_restart", "max_restarts"),
        (
            base(health_check={"type": "tcp", "port": 1, "intervall": 3}),
            "$.health_check.intervall",
            "interval",
        ),
        (base(log={"backup": 3}), "$.log.backup", "backups"),
        (base(stop_signl="SIGINT"), "$.stop_signl", "stop_signal"),
    ],
)
def test_nested_unknown_fields(data: dict[str, Any], path: str, suggestion: str) -> None:
    [problem] = problems(data)
    assert problem["path"] == path and problem["suggestion"] == suggestion
    assert f"did you mean '{suggestion}'?" in problem["message"]


def test_unknown_field_without_close_match_has_no_suggestion() -> None:
    [problem] = problems(base(zzzz=1))
    assert problem == {"path": "$.zzzz", "message": "unknown field 'zzzz'"}


def test_every_problem_is_collected_and_summarised() -> None:
    data = {
        "name": "Bad Name",
        "version": "latest",
        "os": ["linux", "solaris"],
        "env": {"BAD-NAME": "x", "OK": 1},
        "restart": {
            "policy": "sometimes",
            "max_restarts": -1,
            "backoff_initial": 5,
            "backoff_max": 1,
        },
        "stop_timeout": 0,
        "log": {"max_bytes": 100, "backups": 101},
    }
    with pytest.raises(ManifestError) as info:
        Manifest.from_dict(data)
    paths = {p["path"] for p in info.value.details}
    assert paths == {
        "$.name",
        "$.version",
        "$.os[1]",
        "$.env['BAD-NAME']",
        "$.env.OK",
        "$.restart.policy",
        "$.restart.max_restarts",
        "$.restart.backoff_max",
        "$.stop_timeout",
        "$.log.max_bytes",
        "$.log.backups",
        "$.entrypoint",
    }
    assert info.value.message.startswith("invalid service.json (12 problems): ")
    assert "@ $.restart.policy" in info.value.message
    assert isinstance(info.value, ValidationError)  # the master renders it as a 422


def test_missing_entrypoint_has_its_path() -> None:
    assert by_path({"name": "api", "version": "1"}) == {
        "$.entrypoint": "entrypoint is required unless is_external is true"
    }
    assert "$.entrypoint" in by_path({"name": "api", "version": "1", "entrypoint": None})


def test_required_name_and_version() -> None:
    found = by_path({"entrypoint": "x"})
    assert found == {
        "$.name": "required field is missing",
        "$.version": "required field is missing",
    }


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        (base(name=5), "$.name", "expected string, got integer"),
        (base(args="--x"), "$.args", "expected array, got string"),
        (base(args=["ok", 3]), "$.args[1]", "expected string, got integer"),
        (
            base(restart={"max_restarts": "5"}),
            "$.restart.max_restarts",
            "expected integer, got string",
        ),
        (
            base(restart={"max_restarts": 1.5}),
            "$.restart.max_restarts",
            "expected integer, got number",
        ),
        (base(is_external="yes"), "$.is_external", "expected boolean, got string"),
        (base(log={"backups": True}), "$.log.backups", "expected integer, got boolean"),
        (base(health_check=[]), "$.health_check", "expected an object or null, got array"),
        (base(restart=None), "$.restart", "expected object, got null"),
        (base(stop_timeout=float("nan")), "$.stop_timeout", "expected a finite number, got nan"),
        (base(env=[]), "$.env", "expected object, got array"),
    ],
)
def test_wrong_types_name_the_path(data: dict[str, Any], path: str, message: str) -> None:
    assert by_path(data) == {path: message}


def test_not_an_object() -> None:
    assert by_path([1]) == {"$": "expected object, got array"}


def test_integral_floats_are_integers() -> None:
    m = Manifest.from_dict(base(restart={"max_restarts": 3.0}, log={"backups": 2.0}))
    assert m.restart.max_restarts == 3 and type(m.restart.max_restarts) is int
    assert type(m.log.backups) is int


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("my-svc_2.x", True),
        ("0day", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("-a", False),
        ("Api", False),
        ("a b", False),
        ("", False),
        ("a/b", False),
    ],
)
def test_name_rule(name: str, ok: bool) -> None:
    if ok:
        assert Manifest.from_dict(base(name=name)).name == name
    else:
        assert "$.name" in by_path(base(name=name))


def test_version_rule_uses_is_valid_version() -> None:
    assert Manifest.from_dict(base(version="v2.0.0-rc.1+b7")).version == "v2.0.0-rc.1+b7"
    assert set(by_path(base(version="1" * 65))) == {"$.version"}
    assert "$.version" in by_path(base(version="1.0\n"))


def test_stop_signal_normalised_and_suggested() -> None:
    assert Manifest.from_dict(base(stop_signal="HUP")).stop_signal == "SIGHUP"
    assert Manifest.from_dict(base(stop_signal="SIGUSR1")).stop_signal == "SIGUSR1"
    [problem] = problems(base(stop_signal="sigterm"))
    assert problem["path"] == "$.stop_signal" and problem["suggestion"] == "SIGTERM"
    [problem] = problems(base(stop_signal="SIGTREM"))
    assert problem["suggestion"] == "SIGTERM"
    assert "$.stop_signal" in by_path(base(stop_signal="SIGNOPE"))


def test_enum_suggestion_for_restart_policy() -> None:
    [problem] = problems(base(restart={"policy": "on_failure"}))
    assert problem["suggestion"] == "on-failure"
    assert '"always", "on-failure", "never"' in problem["message"]


@pytest.mark.parametrize(
    ("check", "path"),
    [
        ({"type": "http"}, "$.health_check.url"),
        ({"type": "http", "url": None}, "$.health_check.url"),
        ({"type": "tcp"}, "$.health_check.port"),
        ({"type": "cmd"}, "$.health_check.command"),
        ({"type": "cmd", "command": []}, "$.health_check.command"),
        ({"type": "http", "url": "ftp://x"}, "$.health_check.url"),
        ({"type": "tcp", "port": 70000}, "$.health_check.port"),
        ({"type": "grpc"}, "$.health_check.type"),
        ({"url": "http://x"}, "$.health_check.type"),
        ({"type": "tcp", "port": 80, "timeout": 0}, "$.health_check.timeout"),
        ({"type": "tcp", "port": 80, "expected_status": 99}, "$.health_check.expected_status"),
    ],
)
def test_health_check_rules(check: dict[str, Any], path: str) -> None:
    assert path in by_path(base(health_check=check))


def test_health_check_kinds_accepted() -> None:
    for check in (
        {"type": "http", "url": "https://localhost/x"},
        {"type": "tcp", "port": 5432},
        {"type": "cmd", "command": ["./check.sh", "-q"]},
    ):
        assert Manifest.from_dict(base(health_check=check)).health_check is not None


def test_external_service_rules() -> None:
    m = Manifest.from_dict(
        {
            "name": "nginx",
            "version": "1",
            "is_external": True,
            "pid_strategy": "match",
            "process_name": "nginx: master",
        }
    )
    assert m.entrypoint is None and m.process_name == "nginx: master"
    assert by_path(
        {"name": "n", "version": "1", "is_external": True, "pid_strategy": "pid_file"}
    ) == {"$.pid_file": "pid_file is required when pid_strategy is 'pid_file'"}
    assert "$.pid_strategy" in by_path(base(pid_strategy="guess"))


def test_backoff_max_must_cover_backoff_initial() -> None:
    assert by_path(base(restart={"backoff_initial": 40})) == {
        "$.restart.backoff_max": "must be >= backoff_initial"
    }
    with pytest.raises(ManifestError):
        RestartPolicy(backoff_initial=2.0, backoff_max=1.0)


def test_duplicate_os_and_nul_bytes() -> None:
    assert "$.os[1]" in by_path(base(os=["linux", "linux"]))
    assert "$.args[0]" in by_path(base(args=["a\x00b"]))
    assert "$.env.A" in by_path(base(env={"A": "x\x00"}))


def test_invalid_json() -> None:
    with pytest.raises(ManifestError, match="invalid JSON") as info:
        Manifest.from_json(b'{"name": "api",')
    assert info.value.details[0]["path"] == "$"
    with pytest.raises(ManifestError, match="invalid JSON"):
        Manifest.from_json(b"\xff\xfe")


def test_from_json_accepts_text_and_bytes() -> None:
    text = json.dumps(base())
    assert (
        Manifest.from_json(text) == Manifest.from_json(text.encode()) == Manifest.from_dict(base())
    )


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ManifestError, match=r"\$\.name"):
        Manifest(name="Bad", version="1", entrypoint="x")
    with pytest.raises(ManifestError, match="url is required"):
        HealthCheck(type="http")
    with pytest.raises(ManifestError, match="expected a HealthCheck"):
        Manifest(name="a", version="1", entrypoint="x", health_check={"type": "tcp", "port": 1})  # type: ignore[arg-type]
    assert (
        Manifest(name="a", version="1", entrypoint="x", stop_signal="KILL").stop_signal == "SIGKILL"
    )


def test_to_dict_is_json_safe_and_complete() -> None:
    m = Manifest.from_dict(base(health_check={"type": "tcp", "port": 1}))
    data = json.loads(json.dumps(m.to_dict(), allow_nan=False))
    assert set(data) == set(json_schema()["properties"])
    assert data["health_check"]["port"] == 1 and data["restart"]["policy"] == "always"
    assert Manifest.from_dict(data) == m


# --- hypothesis round trip ----------------------------------------------------------------

_text = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12
)
_seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
_positive = st.floats(min_value=0.001, max_value=1e6, allow_nan=False, allow_infinity=False)
_opt = st.one_of(st.none(), _text.filter(bool))


@st.composite
def restart_policies(draw: st.DrawFn) -> RestartPolicy:
    low, high = sorted([draw(_seconds), draw(_seconds)])
    return RestartPolicy(
        policy=draw(st.sampled_from(["always", "on-failure", "never"])),
        max_restarts=draw(st.integers(0, 1000)),
        window_seconds=draw(_seconds),
        backoff_initial=low,
        backoff_max=high,
        start_seconds=draw(_seconds),
    )


health_checks = st.one_of(
    st.none(),
    st.builds(
        HealthCheck,
        type=st.just("http"),
        url=st.just("http://127.0.0.1:1/h"),
        expected_status=st.integers(100, 599),
        interval=_positive,
        timeout=_positive,
        retries=st.integers(1, 10),
        start_period=_seconds,
    ),
    st.builds(HealthCheck, type=st.just("tcp"), port=st.integers(1, 65535)),
    st.builds(HealthCheck, type=st.just("cmd"), command=st.lists(_text, min_size=1, max_size=3)),
)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    external = draw(st.booleans())
    strategy = draw(st.sampled_from([None, "spawn", "pid_file", "match"]))
    return Manifest(
        name=draw(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)),
        version=draw(st.from_regex(r"v?[0-9][0-9A-Za-z.+_-]{0,15}", fullmatch=True)),
        description=draw(_text),
        os=draw(st.lists(st.sampled_from(["linux", "darwin", "windows"]), unique=True)),
        entrypoint=draw(_opt) if external else draw(_text.filter(bool)),
        args=draw(st.lists(_text, max_size=3)),
        stop_entrypoint=draw(_opt),
        stop_args=draw(st.lists(_text, max_size=2)),
        env=draw(
            st.dictionaries(
                st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), _text, max_size=3
            )
        ),
        log_paths=draw(st.lists(_text.filter(bool), max_size=2)),
        is_external=external,
        external_work_dir=draw(_opt),
        pid_strategy=strategy,
        process_name="proc" if strategy == "match" else draw(_opt),
        pid_file="run.pid" if strategy == "pid_file" else draw(_opt),
        health_check=draw(health_checks),
        restart=draw(restart_policies()),
        stop_signal=draw(st.sampled_from(["SIGTERM", "INT", "SIGQUIT", "HUP"])),
        stop_timeout=draw(_positive),
        log=LogRotation(
            max_bytes=draw(st.integers(4096, 2**40)), backups=draw(st.integers(0, 100))
        ),
    )


@settings(max_examples=60, deadline=None)
@given(manifests())
def test_round_trip(m: Manifest) -> None:
    assert Manifest.from_dict(m.to_dict()) == m
    assert Manifest.from_json(json.dumps(m.to_dict(), allow_nan=False)) == m


# --- the JSON Schema ----------------------------------------------------------------------


def _objects(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "properties" in node and node.get("type") == "object":
            found.append(node)
        for value in node.values():
            found.extend(_objects(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_objects(value))
    return found


def test_schema_is_closed_everywhere() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    objects = _objects(schema)
    assert len(objects) == 5  # Manifest, HealthCheck, CheckRestart, RestartPolicy, LogRotation
    assert all(o["additionalProperties"] is False for o in objects)
    assert schema["properties"]["env"]["additionalProperties"] == {
        "type": "string",
        "pattern": "^[^\\u0000]*$",
    }


def test_schema_defaults_match_the_models() -> None:
    schema = json_schema()
    parsed = Manifest.from_dict(base()).to_dict()
    for key, prop in schema["properties"].items():
        if "default" in prop and key not in base():
            assert prop["default"] == parsed[key], key
    assert schema["required"] == ["name", "version"]


def test_json_schema_returns_a_copy() -> None:
    json_schema()["properties"].clear()
    assert "name" in json_schema()["properties"]


@pytest.mark.parametrize(
    "where", ["docs/service.schema.json", "gdos_sdk/schemas/service.schema.json"]
)
def test_shipped_schema_matches_the_code(where: str) -> None:
    # Regenerate with: python -m gdos_pack schema > docs/service.schema.json (and the copy)
    assert (ROOT / where).read_text(encoding="utf-8") == schema_text()
