"""The ``service.json`` manifest at the root of every package.

The JSON Schema is the single source of truth: each field's schema lives in
its ``attrs`` metadata, :func:`json_schema` assembles the document shipped in
``docs/service.schema.json``, and :meth:`Manifest.from_dict` validates input
against that same document. Docs, editors and the code therefore cannot
disagree. Only the one rule a JSON Schema cannot express
(``backoff_max >= backoff_initial``) is written in Python.

Every problem is collected, not just the first: a bad manifest raises one
:class:`~gdos_sdk.errors.ManifestError` whose ``details`` is a list of
``{"path": "$.restart.max_restarts", "message": ..., "suggestion"?: ...}``.

Pure: no I/O here; reading files is the caller's business.

Example::

    m = Manifest.from_json('{"name": "api", "version": "1.0.0", "entrypoint": "bin/api"}')
    m.restart.policy      # "always"
    Manifest.from_dict(m.to_dict()) == m   # True
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import attrs

from gdos_sdk.codec import suggest
from gdos_sdk.errors import ManifestError
from gdos_sdk.versions import MAX_VERSION_LENGTH, VERSION_PATTERN

__all__ = [
    "MANIFEST_FILENAME",
    "SCHEMA_ID",
    "CheckRestart",
    "HealthCheck",
    "LogRotation",
    "Manifest",
    "RestartPolicy",
    "json_schema",
    "schema_text",
]

#: Where the manifest lives inside a package.
MANIFEST_FILENAME = "service.json"

#: The ``$id`` of the published schema.
SCHEMA_ID = "https://gdos.dev/schemas/service.schema.json"

_M = TypeVar("_M")

# Signals a stop may use, as POSIX names them (plus the common Linux extras).
# fmt: off
_SIGNALS = [
    "ABRT", "ALRM", "BUS", "CHLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "KILL", "PIPE",
    "POLL", "PROF", "PWR", "QUIT", "SEGV", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN",
    "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
]
# fmt: on
_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_NO_NUL_PATTERN = r"^[^\u0000]*$"
_URL_PATTERN = r"^https?://[^\s]+$"
# A POSIX account or group: a name (www-data, svc_api) or a numeric id.
_ACCOUNT_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$"

# Human wording for the patterns above; a raw regex is no help in an error.
_PATTERN_HINTS = {
    _NAME_PATTERN: "must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a"
    " lowercase letter or digit",
    VERSION_PATTERN: "must start with a digit (or 'v' and a digit) and use only"
    " 0-9 A-Z a-z . + _ -",
    _ENV_NAME_PATTERN: "is not a valid environment variable name (letters, digits and '_',"
    " not starting with a digit)",
    _NO_NUL_PATTERN: "must not contain NUL characters",
    _URL_PATTERN: "must be an http:// or https:// URL",
    _ACCOUNT_PATTERN: "is not an account name (1-64 letters, digits, '.', '_' or '-',"
    " not starting with '.' or '-') or a numeric id",
}

_STR: dict[str, Any] = {"type": "string", "pattern": _NO_NUL_PATTERN}
_OPT_STR: dict[str, Any] = {"type": ["string", "null"], "minLength": 1, "pattern": _NO_NUL_PATTERN}
_STR_LIST: dict[str, Any] = {"type": "array", "items": _STR}


def _f(schema: dict[str, Any], doc: str) -> dict[str, Any]:
    """Field metadata: its JSON Schema fragment and its description."""
    return {"schema": {**schema, "description": doc}}


def _model(cls_name: str, doc: str, *, nullable: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"$ref": f"#/$defs/{cls_name}"}
    schema = {"anyOf": [ref, {"type": "null"}]} if nullable else ref
    return {"schema": {**schema, "description": doc}, "model": cls_name}


def _fields(cls: Any) -> tuple[attrs.Attribute[Any], ...]:
    # attrs' stubs only accept AttrsInstance; our _Model base is not one statically.
    return tuple(attrs.fields(cls))


def _normalise_signal(value: Any) -> Any:
    """``TERM`` -> ``SIGTERM``; anything else is left for validation to judge."""
    if isinstance(value, str) and value in _SIGNALS:
        return "SIG" + value
    return value


class _Model:
    """Shared behaviour: validate on construction, turn into JSON-safe data."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe data that :meth:`Manifest.from_dict` accepts back."""
        return {f.name: _to_json(getattr(self, f.name)) for f in _fields(type(self))}

    def __attrs_post_init__(self) -> None:
        # Direct construction in Python gets the same checks as JSON input.
        problems = _check(type(self), self.to_dict(), "$")
        for f in _fields(type(self)):
            model = f.metadata.get("model")
            value = getattr(self, f.name)
            if model and isinstance(value, dict):  # the schema accepts a dict; the class not
                problems.append(
                    {"path": f"$.{f.name}", "message": f"expected a {model}, got {value!r}"}
                )
        if problems:
            raise _error(problems, what=type(self).__name__)


