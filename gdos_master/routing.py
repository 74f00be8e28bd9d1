"""Declarative API routes: authentication, roles, body parsing, rendering and audit in one place.

Every REST endpoint is declared with :meth:`Api.route`, which records what the
OpenAPI document needs and wraps the handler so that it only sees an
authenticated :class:`Ctx` and a parsed body::

    @api.route("/nodes/<node_id>", "PATCH", role=Role.ADMIN, body=NodePatch,
               response=Node, audit="node.update", target="node:{node_id}",
               summary="Rename or relabel a node")
    async def patch_node(ctx: Ctx, node_id: str, body: NodePatch) -> Node:
        return ctx.master.nodes.patch(node_id, body)

Because the wrapper is the only way in, no route can forget its role check
or its audit entry.
"""

from __future__ import annotations

import enum
import json
import typing
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from quart import Quart, Response, has_request_context, request

from gdos_master.audit import record_audit
from gdos_master.auth import Principal, authenticate, check_csrf
from gdos_master.security import redact
from gdos_sdk.codec import parse_json, structure, unstructure
from gdos_sdk.errors import (
    BadRequestError,
    GdosError,
    PasswordChangeRequired,
    PermissionDenied,
    RateLimitedError,
    TooLargeError,
    UnsupportedMediaType,
    ValidationError,
)
from gdos_sdk.models import Role

__all__ = [
    "Api",
    "Ctx",
    "Endpoint",
    "QueryParam",
    "check_choices",
    "error_response",
    "json_response",
]

Handler = Callable[..., Awaitable[Any]]


@attrs.frozen
class QueryParam:
    """A query parameter; an enum or ``Literal`` type also limits its values (checked)."""

    name: str
    type: Any
    description: str
    required: bool = False

    @property
    def choices(self) -> tuple[str, ...]:
        """The allowed values when the type names them, else ``()``."""
        if isinstance(self.type, type) and issubclass(self.type, enum.Enum):
            return tuple(str(m.value) for m in self.type)
        if typing.get_origin(self.type) is typing.Literal:
            return tuple(str(a) for a in typing.get_args(self.type))
        return ()


def check_choices(params: tuple[QueryParam, ...]) -> None:
    """A ValidationError naming the allowed values for any query value outside them.

    An unknown filter value (``?status=bogus``) must not quietly match nothing.
    """
    for param in params:
        allowed = param.choices
        if not allowed:
            continue
        for raw in request.args.getlist(param.name):
            if raw and raw not in allowed:
                raise ValidationError(
                    f"unknown {param.name} {raw!r}; one of {', '.join(allowed)}",
                    details=[
                        {
                            "path": f"query.{param.name}",
                            "message": f"unknown {param.name}",
                            "allowed": list(allowed),
                        }
                    ],
                )


@attrs.frozen
class Endpoint:
    """One documented route."""

    path: str
    method: str
    handler: Handler
    summary: str
    tag: str
    role: Role | None
    body: type | None
    response: Any
    status: int
    audit: str | None
    target: str | None
    query: tuple[QueryParam, ...]
    raw_body: str | None  # content type of a streamed body (uploads)
    raw_response: str | None  # content type of a streamed response (downloads)
    agent: bool  # node credentials only (the worker's side of the API)
    # A rule beyond the role (which settings need an admin, what is write-only): the role
    # matrix of docs/security.md shows it beside the role.
    rule: str = ""

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


@attrs.define
class Ctx:
    """What a handler gets: the master, who is calling, and audit hooks."""

    master: Any  # gdos_master.app.Master (Any to keep the import graph acyclic)
    principal: Principal | None
    ip: str
    target: str = ""
    audit_params: dict[str, Any] = attrs.field(factory=dict)

    @property
    def actor(self) -> Principal:
        assert self.principal is not None, "route declared without a role"
        return self.principal

    @property
    def is_admin(self) -> bool:
        """Whether the caller may choose admin-only settings (gdos_sdk.privileges)."""
        return self.actor.role.allows(Role.ADMIN)

    def page(self) -> tuple[int, int]:
        """``limit`` and ``offset`` from the query string, validated."""
        limit = query_int("limit", 100, minimum=1, maximum=1000)
        offset = query_int("offset", 0, minimum=0, maximum=10**12)
        return limit, offset


