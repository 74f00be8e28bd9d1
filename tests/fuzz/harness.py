"""Run schemathesis against a seeded master: the config it gets, how it is called, what counts.

The OpenAPI document the master serves is the test plan: every operation in it is
fuzzed, as one role at a time, with the seeded ids in the path and query parameters.
Left out: the agent operations (``GET /agent/packages/{sha256}``: node credentials
only, the worker's side of the API) and the WebSocket routes, which are not in the
document (``/agent/ws``, ``/live``, ``/terminal/{node_id}``, ``/agent/terminal/{id}``).

A run fails on any 5xx, any status the document does not list for the operation, a
body that does not match the documented schema, a wrong content type or a missing
documented header (:data:`CHECKS`); and, from schemathesis' JSON report, when valid
looking requests are refused more than the document explains (:meth:`Result.problems`).

The run goes through schemathesis' own command line (``st run``) with a generated
``schemathesis.toml``; both stay in the output folder with the reports, so a run can be
replayed by hand (``st --config-file schemathesis-admin.toml run openapi-admin.json --url ...``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import httpx

from .world import World

__all__ = [
    "BOUNDED",
    "CHECKS",
    "FULL",
    "PROFILES",
    "VALIDATION_EXEMPT",
    "Profile",
    "Result",
    "parameters_for",
    "run",
    "write_config",
]

ROOT = Path(__file__).resolve().parents[2]

#: Response checks: no server error, and the answer is what the document says.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)

#: Tags not fuzzed: the worker's side of the API (node credentials only).
EXCLUDED_TAGS = ("agent",)

#: Operations whose generated bodies are mostly refused for reasons no schema states, so
#: schemathesis' "validation mismatch" warning for them is no sign of a missing limit.
#: Every operation with a raw (non-JSON) body is exempt as well: random bytes are no archive.
VALIDATION_EXEMPT = {
    "adoption_candidates": "which fields a strategy needs; cmdline must compile as a regex",
    "create_module": "package@version must name an uploaded package",
    "create_rollout": "the version must be uploaded; deadlines above min_healthy_time",
    "rollback_module": "the version must be uploaded and not the current one",
    "create_silence": "ends_at must be after starts_at (default: now)",
    "create_receiver": "the webhook destination policy (loopback, link-local, metadata ...)",
    "patch_receiver": "the webhook destination policy, as for create",
    "change_password": "current_password must be the caller's password",
    "query_range": "the metric must be one of its targets' kind (rss is an instance metric)",
}

#: Of the requests schemathesis generates as valid, at most this share may be refused (422).
MAX_REJECTED = 0.15


@attrs.frozen
class Profile:
    """How hard to fuzz."""

    name: str
    max_examples: int  # per operation and phase
    phases: tuple[str, ...]
    seed: int = 20240611
    max_steps: int = 10  # stateful phase: steps per scenario
    stateful_examples: int = 0  # stateful scenarios (0: as max_examples)
    checks: tuple[str, ...] = CHECKS
    request_timeout: float = 60.0


#: Part of the test suite: a fixed seed, a few examples per operation, no stateful phase.
BOUNDED = Profile("bounded", max_examples=3, phases=("examples", "fuzzing"))
#: ``nox -s fuzz``: every phase, many examples (tens of minutes on two cores).
FULL = Profile(
    "full",
    max_examples=100,
    phases=("examples", "coverage", "fuzzing", "stateful"),
    max_steps=12,
    stateful_examples=300,
    checks=(
        *CHECKS,
        "negative_data_rejection",  # what the document calls invalid is refused (4xx)
        "ignored_auth",  # no or a broken credential never gets through
        "use_after_free",  # what a DELETE removed is gone (along the links)
        "ensure_resource_availability",  # what a create made can be fetched (links)
        "unsupported_method",  # an undocumented method is a 405
    ),
)
PROFILES = {p.name: p for p in (BOUNDED, FULL)}


@attrs.frozen
class Result:
    """One role's run: exit code, console output and the parsed JSON report."""

    role: str
    returncode: int
    output: str
    report: dict[str, Any]
    exempt: frozenset[str]  # operation labels ("POST /api/v1/packages") exempt as above

    def rejected_share(self) -> float:
        """Refused share of the requests generated as valid (fuzzing phase)."""
        accepted = rejected = 0
        for rates in self.report.get("valid_rates", {}).values():
            accepted += rates.get("fuzzing", {}).get("accepted", 0)
            rejected += rates.get("fuzzing", {}).get("rejected", 0)
        return rejected / max(1, accepted + rejected)

    def problems(self) -> list[str]:
        """What makes this run fail, in words (empty: it passed)."""
        found: list[str] = []
        if self.returncode != 0 or self.report.get("failures") or self.report.get("errors"):
            found.append(f"schemathesis exited {self.returncode} with failures or errors")
        mismatched = set(self.report.get("warnings", {}).get("validation_mismatch", []))
        unexplained = sorted(mismatched - self.exempt)
        if unexplained:
            found.append(
                "valid-looking requests mostly refused (a limit the document does not show):"
                f" {', '.join(unexplained)}"
            )
        if self.role == "admin" and self.rejected_share() > MAX_REJECTED:
            found.append(
                f"{self.rejected_share():.0%} of the valid-looking requests were refused"
                f" (at most {MAX_REJECTED:.0%} allowed)"
            )
        return found