@attrs.frozen
class CheckRestart(_Model):
    """Restart an instance whose health check keeps failing (Nomad's ``check_restart``).

    Parameters:
        limit: consecutive failed checks, counted once ``grace`` has passed since the
            start, that trigger a restart (subject to the restart policy and budget).
        grace: seconds after a start or restart before failures count toward ``limit``.

    Example::

        CheckRestart(limit=3, grace=10)
    """

    limit: int = attrs.field(
        default=3,
        metadata=_f(
            {"type": "integer", "minimum": 1},
            "Consecutive failed checks (after grace) that trigger a restart.",
        ),
    )
    grace: float = attrs.field(
        default=1.0,
        metadata=_f(
            {"type": "number", "minimum": 0},
            "Seconds after a start before failures count toward limit.",
        ),
    )


@attrs.frozen
class HealthCheck(_Model):
    """How the worker decides an instance is healthy.

    Parameters:
        type: ``http`` (GET ``url``, expect ``expected_status``), ``tcp`` (connect to
            ``port`` on localhost) or ``cmd`` (run ``command``, expect exit 0).

    Example::

        HealthCheck(type="http", url="http://127.0.0.1:8080/healthz")
    """

    type: Literal["http", "tcp", "cmd"] = attrs.field(
        metadata=_f({"enum": ["http", "tcp", "cmd"]}, "Kind of check.")
    )
    url: str | None = attrs.field(
        default=None,
        metadata=_f(
            {"type": ["string", "null"], "pattern": _URL_PATTERN},
            "URL to GET; required for type http.",
        ),
    )
    port: int | None = attrs.field(
        default=None,
        metadata=_f(
            {"type": ["integer", "null"], "minimum": 1, "maximum": 65535},
            "Local TCP port to connect to; required for type tcp.",
        ),
    )
    command: list[str] | None = attrs.field(
        default=None,
        metadata=_f(
            {"type": ["array", "null"], "minItems": 1, "items": _STR},
            "Program and arguments, run in the package root; exit 0 means healthy."
            " Required for type cmd.",
        ),
    )
    expected_status: int = attrs.field(
        default=200,
        metadata=_f({"type": "integer", "minimum": 100, "maximum": 599}, "HTTP status to expect."),
    )
    interval: float = attrs.field(
        default=10.0,
        metadata=_f({"type": "number", "exclusiveMinimum": 0}, "Seconds between checks."),
    )
    timeout: float = attrs.field(
        default=5.0,
        metadata=_f({"type": "number", "exclusiveMinimum": 0}, "Seconds before a check fails."),
    )
    retries: int = attrs.field(
        default=3,
        metadata=_f(
            {"type": "integer", "minimum": 1},
            "Consecutive failures before the instance is unhealthy.",
        ),
    )
    start_period: float = attrs.field(
        default=0.0,
        metadata=_f(
            {"type": "number", "minimum": 0},
            "Seconds after start during which failures do not count.",
        ),
    )
    check_restart: CheckRestart | None = attrs.field(
        default=None,
        metadata=_model(
            "CheckRestart",
            "Restart the instance when the check keeps failing; null: only report health.",
            nullable=True,
        ),
    )

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "$") -> HealthCheck:
        """Validate a ``health_check`` object (a module override, say); collect every problem.

        Parameters:
            data: the decoded JSON object.
            path: where ``data`` sits in the caller's document, for error paths.

        Raises:
            ManifestError: ``details`` name each field (``$.health_check.port``).

        Example::

            HealthCheck.from_dict({"type": "tcp", "port": 5432}, path="$.health_check")
        """
        problems = _check(cls, data, path)
        if problems:
            raise _error(problems, what="health_check")
        return _build(cls, data)


