"""Finding 14: security headers on every answer; JSON bodies only (no cross-site form login).

Before the fix no answer carried frame blocking, a CSP or HSTS, and a cross-site
``text/plain`` POST to ``/auth/login`` logged the browser in (it set the session cookie).
That the console works under its CSP is checked in Chromium: tests/browser/conftest.py fails
any browser test whose page reports a CSP violation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from quart import Quart

from gdos_master.app import STATIC_DIR, create_app
from gdos_master.headers import inline_script_hashes
from gdos_sdk.client import AsyncClient
from gdos_sdk.config import MasterAuth, MasterServer, MasterSettings

from ..master.conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.anyio


def _http(app: Quart) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://m")


def _assert_guarded(response: httpx.Response) -> str:
    headers = response.headers
    what = f"{response.request.method} {response.request.url.path} ({response.status_code})"
    assert headers.get("X-Frame-Options") == "DENY", what
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert headers.get("Referrer-Policy") == "no-referrer", what
    csp = headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp, what
    return csp


async def test_every_kind_of_answer_carries_the_headers(app: Quart, admin: AsyncClient) -> None:
    token = (await admin.create_token("t")).secret
    async with _http(app) as http:
        answers = [
            await http.get("/healthz"),
            await http.get("/api/v1/nodes"),  # 401
            await http.get("/api/v1/nodes", headers={"Authorization": f"Bearer {token}"}),
            await http.get("/api/v1/no-such-route"),  # 404
            await http.delete("/healthz"),  # 405
            await http.post("/api/v1/auth/login", json={"username": "x"}),  # 422
            await http.get("/metrics"),  # 401, outside /api
        ]
        for response in answers:
            csp = _assert_guarded(response)
            assert csp.startswith("default-src 'none'"), csp  # nothing in JSON may run
            assert "Strict-Transport-Security" not in response.headers  # plain HTTP
        page = await http.get("/nodes")  # a console route: index.html
        asset = next(STATIC_DIR.glob("assets/*.js"), None)
        if asset is not None:
            script = await http.get(f"/assets/{asset.name}")
            assert script.status_code == 200
            _assert_guarded(script)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    csp = _assert_guarded(page)
    assert "default-src 'self'" in csp and "object-src 'none'" in csp
    assert "connect-src 'self'" in csp and "'unsafe-eval'" not in csp
    # The inline theme script of the built index.html is allowed by its hash, nothing else.
    script_src = next(d for d in csp.split("; ") if d.startswith("script-src"))
    expected = inline_script_hashes(page.text)
    assert script_src == " ".join(["script-src", "'self'", *expected])
    assert "'unsafe-inline'" not in script_src


def test_inline_scripts_are_hashed_as_browsers_hash_them() -> None:
    html = "<head><script>\n  var a = 1\n</script><script type=module src=/x.js></script></head>"
    # sha256 of the exact text between the tags, base64 (CSP level 2)
    assert inline_script_hashes(html) == ["'sha256-Lx49XIxnmvmyfer5mDLZPLzH/B7ySIj3h5acVWW3eyE='"]


@pytest.fixture
async def tls_app(tmp_path: Path) -> AsyncIterator[Quart]:
    settings = MasterSettings(
        server=MasterServer(
            data_dir=str(tmp_path / "data"),
            tls_cert=str(tmp_path / "cert.pem"),  # only its presence matters in-process
            tls_key=str(tmp_path / "key.pem"),
        ),
        auth=MasterAuth(admin_password=ADMIN_PASSWORD, password_cost=14),
    )
    app = create_app(settings)
    async with app.test_app():
        yield app


async def test_a_tls_master_sends_hsts(tls_app: Quart) -> None:
    async with _http(tls_app) as http:
        for path in ("/", "/healthz", "/api/v1/nodes"):
            response = await http.get(path)
            assert response.headers["Strict-Transport-Security"] == "max-age=31536000", path
            _assert_guarded(response)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
)
async def test_a_cross_site_form_login_is_refused_without_a_cookie(
    app: Quart, content_type: str | None
) -> None:
    """What a page on another site can make a browser send without asking: no JSON type."""
    body = f'{{"username": "admin", "password": "{ADMIN_PASSWORD}"}}'
    headers = {"Origin": "https://evil.example"}
    if content_type:
        headers["Content-Type"] = content_type
    async with _http(app) as http:
        response = await http.post("/api/v1/auth/login", content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert "set-cookie" not in response.headers
    assert "application/json" in response.json()["error"]["message"]


async def test_json_with_a_charset_is_still_json(app: Quart) -> None:
    body = f'{{"username": "admin", "password": "{ADMIN_PASSWORD}"}}'
    async with _http(app) as http:
        response = await http.post(
            "/api/v1/auth/login",
            content=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
    assert response.status_code == 200 and "gdos_session=" in response.headers["set-cookie"]


async def test_the_middleware_keeps_what_the_app_set_and_leaves_no_log_context() -> None:
    """AnswerHeaders adds only missing security headers, always its own request id, and
    leaves the caller's log context as it found it (httpx's ASGI transport runs the app in
    the caller's task)."""
    from quart import Response

    from gdos_master.headers import AnswerHeaders, SecurityHeaders
    from gdos_sdk.logformat import current_log_context

    inner = Quart("inner")
    seen: list[str] = []

    @inner.get("/own")
    async def own() -> Response:
        seen.append(current_log_context()["request_id"])
        response = Response("{}", content_type="application/json")
        response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response.headers["X-Request-ID"] = "set-by-the-handler"
        return response

    inner.asgi_app = AnswerHeaders(inner.asgi_app, SecurityHeaders(console_csp="x"))  # type: ignore[method-assign]
    async with inner.test_app(), _http(inner) as http:
        answer = await http.get("/own", headers={"X-Request-ID": "edge-7"})
        other = await http.get("/nothing-here")
    assert answer.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert answer.headers.get_list("X-Request-ID") == ["edge-7"] and seen == ["edge-7"]
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    # Quart's own 404 page is HTML: it gets the console pages' policy, as index.html does.
    assert other.status_code == 404 and other.headers["Content-Security-Policy"] == "x"
    assert len(other.headers["X-Request-ID"]) == 16
    assert "request_id" not in current_log_context()