# Path parameter name -> the World id that fills it; DELETE gets the "_doomed" twin.
_PATH_IDS = {
    "node_id": "node",
    "system_id": "system",
    "module_id": "module",
    "instance_id": "instance",
    "user_id": "user",
    "token_id": "token",
    "batch_id": "batch",
    "rollout_id": "rollout",
    "run_id": "command",
    "session_id": "terminal",
    "rule_id": "rule",
    "silence_id": "silence",
    "receiver_id": "receiver",
    "version": "version",
    "sha256": "sha256",
}
# A fuzzed PATCH may point the shared receiver anywhere; the tested one stays as seeded.
_OPERATION_IDS = {("test_receiver", "receiver_id"): "receiver_test"}


def _path_id(world: World, role: str, op: dict[str, Any], method: str, name: str) -> str | None:
    key = _OPERATION_IDS.get((op["operationId"], name))
    if key is None and name == "name":
        key = "backup" if "backups" in op.get("tags", ()) else "package"
    if key is None:
        key = _PATH_IDS.get(name)
    if key is None:
        return None
    candidates = [key]
    if method == "delete":  # each role destroys its own copy
        candidates[:0] = [f"{key}_doomed_{role}", f"{key}_doomed"]
    for candidate in candidates:
        if candidate in world.ids:
            return world.ids[candidate]
    return None


def parameters_for(world: World, role: str, op: dict[str, Any], method: str) -> dict[str, str]:
    """The fixed parameters of one operation: seeded ids in its path, target and file."""
    fixed: dict[str, str] = {}
    for param in op.get("parameters", []):
        name, where = param["name"], param["in"]
        value: str | None = None
        if where == "path":
            value = _path_id(world, role, op, method, name)
        elif where == "query" and name == "target":
            value = f"node:{world.ids['node']}"
        elif where == "query" and name == "file":
            value = world.ids["log_file"]
        if value is not None:
            fixed[f"{where}.{name}"] = value
    return fixed


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def write_config(
    world: World, role: str, profile: Profile, document: dict[str, Any], path: Path
) -> Path:
    """A schemathesis.toml for one role's run."""
    lines = [
        f"seed = {profile.seed}",
        "workers = 1",
        'hooks = "tests.fuzz.st_hooks"',
        f"request-timeout = {profile.request_timeout}",
        f"headers = {_toml({'Authorization': f'Bearer {world.tokens[role]}'})}",
        "",
        "[generation]",
        f"max-examples = {profile.max_examples}",
        "deterministic = true",
        'database = "none"',
        "",
        "[checks]",
        "enabled = false",
        *(f"{check}.enabled = true" for check in profile.checks),
        "",
        "[phases]",
        *(
            f"{phase}.enabled = {_toml(phase in profile.phases)}"
            for phase in ("examples", "coverage", "fuzzing", "stateful")
        ),
        f"stateful.max-steps = {profile.max_steps}",
        *(
            [f"stateful.generation.max-examples = {profile.stateful_examples}"]
            if profile.stateful_examples
            else []
        ),
        # Only the document's own links: an inferred one could feed a real node id into
        # a fuzzed fleet command.
        "stateful.inference.algorithms = []",
        "",
    ]
    for tag in EXCLUDED_TAGS:
        lines += ["[[operations]]", f"include-tag = {_toml(tag)}", "enabled = false", ""]
    for ops in document["paths"].values():
        for method, op in ops.items():
            fixed = parameters_for(world, role, op, method)
            if fixed:
                lines += [
                    "[[operations]]",
                    f"include-operation-id = {_toml(op['operationId'])}",
                    f"parameters = {_toml(fixed)}",
                    "",
                ]
    path.write_text("\n".join(lines))
    return path


def _exempt(document: dict[str, Any]) -> frozenset[str]:
    labels = set()
    for route, ops in document["paths"].items():
        for method, op in ops.items():
            content = op.get("requestBody", {}).get("content", {})
            raw = bool(content) and "application/json" not in content
            if raw or op["operationId"] in VALIDATION_EXEMPT:
                labels.add(f"{method.upper()} {route}")
    return frozenset(labels)


def run(world: World, role: str, profile: Profile, out: Path) -> Result:
    """One ``st run`` as ``role``; its config, output and reports stay under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    document = httpx.get(
        world.url + "/api/v1/openapi.json",
        headers={"Authorization": f"Bearer {world.tokens[role]}"},
        timeout=30,
    ).json()
    schema = out / f"openapi-{role}.json"
    schema.write_text(json.dumps(document))
    config = write_config(world, role, profile, document, out / f"schemathesis-{role}.toml")
    report = out / f"report-{role}.json"
    argv = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        str(schema),
        "--url",
        world.url,
        "--report",
        "json,junit",
        "--report-json-path",
        str(report),
        "--report-junit-path",
        str(out / f"junit-{role}.xml"),
    ]
    log = out / f"output-{role}.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    with log.open("w") as sink:
        done = subprocess.run(
            argv, stdout=sink, stderr=subprocess.STDOUT, check=False, cwd=out, env=env
        )
    try:
        parsed = json.loads(report.read_text())
    except (OSError, ValueError):  # no report: the run died or was stopped
        parsed = {}
    return Result(
        role=role,
        returncode=done.returncode,
        output=log.read_text(),
        report=parsed,
        exempt=_exempt(document),
    )