@attrs.frozen
class RestartPolicy(_Model):
    """When and how fast the worker restarts an instance that exited.

    A start only counts as successful after ``start_seconds`` of uptime; more
    than ``max_restarts`` restarts within ``window_seconds`` mark the instance
    ``failed``. A deliberate stop is never restarted.

    Example::

        RestartPolicy(policy="on-failure", max_restarts=3)
    """

    policy: Literal["always", "on-failure", "never"] = attrs.field(
        default="always",
        metadata=_f({"enum": ["always", "on-failure", "never"]}, "When to restart."),
    )
    max_restarts: int = attrs.field(
        default=5,
        metadata=_f({"type": "integer", "minimum": 0}, "Restart budget per window."),
    )
    window_seconds: float = attrs.field(
        default=60.0,
        metadata=_f({"type": "number", "minimum": 0}, "Length of the budget window."),
    )
    backoff_initial: float = attrs.field(
        default=1.0,
        metadata=_f({"type": "number", "minimum": 0}, "First delay before a restart (s)."),
    )
    backoff_max: float = attrs.field(
        default=30.0,
        metadata=_f(
            {"type": "number", "minimum": 0},
            "Cap of the doubling delay (s); must be >= backoff_initial.",
        ),
    )
    start_seconds: float = attrs.field(
        default=1.0,
        metadata=_f(
            {"type": "number", "minimum": 0},
            "Uptime after which a start counts as successful (s).",
        ),
    )


@attrs.frozen
class LogRotation(_Model):
    """Size-based rotation of the console log files.

    Example::

        LogRotation(max_bytes=50 * 1024 * 1024, backups=3)
    """

    max_bytes: int = attrs.field(
        default=10 * 1024 * 1024,
        metadata=_f({"type": "integer", "minimum": 4096}, "Rotate when a file reaches this."),
    )
    backups: int = attrs.field(
        default=5,
        metadata=_f({"type": "integer", "minimum": 0, "maximum": 100}, "Rotated files to keep."),
    )


