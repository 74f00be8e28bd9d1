"""The API's reads answered below Quart: same routes, same checks, same answers, less work.

A ``GET`` under ``/api/v1/`` is what scripts, the CLI and the console's lists send all day
(``GET /nodes`` above all). Quart's request pipeline costs the master more per answer than
the whole of GDOS's own work for it: a request object with its headers copied and
title-cased, an app and a request context, the dispatch, a response object, and its
conversion back to ASGI (docs/benchmarks.md, REST). :class:`FastLane` sits between the
ASGI server and Quart and answers those requests itself:

* the route is found by Quart's own URL map (so the same path matches the same endpoint,
  converters and precedence included); anything the map does not settle plainly (no
  such route, a redirect for a trailing slash, a WebSocket route, another method) goes to
  Quart untouched;
* the endpoint's declaration (:class:`~gdos_master.routing.Endpoint`) is applied exactly
  as the route wrapper applies it: the credential (the same cache), the role, a password
  that must change first, the declared query parameters, the caller's address (trusted
  proxies included) and the log context;
* the handler runs as it would under Quart and its result is rendered by the same
  functions (:func:`~gdos_master.routing.error_response` and friends), then sent as two
  ASGI messages.

Only requests that can be served that way take the lane: ``GET`` (not ``HEAD``), no request
body, an endpoint with a JSON answer (downloads stream through Quart) that is not the
workers' side of the API. Headers that every answer gets (security headers, the request
id) are added around both paths by :class:`~gdos_master.headers.AnswerHeaders`.
``tests/master/test_fastlane.py`` checks that both paths give the same answers, errors
included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import parse_qsl

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope
from quart import Quart, Response
from werkzeug.datastructures import MultiDict
from werkzeug.routing import MapAdapter

from gdos_master.auth import authenticate_raw
from gdos_master.routing import (
    Api,
    Ctx,
    Endpoint,
    authorise,
    error_response,
    render,
    unexpected_error,
)
from gdos_sdk.errors import GdosError
from gdos_sdk.logformat import set_log_context

__all__ = ["FastLane"]

RawHeaders = list[tuple[bytes, bytes]]


def takes_the_lane(endpoint: Endpoint) -> bool:
    """Whether ``endpoint`` is answered by the fast lane (see the module docstring)."""
    return (
        endpoint.method == "GET"
        and endpoint.body is None
        and endpoint.raw_body is None
        and endpoint.raw_response is None
        and not endpoint.agent
    )


class FastLane:
    """ASGI middleware: the API's plain reads answered without Quart's request pipeline.

    ``app`` is the Quart app (its ASGI callable at the time of construction is where every
    other request goes), ``api`` the endpoints it registered, ``master`` the
    :class:`~gdos_master.app.Master` they serve. ``enabled`` turns the lane off (every
    request to Quart), for tests and benchmarks that compare both paths.
    """

    def __init__(self, app: Quart, api: Api, master: Any) -> None:
        self.inner = app.asgi_app
        self.master = master
        self.enabled = True
        self._url_map = app.url_map
        self._adapter: MapAdapter | None = None
        self._prefix = api.prefix + "/"
        self._endpoints = {f"api.{e.operation_id}": e for e in api.endpoints if takes_the_lane(e)}

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        found = self._route(scope) if self.enabled else None
        if found is None:
            await self.inner(scope, receive, send)
            return
        endpoint, values = found
        status, headers, body = await self._answer(endpoint, values, cast(HTTPScope, scope))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _route(self, scope: Scope) -> tuple[Endpoint, Mapping[str, Any]] | None:
        """The endpoint and path values of a request the lane answers, else None."""
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            return None
        path: str = scope["path"]
        if not path.startswith(self._prefix):
            return None
        for name, value in scope["headers"]:
            # A GET with a body: Quart reads (or refuses) it and closes the connection
            # on an error answer, which this lane does not do.
            if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                return None
        if self._adapter is None:
            self._adapter = self._url_map.bind("localhost")
        try:
            name, values = self._adapter.match(path, method="GET", websocket=False)
        except Exception:  # 404, 405, a redirect, a WebSocket route: Quart answers
            return None
        endpoint = self._endpoints.get(str(name))
        if endpoint is None:
            return None
        return endpoint, values

    async def _answer(
        self, endpoint: Endpoint, values: Mapping[str, Any], scope: HTTPScope
    ) -> tuple[int, RawHeaders, bytes]:
        master = self.master
        authorization = ""
        cookies: list[str] = []
        forwarded: list[str] = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                if not authorization:  # the first one, as Quart's headers.get
                    authorization = value.decode("latin-1")
            elif name == b"cookie":
                cookies.append(value.decode("latin-1"))
            elif name == b"x-forwarded-for":
                forwarded.append(value.decode("latin-1"))
        if "node_id" in values or "instance_id" in values:
            set_log_context(node_id=values.get("node_id"), instance_id=values.get("instance_id"))
        peer: str = (scope.get("client") or ("<local>",))[0]
        ip = master.proxies.client(peer, forwarded) if master.proxies.networks else peer
        ctx = Ctx(master=master, principal=None, ip=ip)
        try:
            if endpoint.role is not None:
                ctx.principal = authenticate_raw(master, authorization, ";".join(cookies))
                authorise(ctx.principal, endpoint)
            if endpoint.query:
                query_string: bytes = scope["query_string"]
                args: MultiDict[str, str] = MultiDict(
                    parse_qsl(
                        query_string.decode(), keep_blank_values=True, errors="werkzeug.url_quote"
                    )
                    if query_string
                    else ()
                )
                ctx.query = {q.name: q.read(args) for q in endpoint.query}
            result = await endpoint.handler(ctx, **values)
            response = render(result, endpoint.status)
        except GdosError as exc:
            response = error_response(exc)
        except Exception as exc:
            response = unexpected_error(exc, "GET", scope["path"], master)
        return await _raw(response)


async def _raw(response: Response) -> tuple[int, RawHeaders, bytes]:
    """What Quart would send for ``response`` (a JSON or empty answer): status, headers, body."""
    headers = [(k.lower().encode(), v.encode()) for k, v in response.headers.items()]
    return response.status_code, headers, await response.get_data(as_text=False)