def query_int(name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(
            f"query parameter {name!r} must be an integer",
            details=[{"path": f"query.{name}", "message": "expected an integer"}],
        ) from None
    if not minimum <= value <= maximum:
        raise ValidationError(
            f"query parameter {name!r} must be between {minimum} and {maximum}",
            details=[{"path": f"query.{name}", "message": "out of range"}],
        )
    return value


def query_bool(name: str) -> bool:
    return request.args.get(name, "").lower() in {"1", "true", "yes"}


def json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return Response(body, status=status, content_type="application/json")


def error_response(exc: GdosError) -> Response:
    response = json_response(exc.to_body(), exc.status)
    if isinstance(exc, RateLimitedError):
        retry = exc.details.get("retry_after") if isinstance(exc.details, dict) else None
        response.headers["Retry-After"] = str(retry if isinstance(retry, int) else 1)
    return close_if_body_sent(response)


def close_if_body_sent(response: Response) -> Response:
    """Mark an error answer to a request that carries a body ``Connection: close``.

    An error (401, 403, 404, 413 ...) is often decided before the body was read, and
    Hypercorn closes a keep-alive connection whose request body it has not seen the end
    of when the answer is done. Without this header the client would keep that
    connection for its next request and find it closed ("Server disconnected without
    sending a response"); with it, the client opens a new one.
    """
    if has_request_context() and (
        request.content_length or "chunked" in request.headers.get("Transfer-Encoding", "")
    ):
        response.headers["Connection"] = "close"
    return response


def client_ip() -> str:
    return request.remote_addr or ""


class Api:
    """A registry of endpoints that becomes Quart URL rules and an OpenAPI document."""

    def __init__(self, prefix: str = "/api/v1") -> None:
        self.prefix = prefix
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        path: str,
        method: str,
        *,
        summary: str,
        tag: str,
        role: Role | None,
        body: type | None = None,
        response: Any = None,
        status: int = 200,
        audit: str | None = None,
        target: str | None = None,
        query: tuple[QueryParam, ...] = (),
        raw_body: str | None = None,
        raw_response: str | None = None,
        agent: bool = False,
        rule: str = "",
    ) -> Callable[[Handler], Handler]:
        """Declare an endpoint; see the module docstring.

        ``rule`` states what the handler enforces beyond ``role`` (for the role matrix).
        """
        if method != "GET" and audit is None and role is not None and not agent:
            raise ValueError(f"{method} {path} mutates and must name an audit action")

        def decorate(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    path=path,
                    method=method,
                    handler=handler,
                    summary=summary,
                    tag=tag,
                    role=role,
                    body=body,
                    response=response,
                    status=status,
                    audit=audit,
                    target=target,
                    query=query,
                    raw_body=raw_body,
                    raw_response=raw_response,
                    agent=agent,
                    rule=rule,
                )
            )
            return handler

        return decorate

    def register(self, app: Quart) -> None:
        """Add every endpoint to ``app`` as a URL rule."""
        for endpoint in self.endpoints:
            app.add_url_rule(
                self.prefix + endpoint.path,
                endpoint=f"api.{endpoint.operation_id}",
                view_func=_make_view(endpoint),
                methods=[endpoint.method],
            )