@attrs.frozen
class Manifest(_Model):
    """A package's ``service.json``: what to run and how to keep it running.

    Build one with :meth:`from_dict` or :meth:`from_json` (they collect every
    problem); direct construction validates too. See ``docs/service-json.md``.

    Example::

        m = Manifest.from_dict({"name": "api", "version": "1.0.0", "entrypoint": "bin/api"})
        m.stop_signal  # "SIGTERM"
    """

    name: str = attrs.field(
        metadata=_f({"type": "string", "pattern": _NAME_PATTERN}, "Package name.")
    )
    version: str = attrs.field(
        metadata=_f(
            {"type": "string", "maxLength": MAX_VERSION_LENGTH, "pattern": VERSION_PATTERN},
            "Package version; ordered by version semantics (1.2.10 > 1.2.9).",
        )
    )
    description: str = attrs.field(default="", metadata=_f(_STR, "Free text."))
    os: list[str] = attrs.field(
        factory=list,
        metadata=_f(
            {
                "type": "array",
                "uniqueItems": True,
                "items": {"enum": ["linux", "darwin", "windows"]},
            },
            "Operating systems the package runs on; empty means any.",
        ),
    )
    entrypoint: str | None = attrs.field(
        default=None,
        metadata=_f(
            _OPT_STR,
            "Program to start: a path relative to the package root if that file exists,"
            " else a command looked up on PATH. Required unless is_external is true.",
        ),
    )
    args: list[str] = attrs.field(factory=list, metadata=_f(_STR_LIST, "Arguments."))
    stop_entrypoint: str | None = attrs.field(
        default=None,
        metadata=_f(_OPT_STR, "Optional program run to stop the service before signalling."),
    )
    stop_args: list[str] = attrs.field(
        factory=list, metadata=_f(_STR_LIST, "Arguments of stop_entrypoint.")
    )
    env: dict[str, str] = attrs.field(
        factory=dict,
        metadata=_f(
            {
                "type": "object",
                "propertyNames": {"pattern": _ENV_NAME_PATTERN},
                "additionalProperties": _STR,
            },
            "Environment variables added to the worker's environment.",
        ),
    )
    log_paths: list[str] = attrs.field(
        factory=list,
        metadata=_f(
            {"type": "array", "items": {**_STR, "minLength": 1}},
            "Extra log files the log viewer may show (relative to the package root, or absolute).",
        ),
    )
    is_external: bool = attrs.field(
        default=False,
        metadata=_f({"type": "boolean"}, "Adopt a process GDOS did not start."),
    )
    external_work_dir: str | None = attrs.field(
        default=None, metadata=_f(_OPT_STR, "Working directory of an external process.")
    )
    pid_strategy: Literal["spawn", "pid_file", "match"] | None = attrs.field(
        default=None,
        metadata=_f(
            {"enum": ["spawn", "pid_file", "match", None]},
            "How to find the process: the one spawned, a pid file, or by process name.",
        ),
    )
    process_name: str | None = attrs.field(
        default=None,
        metadata=_f(_OPT_STR, "Process name or command-line pattern (pid_strategy match)."),
    )
    pid_file: str | None = attrs.field(
        default=None, metadata=_f(_OPT_STR, "Pid file path (pid_strategy pid_file).")
    )
    user: str | None = attrs.field(
        default=None,
        metadata=_f(
            {"type": ["string", "null"], "pattern": _ACCOUNT_PATTERN},
            "Account the service (and its stop program and cmd health check) runs as, when"
            " the worker runs as root; default the worker's runtime.default_user. A module"
            " may override it. Only an admin may deploy a package that names an account.",
        ),
    )
    group: str | None = attrs.field(
        default=None,
        metadata=_f(
            {"type": ["string", "null"], "pattern": _ACCOUNT_PATTERN},
            "Primary group of the service; default the user's own group. Admin only, like user.",
        ),
    )
    health_check: HealthCheck | None = attrs.field(
        default=None, metadata=_model("HealthCheck", "Optional health check.", nullable=True)
    )
    restart: RestartPolicy = attrs.field(
        factory=RestartPolicy, metadata=_model("RestartPolicy", "Restart policy.")
    )
    stop_signal: str = attrs.field(
        default="SIGTERM",
        converter=_normalise_signal,
        metadata=_f(
            {"enum": [f"SIG{s}" for s in _SIGNALS] + _SIGNALS},
            "Signal sent to the process group to stop it; SIG prefix optional.",
        ),
    )
    stop_timeout: float = attrs.field(
        default=10.0,
        metadata=_f(
            {"type": "number", "exclusiveMinimum": 0},
            "Seconds to wait after stop_signal before SIGKILL.",
        ),
    )
    log: LogRotation = attrs.field(
        factory=LogRotation, metadata=_model("LogRotation", "Console log rotation.")
    )

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Validate parsed JSON and build a manifest; raise one error listing every problem.

        Parameters:
            data: the decoded JSON object.

        Raises:
            ManifestError: ``details`` holds ``{"path", "message", "suggestion"?}`` items.

        Example::

            Manifest.from_dict({"name": "x", "version": "1", "entrypoint": "run.sh"})
        """
        problems = _check(cls, data, "$")
        if problems:
            raise _error(problems)
        return _build(cls, data)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse ``service.json`` text (or bytes, UTF-8) and validate it.

        Example::

            Manifest.from_json(pathlib.Path("service.json").read_bytes())
        """
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ManifestError(
                f"invalid service.json: invalid JSON: {exc}",
                details=[{"path": "$", "message": f"invalid JSON: {exc}"}],
            ) from exc
        return cls.from_dict(data)

    @staticmethod
    def json_schema() -> dict[str, Any]:
        """The JSON Schema (draft 2020-12) of ``service.json``; see :func:`json_schema`."""
        return json_schema()


