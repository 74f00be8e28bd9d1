"""The OpenAPI document says what the server does: valid 3.1, every status, every limit.

Each test drives the real app (in process) and checks the answer against the document the
same app serves, so a status, a type or a limit that only lives in prose shows up here.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from quart import Quart

from gdos_master.api import api
from gdos_master.app import Master
from gdos_master.openapi import build_openapi, openapi_path
from gdos_master.routing import Api, Ctx
from gdos_sdk import alerts, backups, batches, commands, models
from gdos_sdk.adoption import AdoptionSpec
from gdos_sdk.client import AsyncClient
from gdos_sdk.constraints import Check

from .conftest import ADMIN_PASSWORD, token_for

pytestmark = pytest.mark.anyio

_DOC = build_openapi(api)


def _op(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    op: dict[str, Any] = document["paths"]["/api/v1" + path][method.lower()]
    return op


def _documented(document: dict[str, Any], method: str, path: str, status: int) -> bool:
    return str(status) in _op(document, method, path)["responses"]


def _conforms(document: dict[str, Any], schema: dict[str, Any], value: Any) -> list[str]:
    """Problems of ``value`` against ``schema`` of ``document`` (JSON Schema 2020-12)."""
    root = {**schema, "components": document["components"]}
    validator = Draft202012Validator(root)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(value)]


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []


def _http(app: Quart, token: str | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=transport, base_url="http://m/api/v1", headers=headers)


async def _admin_token(admin: AsyncClient) -> str:
    return (await admin.create_token("openapi-tests")).secret


# --- the document itself -------------------------------------------------------------------


async def test_the_served_document_is_valid_openapi_3_1(admin: AsyncClient) -> None:
    document = await admin.openapi()
    assert document["openapi"].startswith("3.1")
    validate_spec(document)  # raises on any structural error
    assert document == _DOC


def test_path_parameters_with_digits_in_their_names_are_converted_in_the_api() -> None:
    assert openapi_path("/agent/packages/<sha256>") == "/agent/packages/{sha256}"
    assert openapi_path("/x/<int:n2>/<name>") == "/x/{n2}/{name}"
    op = _DOC["paths"]["/api/v1/agent/packages/{sha256}"]["get"]
    assert [(p["name"], p["in"]) for p in op["parameters"]] == [("sha256", "path")]
    for path, ops in _DOC["paths"].items():
        assert "<" not in path and ">" not in path, path
        named = set(re.findall(r"{([^}]+)}", path))
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == named, path


@attrs.frozen
class _Pairs:
    points: list[tuple[int, float]]
    names: tuple[str, ...] = ()


_TINY = Api()


@_TINY.route("/pairs/<sha256>", "GET", summary="pairs", tag="t", role=None, response=_Pairs)
async def _pairs(ctx: Ctx, sha256: str) -> _Pairs:
    return _Pairs(points=[])


def test_tuples_are_typed_per_position_and_digits_stay_in_parameter_names() -> None:
    document = build_openapi(_TINY)
    validate_spec(document)
    op = document["paths"]["/api/v1/pairs/{sha256}"]["get"]
    assert [(p["name"], p["in"]) for p in op["parameters"]] == [("sha256", "path")]
    pairs = document["components"]["schemas"]["_Pairs"]["properties"]
    pair = pairs["points"]["items"]
    assert pair["prefixItems"] == [{"type": "integer"}, {"type": "number"}]
    assert pair["minItems"] == pair["maxItems"] == 2 and pair["items"] is False
    assert pairs["names"] == {"type": "array", "items": {"type": "string"}}
    assert _conforms(document, pairs["points"], [[1796284536, 99.98]]) == []
    assert _conforms(document, pairs["points"], [[1.5, 99.98]])  # a float time is not an int
    assert _conforms(document, pairs["points"], [[1, 2.0, 3]])  # a pair has two entries


async def test_metric_points_the_server_sends_match_the_document(
    admin: AsyncClient, app: Quart, master: Master
) -> None:
    node = await admin.plan_node("metrics-host")
    now = time.time()
    for second in range(5):
        master.fleet.store.add(f"node:{node.id}", {"cpu": 12.5 + second / 3}, now - 5 + second)
    async with _http(app, await _admin_token(admin)) as http:
        answer = await http.get(
            "/metrics/query", params={"target": f"node:{node.id}", "metric": "cpu"}
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert any(isinstance(n, float) and not n.is_integer() for n in _numbers(body)), body
    schema = _op(_DOC, "GET", "/metrics/query")["responses"]["200"]["content"]
    assert _conforms(_DOC, schema["application/json"]["schema"], body) == []


# --- statuses --------------------------------------------------------------------------------


async def test_statuses_picked_at_run_time_are_documented(
    admin: AsyncClient, app: Quart, make_zip: Any
) -> None:
    # A second upload of the same zip changes nothing: 200, not 201.
    zip_bytes = make_zip()
    async with _http(app, await _admin_token(admin)) as http:
        first = await http.post(
            "/packages", content=zip_bytes, headers={"Content-Type": "application/zip"}
        )
        again = await http.post(
            "/packages", content=zip_bytes, headers={"Content-Type": "application/zip"}
        )
        assert (first.status_code, again.status_code) == (201, 200)
        for answer in (first, again):
            assert _documented(_DOC, "POST", "/packages", answer.status_code)

        # A node without a worker: the change is recorded, applied when it connects (202).
        node = await admin.plan_node("later-host")
        system = await admin.create_system("s202")
        module = await admin.create_module(system.id, "m", "demo", "1.0.0")
        deployed = await http.post("/instances", json={"module_id": module.id, "node_id": node.id})
        assert deployed.status_code == 202
        assert _documented(_DOC, "POST", "/instances", 202)
        instance_id = deployed.json()["id"]
        for action in ("start", "stop"):
            answer = await http.post(f"/instances/{instance_id}/{action}")
            assert answer.status_code == 202
            assert _documented(_DOC, "POST", f"/instances/{{instance_id}}/{action}", 202)


async def test_login_throttling_is_a_documented_429_with_retry_after(
    app: Quart, master: Master
) -> None:
    async with _http(app) as http:
        for _ in range(master.settings.auth.login_attempts):
            wrong = await http.post("/auth/login", json={"username": "admin", "password": "no"})
            assert wrong.status_code == 401
        throttled = await http.post(
            "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
    assert throttled.status_code == 429
    retry_after = int(throttled.headers["Retry-After"])
    assert 1 <= retry_after <= master.settings.auth.login_window + 1
    assert throttled.json()["error"]["details"]["retry_after"] == retry_after
    documented = _op(_DOC, "POST", "/auth/login")["responses"]["429"]
    assert documented["headers"]["Retry-After"]["required"] is True
    assert (
        _conforms(_DOC, documented["content"]["application/json"]["schema"], throttled.json()) == []
    )


async def test_app_wide_statuses_are_documented_with_the_error_schema(
    admin: AsyncClient, app: Quart
) -> None:
    viewer = await token_for(admin, app, "viewer")
    error = {"$ref": "#/components/schemas/Error"}
    async with (
        _http(app) as anonymous,
        _http(app, viewer) as http,
        _http(app, await _admin_token(admin)) as root,
    ):
        answers = [
            ("GET", "/systems", await anonymous.get("/systems")),  # 401
            ("POST", "/systems", await http.post("/systems", json={"name": "x"})),  # 403
            ("GET", "/systems/{system_id}", await http.get("/systems/nope")),  # 404
            ("POST", "/systems", await root.post("/systems", json={"name": "bad/name"})),  # 422
            (
                "POST",
                "/systems",
                await root.post(
                    "/systems", content=b"{", headers={"Content-Type": "application/json"}
                ),
            ),  # 400
            (
                "POST",
                "/systems",
                await root.post(
                    "/systems",
                    content=b"{}",
                    headers={"Content-Type": "application/json", "Content-Length": str(9 << 20)},
                ),
            ),  # 413
            ("GET", "/audit", await root.get("/audit", params={"limit": "0"})),  # 422
            ("DELETE", "/nodes/{node_id}", await root.delete("/nodes/x", params={"force": "?"})),
        ]
    statuses = [answer.status_code for _, _, answer in answers]
    assert statuses == [401, 403, 404, 422, 400, 413, 422, 422]
    for method, path, answer in answers:
        assert _documented(_DOC, method, path, answer.status_code), (method, path, answer)
        assert _conforms(_DOC, error, answer.json()) == [], answer.text


def test_every_declared_error_has_a_response_with_the_error_schema() -> None:
    for endpoint in api.endpoints:
        op = _op(_DOC, endpoint.method, openapi_path(endpoint.path))
        for status in endpoint.errors():
            content = op["responses"][str(status)]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Error"}


# --- limits ----------------------------------------------------------------------------------


def _request_models() -> list[type]:
    bodies = {e.body for e in api.endpoints if e.body is not None}
    found: list[type] = []
    todo = list(bodies)
    while todo:  # and the models nested in them (AdoptionSpec in ModuleCreate ...)
        cls = todo.pop()
        if cls in found:
            continue
        found.append(cls)
        todo += [
            f.type for f in attrs.fields(cls) if isinstance(f.type, type) and attrs.has(f.type)
        ]
    return found


def test_every_check_of_a_request_model_is_in_its_schema() -> None:
    """The validator and the document read the same Check: no limit is prose only."""
    components = _DOC["components"]["schemas"]
    checked = 0
    for cls in _request_models():
        properties = components[cls.__name__]["properties"]
        for field in attrs.fields(cls):
            if not isinstance(field.validator, Check):
                continue
            checked += 1
            prop = properties[field.name]
            branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
            expected = {k: v for k, v in field.validator.schema().items() if k != "description"}
            for branch in branches:
                assert expected.items() <= branch.items(), (cls.__name__, field.name, branch)
    assert checked >= 25  # names, passwords, ranges, patterns across the request bodies


@pytest.mark.parametrize(
    ("model", "field", "bad"),
    [
        (models.SystemCreate, "name", "no/slashes"),
        (models.UserCreate, "username", " space"),
        (models.UserCreate, "password", "short"),
        (models.TokenCreate, "name", "   "),
        (models.TokenCreate, "expires_in_days", 0),
        (models.NodePatch, "alias", "a" * 101),
        (models.NodePatch, "labels", {"bad key": "v"}),
        (models.ModuleCreate, "env", {"1PORT": "8000"}),
        (alerts.AlertRule, "metric", "nonsense"),
        (alerts.AlertRule, "for_seconds", -1.0),
        (alerts.ReceiverCreate, "url", "ftp://x"),
        (alerts.SilenceCreate, "matchers", []),
        (backups.BackupSchedule, "retention", 0),
        (batches.BatchRequest, "concurrency", 0),
        (commands.CommandRequest, "command", " \t"),
        (AdoptionSpec, "stop_timeout", 0.0),
    ],
)
def test_what_the_validator_refuses_the_schema_refuses_too(
    model: type, field: str, bad: Any
) -> None:
    schema = _DOC["components"]["schemas"][model.__name__]["properties"][field]
    assert _conforms(_DOC, schema, bad), f"the document accepts {bad!r} for {field}"
    check = attrs.fields_dict(model)[field].validator
    assert isinstance(check, Check)
    with pytest.raises(ValueError, match=field):
        check.validate(bad, f"$.{field}")


async def test_query_limits_are_declared_and_enforced(admin: AsyncClient, app: Quart) -> None:
    params = {p["name"]: p["schema"] for p in _op(_DOC, "GET", "/audit")["parameters"]}
    assert params["limit"] == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
    status = {p["name"]: p["schema"] for p in _op(_DOC, "GET", "/nodes")["parameters"]}["status"]
    assert status["enum"] == ["online", "offline", "pending", "planned"]
    async with _http(app, await _admin_token(admin)) as http:
        for path, query in (
            ("/audit", {"limit": "1001"}),
            ("/audit", {"limit": ""}),  # empty is a value, and no integer
            ("/audit", {"since": "yesterday"}),
            ("/nodes", {"status": "asleep"}),
            ("/metrics/query", {"target": "host:1", "metric": "cpu"}),
            ("/alerts/silences", {"expired": "perhaps"}),
        ):
            answer = await http.get(path, params=query)
            assert answer.status_code == 422, (path, query, answer.text)
            name = next(iter(query)) if path != "/metrics/query" else "target"
            assert answer.json()["error"]["details"][0]["path"] == f"query.{name}"
        ok = await http.get("/audit", params={"limit": "1000", "since": "2020-01-01T00:00:00Z"})
        assert ok.status_code == 200


def test_handlers_read_query_parameters_only_through_their_declaration() -> None:
    """``request.args`` in a handler would be a parameter the document does not show."""
    for path in sorted((Path(__file__).parents[2] / "gdos_master" / "api").glob("*.py")):
        assert "request.args" not in path.read_text(), path


# --- links ----------------------------------------------------------------------------------


async def test_links_chain_a_create_into_the_operations_on_what_it_created(
    admin: AsyncClient, app: Quart
) -> None:
    links = _op(_DOC, "POST", "/systems")["responses"]["201"]["links"]
    assert links["get_system"] == {
        "operationId": "get_system",
        "parameters": {"system_id": "$response.body#/id"},
    }
    assert {"patch_system", "delete_system", "create_module"} <= set(links)
    token_links = _op(_DOC, "POST", "/tokens")["responses"]["201"]["links"]
    assert token_links["revoke_token"]["parameters"] == {"token_id": "$response.body#/token/id"}
    module_links = _op(_DOC, "POST", "/systems/{system_id}/modules")["responses"]["201"]["links"]
    assert module_links["get_module"]["parameters"] == {"module_id": "$response.body#/id"}

    async with _http(app, await _admin_token(admin)) as http:
        created = await http.post("/systems", json={"name": "linked"})
        pointer = links["get_system"]["parameters"]["system_id"].split("#", 1)[1]
        value: Any = created.json()
        for part in pointer.strip("/").split("/"):
            value = value[part]
        fetched = await http.get(f"/systems/{value}")
    assert fetched.status_code == 200 and fetched.json()["name"] == "linked"


# --- server bugs the fuzzer found --------------------------------------------------------------


async def test_nan_in_a_json_body_is_a_400_and_stores_nothing(
    admin: AsyncClient, app: Quart, master: Master
) -> None:
    async with _http(app, await _admin_token(admin)) as http:
        answer = await http.post(
            "/alerts/rules",
            content=b'{"name": "n", "metric": "cpu", "threshold": NaN}',
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 400
        assert "NaN" in answer.json()["error"]["message"]
        rules = await http.get("/alerts/rules")
    assert all(rule["name"] != "n" for rule in rules.json())


async def test_renaming_a_receiver_to_a_taken_name_is_a_conflict(
    admin: AsyncClient, app: Quart
) -> None:
    async with _http(app, await _admin_token(admin)) as http:
        first = await http.post(
            "/alerts/receivers", json={"name": "a", "url": "http://10.255.255.1/hook"}
        )
        second = await http.post(
            "/alerts/receivers", json={"name": "b", "url": "http://10.255.255.1/hook"}
        )
        renamed = await http.patch(f"/alerts/receivers/{second.json()['id']}", json={"name": "a"})
        assert renamed.status_code == 409, renamed.text
        assert _documented(_DOC, "PATCH", "/alerts/receivers/{receiver_id}", 409)
        same = await http.patch(f"/alerts/receivers/{first.json()['id']}", json={"name": "a"})
        assert same.status_code == 200


async def test_a_method_a_path_does_not_have_is_a_405_that_names_the_allowed_ones(
    app: Quart,
) -> None:
    async with _http(app) as http:
        answer = await http.request("TRACE", "/systems")
        wrong = await http.put("/systems/some-id/start")
    for refused, allowed in ((answer, {"GET", "POST"}), (wrong, {"POST"})):
        assert refused.status_code == 405
        assert allowed <= {m.strip() for m in refused.headers["Allow"].split(",")}
        assert refused.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("/alerts/rules", {"name": "r", "metric": "cpu", "receivers": {}}, ["$.receivers"]),
        ("/commands", {"node_ids": "abc", "command": "ls"}, ["$.node_ids"]),
        ("/nodes", {"hostname": "h", "labels": [["a", "b"]]}, ["$.labels"]),
        (  # a time is an ISO 8601 string, as documented; false was read as 1970
            "/alerts/silences",
            {"matchers": [{"label": "a", "value": "b"}], "ends_at": 4e9, "starts_at": False},
            ["$.ends_at", "$.starts_at"],
        ),
    ],
)
async def test_a_collection_or_time_of_the_wrong_kind_is_refused_not_converted(
    admin: AsyncClient, app: Quart, path: str, body: dict[str, Any], fields: list[str]
) -> None:
    """cattrs alone read {} as [] and "abc" as ["a", "b", "c"]; the document says array."""
    async with _http(app, await _admin_token(admin)) as http:
        answer = await http.post(path, json=body)
    assert answer.status_code == 422, answer.text
    assert [d["path"] for d in answer.json()["error"]["details"]] == fields


async def test_api_paths_never_fall_through_to_the_console(app: Quart) -> None:
    """The console serves every other path; under /api/ a wrong method is a 405, not a 404."""
    async with _http(app) as http:
        post_only = await http.get("/auth/login")
        unknown = await http.get("/no/such/thing")
        socket = await http.get("/live")
    assert post_only.status_code == 405 and "POST" in post_only.headers["Allow"]
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "no route GET /api/v1/no/such/thing"
    assert socket.status_code == 400 and "WebSocket" in socket.json()["error"]["message"]
