"""The OpenAPI 3.1 document, generated from the endpoint registry and the attrs models.

Because the same registry creates the Quart URL rules, the document cannot
list a route that does not exist or miss one that does (a test checks both
directions anyway). What it says about each operation comes from the same
objects the server acts on:

* request and response schemas from the attrs models, with the limits of each
  field from the :class:`~gdos_sdk.constraints.Check` that validates it;
* query parameters from their :class:`~gdos_master.routing.QueryParam`
  (type, default, limits), which is also what parses them;
* every status: the declared success ones, and each error the wrapper or the
  handler raises (:meth:`~gdos_master.routing.Endpoint.errors`), with the
  headers the error class sends (``Retry-After`` on a 429);
* links from each create operation to the operations on what it created, so a
  client (or a stateful fuzzer) can chain ``POST /systems`` into
  ``GET /systems/{system_id}``.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from datetime import datetime
from typing import Any

import attrs

from gdos_master import __version__
from gdos_master.routing import Api, Endpoint, QueryParam
from gdos_sdk.constraints import Check
from gdos_sdk.errors import GdosError
from gdos_sdk.manifest import json_schema as manifest_schema

__all__ = ["build_openapi", "openapi_path", "path_parameters"]

_ERROR = {"$ref": "#/components/schemas/Error"}
_PARAM = re.compile(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


def openapi_path(rule: str) -> str:
    """``/nodes/<node_id>`` to ``/nodes/{node_id}`` (``<sha256>``, ``<int:n>`` too)."""
    return _PARAM.sub(r"{\1}", rule)


def path_parameters(rule: str) -> list[str]:
    """The parameter names of a route, in order."""
    return _PARAM.findall(rule)


def _local_refs(schema: Any) -> Any:
    """JSON Schema ``#/$defs/X`` references as OpenAPI ``#/components/schemas/X``."""
    if isinstance(schema, dict):
        return {
            k: (
                v.replace("#/$defs/", "#/components/schemas/")
                if k == "$ref" and isinstance(v, str)
                else _local_refs(v)
            )
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_local_refs(v) for v in schema]
    return schema


def _constrain(schema: dict[str, Any], check: Check) -> dict[str, Any]:
    """``schema`` with the keywords of ``check`` on its non-null branches."""
    if "anyOf" in schema:
        return {
            **schema,
            "anyOf": [
                s if s.get("type") == "null" else _constrain(s, check) for s in schema["anyOf"]
            ],
        }
    out = {**check.schema(), **schema}  # the value's own description wins over the hint
    out.update({k: v for k, v in check.schema().items() if k != "description"})
    if check.items is not None and isinstance(out.get("items"), dict):
        out["items"] = _constrain(out["items"], check.items)
    if check.values is not None and isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _constrain(out["additionalProperties"], check.values)
    return out


