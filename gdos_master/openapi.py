"""The OpenAPI 3.1 document, generated from the endpoint registry and the attrs models.

Because the same registry creates the Quart URL rules, the document cannot
list a route that does not exist or miss one that does (a test checks both
directions anyway).
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
from gdos_master.routing import Api, Endpoint

__all__ = ["build_openapi", "openapi_path"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def openapi_path(rule: str) -> str:
    """``/nodes/<node_id>`` to ``/nodes/{node_id}``."""
    return re.sub(r"<(?:[a-z]+:)?([A-Za-z_]+)>", r"{\1}", rule)


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
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [self.of(a) for a in args]}
        if origin is typing.Literal:
            return {"enum": list(args)}
        if origin in (list, tuple):
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
                props[field.name] = self.of(hint)
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
                schema["description"] = base.__doc__.strip().splitlines()[0]
            self.components[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}


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
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"<(?:[a-z]+:)?([A-Za-z_]+)>", endpoint.path)
    ]
    params += [
        {
            "name": q.name,
            "in": "query",
            "required": q.required,
            "description": q.description,
            "schema": schemas.of(q.type),
        }
        for q in endpoint.query
    ]
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
    responses: dict[str, Any] = {}
    if endpoint.status == 204:
        responses["204"] = {"description": "done"}
    elif endpoint.raw_response:
        responses[str(endpoint.status)] = {
            "description": "the file",
            "content": {endpoint.raw_response: {"schema": {"type": "string", "format": "binary"}}},
        }
    else:
        responses[str(endpoint.status)] = {
            "description": "success",
            "content": {"application/json": {"schema": schemas.of(endpoint.response)}},
        }
    for status, text in (
        ("400", "malformed request"),
        ("401", "not authenticated"),
        ("403", "role or credential kind not allowed"),
        ("404", "not found"),
        ("409", "conflicts with current state"),
        ("422", "invalid input; details name the field"),
    ):
        responses.setdefault(
            status, {"description": text, "content": {"application/json": {"schema": _ERROR}}}
        )
    op["responses"] = responses
    return op


def build_openapi(api: Api) -> dict[str, Any]:
    """The whole document for ``api``."""
    schemas = _Schemas()
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
