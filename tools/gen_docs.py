"""Regenerate the generated parts of docs/ (``nox -s docs``).

* docs/configuration.md: the option tables between the GENERATED markers;
* docs/api.md: the endpoint reference from the OpenAPI document;
* docs/security.md: the role matrix (every route of the registry, and the WebSocket
  endpoints) between the GENERATED markers;
* docs/cli.md: every ``gdos`` command and option (from the click commands) between the
  GENERATED markers.

``python tools/gen_docs.py --check`` fails when a file is stale (used by the tests).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import click  # noqa: E402

from gdos_cli import cli  # noqa: E402
from gdos_master.api import api  # noqa: E402
from gdos_master.openapi import build_openapi  # noqa: E402
from gdos_sdk.config import MasterSettings, WorkerSettings, iter_options  # noqa: E402

BEGIN = "<!-- BEGIN GENERATED -->"
END = "<!-- END GENERATED -->"


def _default(value: Any) -> str:
    if value == "":
        return '`""`'
    return f"`{json.dumps(value)}`" if not isinstance(value, str) else f"`{value}`"


def option_tables() -> str:
    out: list[str] = []
    for title, cls, prefix, file in (
        ("Master", MasterSettings, "OPS_MASTER_", "config.yaml"),
        ("Worker", WorkerSettings, "OPS_WORKER_", "worker.yaml"),
    ):
        out.append(f"### {title} (`./{file}`, `{prefix}*`)\n")
        out.append("| key | flag | environment | default | meaning |")
        out.append("|---|---|---|---|---|")
        for o in iter_options(cls):
            flag = f"`-{o.flag}`" if o.flag else ""
            secret = " (secret: never logged)" if o.secret else ""
            out.append(
                f"| `{o.key}` | {flag} | `{o.env_name(prefix)}` | {_default(o.default)} |"
                f" {o.help}{secret} |"
            )
        out.append("")
    return "\n".join(out)


#: The WebSocket endpoints (declared on the app, not in the REST registry), with their rules.
WEBSOCKETS: list[tuple[str, str, str, str]] = [
    (
        "/api/v1/agent/ws",
        "node credential, a planned node's claim token, or the join token",
        "node.join (first join)",
        "the agent channel; authenticated before the socket is accepted; the join token only"
        " creates a new node (pending if it matches a planned node), a claim token takes its"
        " planned node once",
    ),
    (
        "/api/v1/live",
        "viewer (session cookie from a same-Origin page, or an API token)",
        "",
        "live updates; credentials re-checked while the socket is open; node credentials"
        " refused; the audit topic needs admin",
    ),
    (
        "/api/v1/terminal/{node_id}",
        "admin (session cookie from a same-Origin page, or an API token)",
        "terminal.open, terminal.start, terminal.end",
        "a root shell on the node; recorded; see docs/terminal.md",
    ),
    (
        "/api/v1/agent/terminal/{session_id}",
        "node credential of the session's node + the session's one-time token",
        "",
        "the terminal's stream, dialled back by the worker",
    ),
]


def _role(endpoint: Any) -> str:
    if endpoint.agent:
        return "node credential"
    if endpoint.role is None:
        return "none"
    return str(endpoint.role.value)


def role_matrix() -> str:
    """Every route of the registry: method, path, minimum role, audit action, extra rule."""
    out = [
        "| method | path | minimum role | audited as | rule beyond the role |",
        "|---|---|---|---|---|",
    ]
    for e in sorted(api.endpoints, key=lambda e: (e.tag, e.path, e.method)):
        audit = f"`{e.audit}`" if e.audit else ""
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", api.prefix + e.path)
        out.append(f"| {e.method} | `{path}` | {_role(e)} | {audit} | {e.rule} |")
    out += [
        "",
        "WebSocket endpoints:",
        "",
        "| path | who | audited as | rule |",
        "|---|---|---|---|",
    ]
    out += [f"| `{path}` | {who} | {audit} | {rule} |" for path, who, audit, rule in WEBSOCKETS]
    out += [
        "",
        'Outside `/api/v1`: `GET /healthz` (none: `{"status": "ok"}` only; several masters'
        " add their id, whether they lead and whether they lost the database or the bus),"
        " `GET /metrics` (viewer: Prometheus text), the web console's files (none: no data"
        " in them).",
        "",
    ]
    return "\n".join(out)


def _ref_name(schema: dict[str, Any]) -> str:
    return str(schema.get("$ref", "")).rsplit("/", 1)[-1]


def _type(schema: dict[str, Any]) -> str:
    """A short type name for a JSON Schema: ``string``, ``[Node]``, ``integer | null``."""
    if "$ref" in schema:
        return _ref_name(schema)
    if "anyOf" in schema:
        return " \\| ".join(_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        if "prefixItems" in schema:
            return "[" + ", ".join(_type(s) for s in schema["prefixItems"]) + "]"
        return f"[{_type(schema.get('items') or {})}]"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"{{string: {_type(schema['additionalProperties'])}}}"
    if schema.get("format") == "date-time":
        return "date-time"
    return str(kind)


def _limits(schema: dict[str, Any]) -> str:
    """The constraints of a schema in words (from its keywords, as a client sees them)."""
    if "anyOf" in schema:
        return "; ".join(x for x in (_limits(s) for s in schema["anyOf"]) if x)
    parts: list[str] = []
    low, high = schema.get("minLength"), schema.get("maxLength")
    if low is not None or high is not None:
        if low is not None and high is not None:
            parts.append(f"{low}-{high} chars")
        else:
            parts.append(f">= {low} chars" if low is not None else f"<= {high} chars")
    if "minimum" in schema or "maximum" in schema:
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            parts.append(f"{low}-{high}")
        else:
            parts.append(f">= {low}" if low is not None else f"<= {high}")
    if "exclusiveMinimum" in schema:
        parts.append(f"> {schema['exclusiveMinimum']}")
        if "maximum" in schema:
            parts[-1] += f", <= {schema['maximum']}"
            parts.remove(next(p for p in parts if p.startswith("<= ")))
    if "minItems" in schema and "prefixItems" not in schema:
        parts.append(f">= {schema['minItems']} entries")
    if "maxItems" in schema and "prefixItems" not in schema:
        parts.append(f"<= {schema['maxItems']} entries")
    if "pattern" in schema:
        hint = schema.get("description")
        parts.append(hint if hint else f"pattern `{schema['pattern']}`")
    if "propertyNames" in schema:
        parts.append("keys: " + _limits(schema["propertyNames"]))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict) and "prefixItems" not in schema:
            inner = _limits(schema[key])
            if inner:
                parts.append(f"each: {inner}")
    return ", ".join(parts)


def _json_default(value: Any) -> str:
    return "" if value is None else f"`{json.dumps(value)}`"


def _statuses(op: dict[str, Any]) -> str:
    codes = sorted(op["responses"])
    good = [c for c in codes if c < "400"]
    bad = [c for c in codes if c >= "400"]
    return " ".join(good) + (" · " + " ".join(bad) if bad else "")


def api_reference() -> str:
    doc = build_openapi(api)
    components = doc["components"]["schemas"]
    lines = [
        "# API reference",
        "",
        "Generated from the OpenAPI document the master serves at `/api/v1/openapi.json`",
        "(`nox -s docs` regenerates this file; a test fails when it is stale).",
        "",
        "Conventions: JSON bodies; errors are",
        '`{"error": {"code": "...", "message": "...", "details": ...}}` with real HTTP status',
        "codes. Authentication: `Authorization: Bearer gdos_...` (API token) or the browser",
        "session cookie plus `X-CSRF-Token` on mutating calls. Actions on an instance whose",
        "node is offline answer **202**: the desired state is recorded (a restart is queued)",
        "and applied when the worker reconnects. A deploy the worker has not answered within",
        "`fleet.command_timeout` also answers 202, with the record still `deploying`; the",
        "record then follows the worker (docs/architecture.md).",
        "",
        "Body limits: a JSON body is at most 8 MiB (413 beyond, checked against",
        "`Content-Length` and again while reading a chunked body). Package uploads stream and",
        "are bounded by `storage.max_package_bytes`, backup archive uploads by",
        "`backup.max_upload_bytes`.",
        "",
        "The *answers* column lists every status an operation can give: success first,",
        "then errors. Each comes from the route's declaration (`Api.route` in",
        "`gdos_master/routing.py`), so the document and the server agree; `nox -s fuzz`",
        "checks it against a running master (see [testing.md](testing.md)).",
        "",
        "| status | error code | when |",
        "|---|---|---|",
        "| 400 | `bad_request` | the body is not JSON (or carries NaN/Infinity) |",
        "| 401 | `unauthenticated` | no, expired or wrong credentials |",
        "| 403 | `forbidden` | the role or the kind of credential does not allow it;"
        " a missing CSRF header |",
        "| 404 | `not_found` | the object in the path (or named in the body) does not exist |",
        "| 409 | `conflict` | clashes with the current state (duplicate name, in use,"
        " node offline) |",
        "| 413 | `too_large` | the body is over its limit |",
        "| 422 | `validation_error`, `invalid_package`, `invalid_backup` | invalid input;"
        " `details` lists `{path, message}` |",
        "| 429 | `rate_limited` | too many failed logins; the `Retry-After` header says how"
        " many seconds to wait |",
        "| 502 | `worker_error`, `protocol_error` | the worker answered with an error |",
        "| 503 | `transport_error`, `storage_unavailable` | the worker or the package storage"
        " cannot be reached; the master lost its database (PostgreSQL) or the bus"
        ' (`details`: `{"lost": ["database", "bus"], "changed": false}`, what is lost),'
        " nothing was changed; when the database was lost after the request had sent it a"
        ' change, `details.changed` is `"unknown"` and the message says the change may have'
        " been made: look before retrying |",
        "",
        "Outside `/api/v1`: `GET /healthz` (no credential; `Client.master_health()`). A single"
        ' master answers `{"status": "ok"}`. Several masters (`-bus`) answer'
        ' `{"status", "master_id", "leader", "database", "bus", "lost_since"}`: `database`'
        ' and `bus` are `"ok"` or `"lost"`; while one is lost the status is `"unavailable"`,'
        " the answer is 503 and `lost_since` is the Unix time the outage began (the"
        " console's outage banner reads it; [scale-out.md](scale-out.md)).",
        "",
        "| method | path | role | answers | summary |",
        "|---|---|---|---|---|",
    ]
    bodies: dict[str, list[str]] = {}
    with_query: list[tuple[str, str, dict[str, Any]]] = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if op["security"] == []:
                role = "none"
            elif "x-required-role" in op:
                role = op["x-required-role"]
            else:
                role = "node credential"
            lines.append(
                f"| {method.upper()} | `{path}` | {role} | {_statuses(op)} | {op['summary']} |"
            )
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content:
                bodies.setdefault(_ref_name(content["schema"]), []).append(
                    f"{method.upper()} `{path}`"
                )
            if any(p["in"] == "query" for p in op.get("parameters", [])):
                with_query.append((method, path, op))
    lines += [
        "",
        "## Query parameters",
        "",
        "Leave a parameter out for its default; given empty it is checked like any other"
        " value (`?limit=` is a 422). Booleans are `true`/`false` (also `1`/`0`, `yes`/`no`,"
        " `on`/`off`); anything else is a 422, as is a value outside its limits.",
        "",
    ]
    for method, path, op in with_query:
        lines += [
            f"### {method.upper()} `{path}`",
            "",
            "| name | type | required | default | limits | meaning |",
            "|---|---|---|---|---|---|",
        ]
        for p in op["parameters"]:
            if p["in"] != "query":
                continue
            schema = p["schema"]
            default = _json_default(schema.get("default"))
            lines.append(
                f"| `{p['name']}` | {_type(schema)} | {'yes' if p['required'] else ''} |"
                f" {default} | {_limits(schema)} | {p['description']} |"
            )
        lines.append("")
    lines += [
        "## Request bodies",
        "",
        "Unknown fields are refused (422, with a suggestion for a misspelt name).",
        "",
    ]
    for name in sorted(bodies):
        schema = components[name]
        required = set(schema.get("required", []))
        lines += [
            f"### {name}",
            "",
            f"{schema.get('description', '')} Sent to {', '.join(bodies[name])}.".strip(),
            "",
            "| field | type | required | default | limits |",
            "|---|---|---|---|---|",
        ]
        for field, prop in schema["properties"].items():
            lines.append(
                f"| `{field}` | {_type(prop)} | {'yes' if field in required else ''} |"
                f" {_json_default(prop.get('default'))} | {_limits(prop)} |"
            )
        lines.append("")
    lines += [
        "## WebSocket",
        "",
        "| path | who | purpose |",
        "|---|---|---|",
        "| `/api/v1/agent/ws` | workers (node credential, claim token or join token) | the"
        " agent channel;"
        " see architecture.md |",
        "| `/api/v1/live` | browsers (session cookie, same Origin) or API tokens | live"
        " updates: subscribe to `fleet`, `nodes`, `node:<id>`, `instances`, `system:<id>`,"
        " `instance:<id>`, `alerts`, `audit`; a snapshot, then only changes (see"
        " `gdos_master/live.py`) |",
        "| `/api/v1/terminal/{node_id}` | admins (session cookie, same Origin, or API token)"
        " | web terminal: `?rows=&cols=` opens a session, `?session=<id>` reattaches; binary"
        " frames are terminal bytes, text frames JSON control (see docs/terminal.md) |",
        "| `/api/v1/agent/terminal/{session_id}` | workers (node credential + the session's"
        " one-time token) | a terminal's stream, dialled back by the worker |",
        "",
        "## Schemas",
        "",
        "Request and response bodies are the attrs models of `gdos_sdk.models` (and their",
        "neighbours); the OpenAPI document carries their JSON Schemas under",
        "`components.schemas`, with links from each create operation to the operations on",
        "what it created.",
        "",
    ]
    return "\n".join(lines)


def _cli_commands(
    command: click.Command, ctx: click.Context
) -> list[tuple[click.Command, click.Context]]:
    found = [(command, ctx)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found += _cli_commands(sub, click.Context(sub, info_name=name, parent=ctx))
    return found


def _cell(text: str) -> str:
    """Table-cell text: one line, pipes escaped, angle brackets not taken for HTML."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def cli_reference() -> str:
    """Every ``gdos`` command with its options, as ``--help`` shows them (docs/cli.md)."""
    out: list[str] = []
    root = click.Context(cli, info_name="gdos", auto_envvar_prefix="GDOS")
    for command, ctx in _cli_commands(cli, root):
        path = ctx.command_path
        out.append(f"### `{path}`\n")
        usage = " ".join(command.collect_usage_pieces(ctx))
        out.append(f"`{path} {usage}`\n")
        help_text = (command.help or "").replace("\b\n", "")
        paragraphs = [" ".join(p.split()) for p in help_text.split("\n\n") if p.strip()]
        out.append("\n\n".join(paragraphs) + "\n")
        rows = []
        for param in command.params:
            if not isinstance(param, click.Option) or param.name in ("help", "version"):
                continue
            record = param.get_help_record(ctx)
            if record is None:
                continue
            names, extra = record
            found = re.search(r"\[(env var: [^;\]]+)(?:; default: ([^\]]*))?", extra)
            env = found.group(1).removeprefix("env var: ") if found else ""
            default = found.group(2) if found and found.group(2) else ""
            meaning = _cell(param.help or "")
            shown = names.replace("|", "\\|")
            rows.append(f"| `{shown}` | {meaning} | `{env}` | {_cell(default)} |")
        if rows:
            out.append("| option | meaning | environment | default |")
            out.append("|---|---|---|---|")
            out.extend(rows)
            out.append("")
    return "\n".join(out)


def render_between_markers(current: str, generated: str) -> str:
    head, _, rest = current.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{generated}{END}{tail}"


def render_configuration(current: str) -> str:
    return render_between_markers(current, option_tables())


def main() -> int:
    check = "--check" in sys.argv
    targets = {
        ROOT / "docs" / "configuration.md": render_configuration(
            (ROOT / "docs" / "configuration.md").read_text()
        ),
        ROOT / "docs" / "api.md": api_reference(),
        ROOT / "docs" / "security.md": render_between_markers(
            (ROOT / "docs" / "security.md").read_text(), role_matrix()
        ),
        ROOT / "docs" / "cli.md": render_between_markers(
            (ROOT / "docs" / "cli.md").read_text(), cli_reference()
        ),
    }
    stale = []
    for path, text in targets.items():
        if path.exists() and path.read_text() == text:
            continue
        if check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("stale (run nox -s docs): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