def _json_default(value: Any) -> tuple[bool, Any]:
    """(True, JSON form) for a default worth documenting."""
    if isinstance(value, enum.Enum):
        return True, value.value
    if value is None or isinstance(value, bool | int | float | str):
        return True, value
    return False, None


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def of(self, tp: Any) -> dict[str, Any]:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any or tp is None:
            return {} if tp is Any else {"type": "null"}
        if tp is type(None):
            return {"type": "null"}
        if isinstance(tp, dict):  # a JSON Schema fragment written out (see HEALTH_CHECK)
            return typing.cast(dict[str, Any], _local_refs(tp))
        if isinstance(getattr(tp, "json_schema", None), dict):
            return dict(tp.json_schema)
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [self.of(a) for a in args]}
        if origin is typing.Literal:
            kinds = {type(a) for a in args}
            schema: dict[str, Any] = {"enum": list(args)}
            if kinds == {str}:
                schema = {"type": "string", **schema}
            return schema
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": self.of(args[0])}
            return {
                "type": "array",
                "prefixItems": [self.of(a) for a in args],
                "items": False,
                "minItems": len(args),
                "maxItems": len(args),
            }
        if origin is list:
            return {"type": "array", "items": self.of(args[0]) if args else {}}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.of(args[1]) if args else {}}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return {"type": "string", "enum": [m.value for m in tp]}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if tp is datetime:
            return {"type": "string", "format": "date-time"}
        base = origin or tp
        if attrs.has(base):
            return self._model(tp, base, args)
        return {}

    def _field(self, field: attrs.Attribute[Any], hint: Any) -> dict[str, Any]:
        override = field.metadata.get("schema")
        schema = self.of(hint)
        if override is not None:
            written = self.of(override)
            nullable = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(
                None
            ) in typing.get_args(hint)
            schema = {"anyOf": [written, {"type": "null"}]} if nullable else written
        if isinstance(field.validator, Check):
            schema = _constrain(schema, field.validator)
        if field.default is not attrs.NOTHING and not isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            documented, value = _json_default(field.default)
            if documented:
                schema["default"] = value
        return schema

    def _model(self, tp: Any, base: type, args: tuple[Any, ...]) -> dict[str, Any]:
        name = base.__name__ + "".join(getattr(a, "__name__", "") for a in args)
        if name not in self.components:
            self.components[name] = {}  # placeholder breaks recursion
            hints = typing.get_type_hints(base)
            params = getattr(base, "__parameters__", ())
            mapping = dict(zip(params, args, strict=False))
            props: dict[str, Any] = {}
            required: list[str] = []
            for field in attrs.fields(base):
                hint = hints[field.name]
                hint = mapping.get(hint, hint)
                if typing.get_origin(hint) is list and typing.get_args(hint)[0] in mapping:
                    hint = list[mapping[typing.get_args(hint)[0]]]  # type: ignore[misc]
                props[field.name] = self._field(field, hint)
                if field.default is attrs.NOTHING:
                    required.append(field.name)
            schema: dict[str, Any] = {
                "type": "object",
                "properties": props,
                "additionalProperties": False,
            }
            if required:
                schema["required"] = required
            if base.__doc__:
                schema["description"] = base.__doc__.strip().splitlines()[0].replace("``", "`")
            self.components[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def query(self, q: QueryParam) -> dict[str, Any]:
        schema = self.of(q.type)
        if q.type is str and q.required:
            schema["minLength"] = 1  # an empty value counts as missing
        if q.check is not None:
            if q.repeated:
                schema["items"] = _constrain(schema["items"], q.check)
            else:
                schema = _constrain(schema, q.check)
        if q.default is not None:
            schema["default"] = _json_default(q.default)[1]
        return schema


def _describe_errors(errors: list[type[GdosError]]) -> str:
    texts: list[str] = []
    for error in errors:
        text = (error.__doc__ or error.__name__).strip().splitlines()[0].rstrip(".")
        text = text.replace("``", "`")
        if text not in texts:
            texts.append(text)
    return "; ".join(texts)


def _responses(endpoint: Endpoint, schemas: _Schemas) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    success = [(endpoint.status, "success"), *endpoint.statuses]
    for status, text in success:
        if status == 204:
            responses[str(status)] = {"description": text if text != "success" else "done"}
        elif endpoint.raw_response:
            content = {endpoint.raw_response: {"schema": {"type": "string", "format": "binary"}}}
            responses[str(status)] = {"description": text, "content": content}
        else:
            responses[str(status)] = {
                "description": text,
                "content": {"application/json": {"schema": schemas.of(endpoint.response)}},
            }
    for status, errors in endpoint.errors().items():
        response: dict[str, Any] = {
            "description": _describe_errors(errors),
            "content": {"application/json": {"schema": _ERROR}},
        }
        headers = {name: text for e in errors for name, text in e.headers.items()}
        if headers:
            response["headers"] = {
                name: {"description": text, "required": True, "schema": {"type": "integer"}}
                for name, text in headers.items()
            }
        responses[str(status)] = response
    return responses


def _operation(endpoint: Endpoint, schemas: _Schemas) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
    }
    if endpoint.agent:
        op["security"] = [{"nodeCredential": []}]
    elif endpoint.role is None:
        op["security"] = []
    else:
        op["security"] = [{"bearerToken": []}, {"sessionCookie": []}]
        op["x-required-role"] = endpoint.role.value
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in path_parameters(endpoint.path)
    ]
    for q in endpoint.query:
        param: dict[str, Any] = {
            "name": q.name,
            "in": "query",
            "required": q.required,
            "description": q.description,
            "schema": schemas.query(q),
        }
        params.append(param)
    if params:
        op["parameters"] = params
    if endpoint.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.of(endpoint.body)}},
        }
    elif endpoint.raw_body:
        op["requestBody"] = {
            "required": True,
            "content": {endpoint.raw_body: {"schema": {"type": "string", "format": "binary"}}},
        }
    op["responses"] = _responses(endpoint, schemas)
    return op


