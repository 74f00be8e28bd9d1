"""The credential cache (issue 15, item 7): fewer database reads, revocation still immediate.

Every API request used to hash its credential and read the database. What a credential
resolves to is now kept while the database is unchanged; any write (a revoked token, a
role change, a disabled user, a logout, a deleted node) makes the next request read it
again.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from quart import Quart

from gdos_master.app import Master
from gdos_master.auth import Principal
from gdos_master.db import Database
from gdos_sdk.client import AsyncClient
from gdos_sdk.errors import AuthError, PermissionDenied
from gdos_sdk.models import Role

from ..master.conftest import client_for, statements_run

pytestmark = pytest.mark.anyio


async def test_a_token_is_read_once_then_served_from_the_cache(
    admin: AsyncClient, app: Quart, master: Master
) -> None:
    secret = (await admin.create_token("ci", role="viewer")).secret
    async with client_for(app, secret) as ci:
        await ci.list_nodes()  # read and cached
        with statements_run(master.db) as reads:
            for _ in range(5):
                await ci.list_nodes()
            assert not [s for s in reads if "api_tokens" in s], reads
            assert master.credentials.hits >= 5
            master.credentials.clear()  # without the cache, the token is read
            await ci.list_nodes()
            assert len([s for s in reads if "api_tokens" in s]) == 1, reads


async def test_revoking_a_cached_token_ends_it_at_the_next_request(
    admin: AsyncClient, app: Quart
) -> None:
    created = await admin.create_token("ci", role="operator")
    async with client_for(app, created.secret) as ci:
        for _ in range(3):
            await ci.list_nodes()
        await admin.revoke_token(created.token.id)
        with pytest.raises(AuthError):
            await ci.list_nodes()


async def test_a_role_taken_away_applies_to_a_cached_token_at_once(
    admin: AsyncClient, app: Quart
) -> None:
    user = await admin.create_user("olga", "password-1234", "operator")
    async with client_for(app) as olga:
        await olga.login("olga", "password-1234")
        secret = (await olga.create_token("t")).secret
    async with client_for(app, secret) as token:
        assert (await token.me()).user.role == Role.OPERATOR
        await token.create_system("s1")  # an operator's right, served from the cache next
        await admin.update_user(user.id, role="viewer")
        with pytest.raises(PermissionDenied):
            await token.create_system("s2")
        await admin.update_user(user.id, disabled=True)
        with pytest.raises(AuthError):
            await token.list_nodes()


async def test_a_cached_session_ends_at_logout(admin: AsyncClient, app: Quart) -> None:
    await admin.create_user("pia", "password-1234", "viewer")
    async with client_for(app) as pia, client_for(app) as replay:
        await pia.login("pia", "password-1234")
        await pia.list_nodes()
        cookies = dict(pia._http.cookies)  # type: ignore[attr-defined]
        assert "gdos_session" in cookies
        replay._http.cookies.update(cookies)  # type: ignore[attr-defined]
        await replay.list_nodes()  # the same session, from the cache
        await pia.logout()
        with pytest.raises(AuthError):
            await replay.list_nodes()


async def test_a_deleted_users_cached_token_is_refused_at_once(
    admin: AsyncClient, app: Quart
) -> None:
    user = await admin.create_user("dora", "password-1234", "viewer")
    async with client_for(app) as dora:
        await dora.login("dora", "password-1234")
        secret = (await dora.create_token("t")).secret
    async with client_for(app, secret) as token:
        for _ in range(3):
            await token.list_nodes()  # cached
        await admin.delete_user(user.id)
        with pytest.raises(AuthError):
            await token.list_nodes()


async def test_a_bad_bearer_token_is_refused_even_beside_a_good_session(
    admin: AsyncClient, app: Quart
) -> None:
    # Cookies are read only when no bearer token is sent: a wrong token must not fall back
    # to the browser's session, cached or not.
    await admin.list_nodes()  # the admin's session, cached
    cookies = dict(admin._http.cookies)  # type: ignore[attr-defined]
    async with client_for(app, "gdos_not-a-real-token") as mixed:
        mixed._http.cookies.update(cookies)  # type: ignore[attr-defined]
        with pytest.raises(AuthError):
            await mixed.list_nodes()


def test_an_entry_expires_and_any_write_empties_the_cache(db_url: str, tmp_path: Path) -> None:
    from gdos_master.auth import CredentialCache  # here: the tests above run on older code

    db = Database.open(sqlite_path=tmp_path / "ops.db", url=db_url)
    try:
        cache = CredentialCache()
        principal = Principal(kind="token", role=Role.VIEWER, user_id="u")
        assert cache.get(db, "k", now=100.0) is None
        cache.put(db, "k", principal, expires=200.0)
        assert cache.get(db, "k", now=150.0) is principal
        assert cache.get(db, "k", now=201.0) is None  # the token's own expiry
        cache.put(db, "k", principal, expires=None)
        db.all("SELECT * FROM api_tokens")  # reads keep it
        assert cache.get(db, "k", now=150.0) is principal
        db.set_kv("anything", "changed")  # e.g. a revocation
        assert cache.get(db, "k", now=150.0) is None
        # Read while a write was under way, then the write rolled back: not kept.
        with contextlib.suppress(RuntimeError), db.transaction():
            db.execute("UPDATE users SET role = 'viewer'")
            db.set_kv("other", "x")
            assert cache.get(db, "k", now=150.0) is None
            cache.put(db, "k", principal, expires=None)
            raise RuntimeError("roll back")
        assert cache.get(db, "k", now=150.0) is None
    finally:
        db.close()
