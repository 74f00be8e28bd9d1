"""Finding 15 (passwords): OWASP's scrypt cost with rehash on login; a generated first-admin
password must be changed before anything else.

Before the fix hashes used N=2^14 and the first admin's printed password stayed valid forever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from quart import Quart
from quart.testing.connections import WebsocketResponseError

from gdos_master.app import Master, create_app
from gdos_master.security import hash_password, verify_password
from gdos_sdk.client import AsyncClient
from gdos_sdk.config import MasterAuth, MasterDatabase, MasterServer, MasterSettings
from gdos_sdk.errors import PasswordChangeRequired, ValidationError

from ..master.conftest import ADMIN_PASSWORD, client_for

pytestmark = pytest.mark.anyio


def test_hashes_use_owasps_scrypt_cost() -> None:
    assert MasterAuth().password_cost == 17
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$131072$8$1$")  # N=2^17, r=8, p=1
    assert verify_password("correct horse battery", stored)
    assert not verify_password("wrong horse battery", stored)


async def test_an_older_hash_still_verifies_and_is_redone_at_login(
    tmp_path: Path, db_url: str
) -> None:
    settings = MasterSettings(
        server=MasterServer(data_dir=str(tmp_path / "data")),
        database=MasterDatabase(url=db_url),
        auth=MasterAuth(admin_password=ADMIN_PASSWORD, password_cost=15),
    )
    app = create_app(settings)
    async with app.test_app():
        master: Master = app.extensions["gdos"]
        # What a master before this change stored: N=2^14.
        master.db.execute(
            "UPDATE users SET password_hash = ? WHERE username = 'admin'",
            (hash_password(ADMIN_PASSWORD, cost=14),),
        )
        async with client_for(app) as client:
            await client.login("admin", ADMIN_PASSWORD)
        stored = master.db.scalar("SELECT password_hash FROM users WHERE username = 'admin'")
        assert stored.startswith(f"scrypt${2**15}$8$1$")
        async with client_for(app) as client:
            await client.login("admin", ADMIN_PASSWORD)  # the new hash works too


@pytest.fixture
async def fresh(tmp_path: Path, db_url: str) -> AsyncIterator[Quart]:
    """A first start without a configured admin password: one is generated."""
    settings = MasterSettings(
        server=MasterServer(data_dir=str(tmp_path / "data")),
        database=MasterDatabase(url=db_url),
        auth=MasterAuth(password_cost=14),
    )
    app = create_app(settings)
    async with app.test_app():
        yield app


async def test_a_generated_admin_password_must_be_changed_first(fresh: Quart) -> None:
    master: Master = fresh.extensions["gdos"]
    printed = master.initial_password
    assert printed
    async with client_for(fresh) as admin:
        me = await admin.login("admin", printed)  # logging in works
        assert me.user.must_change_password is True
        assert (await admin.me()).user.must_change_password is True
        with pytest.raises(PasswordChangeRequired) as refused:
            await admin.list_nodes()
        assert refused.value.status == 403
        assert "/auth/password" in refused.value.message
        with pytest.raises(PasswordChangeRequired):
            await admin.create_token("sneaky")
        # The live channel is refused too.
        client = fresh.test_client()
        login = await client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": printed}
        )
        assert login.status_code == 200
        with pytest.raises(WebsocketResponseError) as socket:
            async with client.websocket(
                "/api/v1/live", headers={"Origin": "http://localhost"}
            ) as ws:
                await ws.receive()
        assert socket.value.response.status_code == 403

        with pytest.raises(ValidationError) as wrong:
            await admin.change_password("not-the-password", "a-new-long-password")
        assert wrong.value.details[0]["path"] == "$.current_password"
        with pytest.raises(ValidationError) as short:
            await admin.change_password(printed, "short")
        assert short.value.details[0]["path"] == "$.new_password"

        changed = await admin.change_password(printed, "a-new-long-password")
        assert changed.user.must_change_password is False
        assert changed.auth == "session" and changed.csrf_token
        assert (await admin.list_nodes()) == []  # the same client goes on, with a new session
        await admin.create_token("now-fine")
    # The other session (the test client's) ended with the change.
    assert (await client.get("/api/v1/auth/me")).status_code == 401
    async with client_for(fresh) as again:
        with pytest.raises(Exception, match="wrong username or password"):
            await again.login("admin", printed)
        me = await again.login("admin", "a-new-long-password")
        assert me.user.must_change_password is False
    params = master.db.all("SELECT params FROM audit WHERE action = 'auth.password'")
    assert params and all(
        printed not in row["params"] and "a-new-long-password" not in row["params"]
        for row in params
    )
    # Each login names the user who logged in, also before the generated password is changed.
    logins = master.db.all(
        "SELECT actor_kind, actor, result FROM audit WHERE action = 'auth.login' ORDER BY id"
    )
    assert [tuple(row) for row in logins] == [
        ("session", "admin", "ok"),
        ("session", "admin", "ok"),
        ("anonymous", "", "error"),
        ("session", "admin", "ok"),
    ]


async def test_a_configured_admin_password_is_not_forced(admin: AsyncClient) -> None:
    me = await admin.me()
    assert me.user.must_change_password is False
    await admin.list_nodes()


async def test_a_token_can_change_its_owners_password_and_sessions_end(
    admin: AsyncClient, app: Quart
) -> None:
    created = await admin.create_token("script")
    async with client_for(app, created.secret) as script:
        me = await script.change_password(ADMIN_PASSWORD, "another-long-password")
        assert me.auth == "token" and me.csrf_token is None
        await script.list_nodes()  # the token stays valid
    with pytest.raises(Exception, match="session expired"):
        await admin.me()  # the browser-style session ended


async def test_text_plain_password_change_is_refused(admin: AsyncClient, app: Quart) -> None:
    token = (await admin.create_token("t")).secret
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://m/api/v1") as http:
        response = await http.post(
            "/auth/password",
            content=b'{"current_password": "admin-password-1", "new_password": "x-long-one!"}',
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
        )
    assert response.status_code == 415
