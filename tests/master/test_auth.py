"""Authentication, roles, CSRF, tokens and the login rate limit."""

from __future__ import annotations

import httpx
import pytest
from quart import Quart

from gdos_master.api import api
from gdos_master.app import Master
from gdos_sdk import AuthError, PermissionDenied, RateLimitedError, ValidationError
from gdos_sdk.client import AsyncClient
from gdos_sdk.models import Role

from .conftest import ADMIN_PASSWORD, client_for, token_for

pytestmark = pytest.mark.anyio


async def test_first_start_creates_one_admin_with_the_configured_password(
    admin: AsyncClient, master: Master
) -> None:
    me = await admin.me()
    assert me.user.username == "admin" and me.user.role == Role.ADMIN
    assert me.auth == "session" and me.csrf_token
    assert master.initial_password is None  # configured: nothing to print
    stored = master.db.scalar("SELECT password_hash FROM users")
    assert ADMIN_PASSWORD not in stored and stored.startswith("scrypt$")


async def test_random_admin_password_is_returned_once(tmp_path, db_url: str) -> None:
    from gdos_master.app import build_master
    from gdos_sdk.config import MasterDatabase, MasterServer, MasterSettings

    settings = MasterSettings(
        server=MasterServer(data_dir=str(tmp_path)), database=MasterDatabase(url=db_url)
    )
    first = build_master(settings)
    assert first.initial_password and len(first.initial_password) >= 12
    await first.close()
    second = build_master(settings)
    assert second.initial_password is None  # printed once only
    await second.close()


async def test_every_route_but_login_and_health_needs_credentials(app: Quart) -> None:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://m") as http:
        for endpoint in api.endpoints:
            path = "/api/v1" + endpoint.path.replace("<", "").replace(">", "")
            response = await http.request(endpoint.method, path)
            if endpoint.operation_id in {"login", "health"}:
                assert response.status_code != 401, path
                continue
            assert response.status_code == 401, (endpoint.method, path, response.text)
            assert response.json()["error"]["code"] == "unauthenticated"


async def test_viewer_gets_403_on_every_mutating_route(
    admin: AsyncClient, app: Quart, master: Master
) -> None:
    token = await token_for(admin, app, "viewer")
    before = master.db.scalar("SELECT COUNT(*) FROM systems")
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://m", headers=headers) as http:
        checked = 0
        for endpoint in api.endpoints:
            if endpoint.method == "GET" or endpoint.role in (None, Role.VIEWER) or endpoint.agent:
                continue
            path = "/api/v1" + endpoint.path.replace("<", "").replace(">", "")
            response = await http.request(endpoint.method, path, json={})
            assert response.status_code == 403, (endpoint.method, path, response.text)
            assert "role" in response.json()["error"]["message"]
            checked += 1
        assert checked >= 20
    assert master.db.scalar("SELECT COUNT(*) FROM systems") == before
    denied = master.db.all("SELECT * FROM audit WHERE status = 403")
    assert len(denied) == checked  # each refusal is on the audit trail


async def test_operator_can_act_but_not_govern(admin: AsyncClient, app: Quart) -> None:
    token = await token_for(admin, app, "operator")
    async with client_for(app, token) as op:
        system = await op.create_system("billing")
        assert system.name == "billing"
        with pytest.raises(PermissionDenied):
            await op.create_user("x", "password-123", "viewer")
        with pytest.raises(PermissionDenied):
            await op.get_settings()


async def test_session_mutations_need_the_csrf_header(app: Quart) -> None:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://m") as http:
        login = await http.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200
        assert "httponly" in login.headers["set-cookie"].lower()
        csrf = login.json()["csrf_token"]
        refused = await http.post("/api/v1/systems", json={"name": "a"})
        assert refused.status_code == 403
        assert "X-CSRF-Token" in refused.json()["error"]["message"]
        accepted = await http.post(
            "/api/v1/systems", json={"name": "a"}, headers={"X-CSRF-Token": csrf}
        )
        assert accepted.status_code == 201


async def test_wrong_password_and_rate_limit(app: Quart, master: Master) -> None:
    async with client_for(app) as client:
        for _ in range(master.settings.auth.login_attempts):
            with pytest.raises(AuthError):
                await client.login("admin", "nope")
        with pytest.raises(RateLimitedError):
            await client.login("admin", ADMIN_PASSWORD)  # even the right one, for a while
    failures = master.db.all("SELECT * FROM audit WHERE action = 'auth.login' AND result = 'error'")
    assert len(failures) == master.settings.auth.login_attempts + 1
    assert all("nope" not in row["params"] for row in failures)


async def test_login_audit_entry_names_the_user(app: Quart, master: Master) -> None:
    async with client_for(app) as client:
        with pytest.raises(AuthError):
            await client.login("admin", "wrong-password")
        await client.login("admin", ADMIN_PASSWORD)
    rows = master.db.all(
        "SELECT actor_kind, actor, target, result FROM audit"
        " WHERE action = 'auth.login' ORDER BY id"
    )
    assert [dict(row) for row in rows] == [
        {"actor_kind": "anonymous", "actor": "", "target": "user:admin", "result": "error"},
        {"actor_kind": "session", "actor": "admin", "target": "user:admin", "result": "ok"},
    ]


async def test_token_lifecycle_secret_shown_once(
    admin: AsyncClient, app: Quart, master: Master
) -> None:
    created = await admin.create_token("ci", role="viewer")
    assert created.secret.startswith("gdos_")
    listed = await admin.list_tokens()
    assert created.secret not in repr(listed)
    assert (
        master.db.scalar("SELECT COUNT(*) FROM api_tokens WHERE secret_hash = ?", (created.secret,))
        == 0
    )  # stored hashed
    async with client_for(app, created.secret) as ci:
        assert (await ci.me()).user.role == Role.VIEWER
        await admin.revoke_token(created.token.id)
        with pytest.raises(AuthError):
            await ci.me()
    audit_text = " ".join(r["params"] for r in master.db.all("SELECT params FROM audit"))
    assert created.secret not in audit_text


async def test_token_cannot_exceed_owner_role(admin: AsyncClient, app: Quart) -> None:
    token = await token_for(admin, app, "viewer")
    async with client_for(app, token) as viewer:
        with pytest.raises((ValidationError, PermissionDenied)):
            await viewer.create_token("escalate", role="admin")


async def test_last_admin_cannot_be_removed(admin: AsyncClient) -> None:
    me = await admin.me()
    from gdos_sdk import ConflictError

    with pytest.raises(ConflictError):
        await admin.update_user(me.user.id, role="viewer")


async def test_password_change_ends_sessions(admin: AsyncClient, app: Quart) -> None:
    user = await admin.create_user("alice", "password-1234", "operator")
    async with client_for(app) as alice:
        await alice.login("alice", "password-1234")
        await admin.update_user(user.id, password="password-5678")
        with pytest.raises(AuthError):
            await alice.me()