# --- links -----------------------------------------------------------------------------------


def _find(schema: Any, key: str, components: dict[str, Any], depth: int = 0) -> str | None:
    """The JSON pointer of property ``key`` in ``schema`` (or one object level down)."""
    if depth > 1 or not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        schema = components.get(ref.rsplit("/", 1)[1], {})
    props = schema.get("properties", {})
    if key in props:
        return f"/{key}"
    for name, sub in props.items():
        found = _find(sub, key, components, depth + 1)
        if found is not None:
            return f"/{name}{found}"
    return None


def _links(paths: dict[str, dict[str, Any]], components: dict[str, Any], prefix: str) -> None:
    """Link each create operation (a 201 with an object body) to the operations on its result.

    The operations on what ``POST /x`` (or ``POST /.../x``) created are those under
    ``/x/{param}``: the first new path parameter takes the created object's ``id``
    (or, without one, the property of the parameter's own name, as ``name`` and
    ``version`` of a package); parameters the create path has too are passed on.
    """
    for create_path, ops in paths.items():
        create = ops.get("post")
        created = (create or {}).get("responses", {}).get("201")
        if create is None or created is None:
            continue
        schema = created.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            continue
        own = set(re.findall(r"{([^}]+)}", create_path))
        last = create_path.rstrip("/").rsplit("/", 1)[1]
        prefixes = (f"{create_path}/{{", f"{prefix}/{last}/{{")
        links: dict[str, Any] = {}
        for path, target_ops in paths.items():
            if not path.startswith(prefixes):
                continue
            new = [p for p in re.findall(r"{([^}]+)}", path) if p not in own]
            values: dict[str, str] = {p: f"$request.path.{p}" for p in own if f"{{{p}}}" in path}
            for index, param in enumerate(new):
                pointer = _find(schema, param, components)
                if pointer is None and index == 0 and param.endswith("_id"):
                    pointer = _find(schema, "id", components)
                if pointer is None:
                    break
                values[param] = f"$response.body#{pointer}"
            else:
                for target in target_ops.values():
                    links[target["operationId"]] = {
                        "operationId": target["operationId"],
                        "parameters": values,
                    }
        if links:
            created["links"] = dict(sorted(links.items()))


def build_openapi(api: Api) -> dict[str, Any]:
    """The whole document for ``api``."""
    schemas = _Schemas()
    # service.json's own definitions (health checks in modules, the manifest endpoint).
    manifest = manifest_schema()
    for name, definition in manifest.get("$defs", {}).items():
        schemas.components[name] = _local_refs(definition)
    schemas.components["Manifest"] = _local_refs(
        {k: v for k, v in manifest.items() if k not in {"$defs", "$schema", "$id"}}
    )
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in api.endpoints:
        path = openapi_path(api.prefix + endpoint.path)
        paths.setdefault(path, {})[endpoint.method.lower()] = _operation(endpoint, schemas)
    schemas.components["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {},
                },
            }
        },
    }
    _links(paths, schemas.components, api.prefix)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "GDOS master API",
            "version": __version__,
            "description": "REST API of the GDOS master. Errors are"
            ' {"error": {"code", "message", "details"}}. The agent WebSocket'
            " (/api/v1/agent/ws) is described in docs/architecture.md.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "API token (gdos_...)",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "gdos_session",
                    "description": "browser session; mutating calls also need"
                    " the X-CSRF-Token header",
                },
                "nodeCredential": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "per-node credential (gdosn_...)",
                },
            },
        },
    }