_MODELS: dict[str, type[_Model]] = {
    c.__name__: c for c in (CheckRestart, HealthCheck, RestartPolicy, LogRotation, Manifest)
}

# Cross-field rules, expressed in the schema itself so editors enforce them too.
# A branch's "description" becomes the error message when the branch fails.
_CONDITIONS: dict[str, list[dict[str, Any]]] = {
    "Manifest": [
        {
            "if": {"properties": {"is_external": {"const": True}}, "required": ["is_external"]},
            "else": {
                "description": "entrypoint is required unless is_external is true",
                "required": ["entrypoint"],
                "properties": {"entrypoint": {"type": "string"}},
            },
        },
        {
            "if": {
                "properties": {"pid_strategy": {"const": "pid_file"}},
                "required": ["pid_strategy"],
            },
            "then": {
                "description": "pid_file is required when pid_strategy is 'pid_file'",
                "required": ["pid_file"],
                "properties": {"pid_file": {"type": "string"}},
            },
        },
        {
            "if": {
                "properties": {"pid_strategy": {"const": "match"}},
                "required": ["pid_strategy"],
            },
            "then": {
                "description": "process_name is required when pid_strategy is 'match'",
                "required": ["process_name"],
                "properties": {"process_name": {"type": "string"}},
            },
        },
    ],
    "HealthCheck": [
        {
            "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
            "then": {
                "description": f"{field} is required when type is '{kind}'",
                "required": [field],
                "properties": {field: {"type": json_type}},
            },
        }
        for kind, field, json_type in (
            ("http", "url", "string"),
            ("tcp", "port", "integer"),
            ("cmd", "command", "array"),
        )
    ],
}


def _default_json(field: attrs.Attribute[Any]) -> Any:
    default = field.default
    factory: Any = getattr(default, "factory", None)
    if isinstance(default, attrs.Factory) and factory is not None:  # type: ignore[arg-type]
        if isinstance(factory, type) and issubclass(factory, _Model):
            # Read the nested defaults from the fields: constructing the model would
            # validate it against this very schema, which is still being built.
            fields = _fields(factory)
            return {f.name: _default_json(f) for f in fields if f.default is not attrs.NOTHING}
        default = factory()
    return _to_json(default)