def _make_view(endpoint: Endpoint) -> Handler:
    async def view(**kwargs: Any) -> Response:
        from gdos_master.app import current_master

        master = current_master()
        ctx = Ctx(master=master, principal=None, ip=client_ip())
        if endpoint.target:
            ctx.target = endpoint.target.format(**kwargs)
        params: dict[str, Any] = dict(kwargs)
        if request.args:
            params["query"] = dict(request.args)
        try:
            if endpoint.agent:
                ctx.principal = await authenticate(master)
                if ctx.principal.kind != "node":
                    raise PermissionDenied("this endpoint is for workers (node credentials) only")
            elif endpoint.role is not None:
                ctx.principal = await authenticate(master)
                _authorise(ctx.principal, endpoint)
            check_choices(endpoint.query)
            if endpoint.body is not None:
                raw = await _read_json()
                params["body"] = redact(raw)
                kwargs["body"] = structure(raw, endpoint.body)
            result = await endpoint.handler(ctx, **kwargs)
            response = _render(result, endpoint.status)
        except GdosError as exc:
            response = error_response(exc)
            if endpoint.audit:
                _audit(master, ctx, endpoint, params, response.status_code, exc.message)
            return response
        if endpoint.audit:
            _audit(master, ctx, endpoint, params, response.status_code, "")
        return response

    view.__name__ = endpoint.operation_id
    return view


#: What a user whose password must be changed may still do (see :func:`check_password_fresh`).
BEFORE_PASSWORD_CHANGE = frozenset({"me", "logout", "change_password"})


def check_password_fresh(principal: Principal, what: str = "") -> None:
    """403 ``password_change_required`` for a user who must change their password first."""
    if principal.must_change_password and what not in BEFORE_PASSWORD_CHANGE:
        raise PasswordChangeRequired(
            f"{principal.username} must change the initial password first"
            " (POST /api/v1/auth/password); nothing else is allowed until then"
        )


def _authorise(principal: Principal, endpoint: Endpoint) -> None:
    assert endpoint.role is not None
    if principal.kind == "node":
        raise PermissionDenied("node credentials are accepted only on agent endpoints")
    check_password_fresh(principal, endpoint.operation_id)
    if not principal.role.allows(endpoint.role):
        raise PermissionDenied(
            f"this action needs the {endpoint.role.value} role; "
            f"{principal.username} is {principal.role.value}"
        )
    if endpoint.method not in {"GET", "HEAD", "OPTIONS"}:
        check_csrf(principal)


#: The largest JSON request body any endpoint accepts. The app-wide MAX_CONTENT_LENGTH is
#: sized for package and backup uploads (which stream and enforce their own limits); a JSON
#: body is read into memory, so it gets a bound of its own.
MAX_JSON_BYTES = 8 * 1024 * 1024


async def _read_json() -> Any:
    # Only JSON is JSON: a form or text/plain body (what another site can make a browser
    # send without asking) is refused before anything is read or done.
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            "send the body as JSON with 'Content-Type: application/json'"
            f" (got {request.content_type or 'no Content-Type'})",
            details=[{"path": "header.Content-Type", "message": "expected application/json"}],
        )
    declared = request.content_length
    if declared is not None and declared > MAX_JSON_BYTES:
        raise TooLargeError(
            f"JSON request body is {declared} bytes; the limit is {MAX_JSON_BYTES} bytes",
            details=[{"path": "$", "message": "body too large"}],
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.body:
        size += len(chunk)
        if size > MAX_JSON_BYTES:
            raise TooLargeError(
                f"JSON request body is over the limit of {MAX_JSON_BYTES} bytes",
                details=[{"path": "$", "message": "body too large"}],
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise ValidationError(
            "request body is empty; send a JSON object",
            details=[{"path": "$", "message": "empty body"}],
        )
    try:
        return parse_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(
            f"request body is not valid JSON: {exc}",
            details=[{"path": "$", "message": f"invalid JSON: {exc}"}],
        ) from exc


def _render(result: Any, status: int) -> Response:
    if isinstance(result, Response):
        return result
    if result is None:
        return Response("", status=204)
    if isinstance(result, tuple):  # (model, status): e.g. 202 when a node is offline
        value, status = result
        return json_response(unstructure(value), status)
    return json_response(unstructure(result), status)


def _audit(
    master: Any, ctx: Ctx, endpoint: Endpoint, params: dict[str, Any], status: int, message: str
) -> None:
    params = {**params, **ctx.audit_params}
    record_audit(
        master.db,
        principal=ctx.principal,
        ip=ctx.ip,
        action=endpoint.audit or "",
        target=ctx.target,
        params=params,
        status=status,
        message=message,
    )