def _object_schema(cls: type[_Model]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in _fields(cls):
        prop = dict(f.metadata["schema"])
        if f.default is attrs.NOTHING:
            required.append(f.name)
        else:
            prop["default"] = _default_json(f)
        props[f.name] = prop
    schema: dict[str, Any] = {
        "title": cls.__name__,
        "description": (cls.__doc__ or "").strip().splitlines()[0].replace("``", ""),
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
    if cls.__name__ in _CONDITIONS:
        schema["allOf"] = _CONDITIONS[cls.__name__]
    return schema


@functools.cache
def _schema() -> dict[str, Any]:
    root: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
    }
    root.update(_object_schema(Manifest))
    root["title"] = "GDOS service.json"
    root["$defs"] = {n: _object_schema(c) for n, c in _MODELS.items() if c is not Manifest}
    return root


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``service.json``, generated from the models.

    Every object has ``additionalProperties: false``; ``env`` maps names
    matching ``propertyNames`` to strings. A fresh copy is returned each call.

    Example::

        json_schema()["properties"]["restart"]  # {"$ref": "#/$defs/RestartPolicy", ...}
    """
    return copy.deepcopy(_schema())


def schema_text() -> str:
    """:func:`json_schema` as the exact text of ``docs/service.schema.json``.

    Example::

        pathlib.Path("docs/service.schema.json").write_text(schema_text())
    """
    return json.dumps(_schema(), indent=2, ensure_ascii=False) + "\n"


# --- validation ---------------------------------------------------------------------------


def _to_json(value: Any) -> Any:
    if isinstance(value, _Model):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def _error(problems: list[dict[str, Any]], *, what: str = "service.json") -> ManifestError:
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    summary = "; ".join(f"{p['message']} @ {p['path']}" for p in problems)
    return ManifestError(f"invalid {what} ({count}): {summary}", details=problems)


def _check(cls: type[_Model], data: Any, path: str) -> list[dict[str, Any]]:
    """Every problem of ``data`` as ``cls``, schema rules first, then Python-only rules."""
    problems: list[dict[str, Any]] = []
    root = _schema()
    schema = root if cls is Manifest else root["$defs"][cls.__name__]
    _validate(data, schema, path, problems)
    restart = data.get("restart") if isinstance(data, dict) and cls is Manifest else data
    if cls in (Manifest, RestartPolicy) and isinstance(restart, dict):
        where = f"{path}.restart" if cls is Manifest else path
        low, high = restart.get("backoff_initial", 1.0), restart.get("backoff_max", 30.0)
        if _is_number(low) and _is_number(high) and high < low:
            problems.append(
                {"path": f"{where}.backoff_max", "message": "must be >= backoff_initial"}
            )
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)


def _json_type(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # nan / inf: not JSON, so name them plainly
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    # JSON Schema: 5.0 is an integer; NaN and infinities are not JSON numbers.
    "integer": lambda v: _is_number(v) and math.isfinite(v) and float(v).is_integer(),
    "number": lambda v: _is_number(v) and math.isfinite(v),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


@functools.cache
def _regex(pattern: str) -> re.Pattern[str]:
    # ECMA-262 "$" only matches at the very end; Python's also before a final "\n".
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else f"{path}[{key!r}]"


def _add(problems: list[dict[str, Any]], path: str, message: str, hint: str | None = None) -> None:
    problem: dict[str, Any] = {"path": path, "message": message}
    if hint is not None:
        problem["message"] += f"; did you mean {hint!r}?"
        problem["suggestion"] = hint
    problems.append(problem)


def _validate(value: Any, schema: Mapping[str, Any], path: str, out: list[dict[str, Any]]) -> None:
    """Append the problems of ``value`` against ``schema`` to ``out``.

    Implements exactly the keywords the generated schema uses.
    """
    if "$ref" in schema:
        schema = _schema()["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:
        # Pick the branch whose type fits, so errors come from the branch meant.
        for branch in schema["anyOf"]:
            target = (
                _schema()["$defs"][branch["$ref"].rsplit("/", 1)[1]] if "$ref" in branch else branch
            )
            if _TYPE_CHECKS[target["type"]](value):
                _validate(value, branch, path, out)
                return
        wanted = " or ".join("an object" if "$ref" in b else b["type"] for b in schema["anyOf"])
        out.append({"path": path, "message": f"expected {wanted}, got {_json_type(value)}"})
        return
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_TYPE_CHECKS[t](value) for t in names):
            wanted = " or ".join("a finite number" if t == "number" else t for t in names)
            out.append({"path": path, "message": f"expected {wanted}, got {_json_type(value)}"})
            return
    if "const" in schema and not (
        value == schema["const"] and type(value) is type(schema["const"])
    ):
        out.append({"path": path, "message": f"must be {schema['const']!r}"})
    if "enum" in schema and not any(value == e and type(value) is type(e) for e in schema["enum"]):
        choices = [e for e in schema["enum"] if isinstance(e, str)]
        hint = None
        if isinstance(value, str):
            folded = [c for c in choices if c.lower() == value.lower()]
            hint = folded[0] if folded else suggest(value, choices)
        if len(schema["enum"]) <= 8:
            shown = ", ".join(json.dumps(e) for e in schema["enum"])
            _add(out, path, f"must be one of {shown}; got {_show(value)}", hint)
        else:  # a list of 62 signal names helps nobody; the suggestion does
            _add(out, path, f"{_show(value)} is not an allowed value", hint)
    if isinstance(value, str):
        _check_string(value, schema, path, out)
    elif _is_number(value):
        _check_number(value, schema, path, out)
    elif isinstance(value, list):
        _check_array(value, schema, path, out)
    elif isinstance(value, dict):
        _check_object(value, schema, path, out)
    for sub in schema.get("allOf", ()):
        _validate(value, sub, path, out)
    if "if" in schema:
        _check_condition(value, schema, path, out)


def _check_string(value: str, schema: Mapping[str, Any], path: str, out: list[Any]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        out.append({"path": path, "message": "must not be empty"})
    elif "maxLength" in schema and len(value) > schema["maxLength"]:
        out.append({"path": path, "message": f"must be at most {schema['maxLength']} characters"})
    if "pattern" in schema and not _regex(schema["pattern"]).search(value):
        hint = _PATTERN_HINTS.get(schema["pattern"], f"must match {schema['pattern']}")
        out.append({"path": path, "message": f"{_show(value)} {hint}"})


def _check_number(value: float, schema: Mapping[str, Any], path: str, out: list[Any]) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        out.append({"path": path, "message": f"must be >= {schema['minimum']}"})
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        out.append({"path": path, "message": f"must be > {schema['exclusiveMinimum']}"})
    if "maximum" in schema and value > schema["maximum"]:
        out.append({"path": path, "message": f"must be <= {schema['maximum']}"})


def _check_array(value: list[Any], schema: Mapping[str, Any], path: str, out: list[Any]) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        out.append({"path": path, "message": f"must have at least {schema['minItems']} item"})
    if "items" in schema:
        for i, item in enumerate(value):
            _validate(item, schema["items"], f"{path}[{i}]", out)
    if schema.get("uniqueItems"):
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                out.append({"path": f"{path}[{i}]", "message": f"duplicate item {item!r}"})
            seen.append(item)


def _check_object(
    value: dict[Any, Any], schema: Mapping[str, Any], path: str, out: list[Any]
) -> None:
    props: dict[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    # Unknown keys first: a misspelt key usually explains a "missing" one below.
    for key in value:
        if not isinstance(key, str):
            out.append({"path": path, "message": f"keys must be strings, got {key!r}"})
            continue
        if key in props:
            continue
        if "propertyNames" in schema:
            _validate(key, schema["propertyNames"], _key_path(path, key), out)
        if extra is False:
            _add(out, _key_path(path, key), f"unknown field {key!r}", suggest(key, list(props)))
        elif isinstance(extra, dict):
            _validate(value[key], extra, _key_path(path, key), out)
    for key in schema.get("required", ()):
        if key not in value:
            out.append({"path": _key_path(path, key), "message": "required field is missing"})
    for key, sub in props.items():
        if key in value:
            _validate(value[key], sub, _key_path(path, key), out)


def _check_condition(value: Any, schema: Mapping[str, Any], path: str, out: list[Any]) -> None:
    quiet: list[dict[str, Any]] = []
    _validate(value, schema["if"], path, quiet)
    branch = schema.get("else" if quiet else "then")
    if branch is None:
        return
    found: list[dict[str, Any]] = []
    _validate(value, branch, path, found)
    seen = {p["path"] for p in out}
    for problem in found:
        if problem["path"] in seen:  # already reported by the field's own schema
            continue
        seen.add(problem["path"])
        if "description" in branch:
            problem["message"] = branch["description"]
        out.append(problem)


def _build(cls: type[_M], data: Mapping[str, Any]) -> _M:
    """Construct ``cls`` from data that already passed :func:`_check`."""
    kwargs: dict[str, Any] = {}
    for f in _fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        model = f.metadata.get("model")
        kind = f.metadata["schema"].get("type")
        if model and value is not None:
            value = _build(_MODELS[model], value)
        elif kind == "integer" or kind == ["integer", "null"]:
            value = None if value is None else int(value)
        elif kind == "number":
            value = float(value)
        elif isinstance(value, list):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)
        kwargs[f.name] = value
    return cls(**kwargs)
