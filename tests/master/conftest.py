"""An in-process master (real database, real local storage) driven through the SDK client.

Every test that uses it runs on both engines (``db_url``, tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Quart

from gdos_master.app import Master, create_app
from gdos_master.db import Database
from gdos_sdk.client import AsyncClient
from gdos_sdk.config import MasterAuth, MasterDatabase, MasterServer, MasterSettings

ADMIN_PASSWORD = "admin-password-1"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> MasterSettings:
    return MasterSettings(
        server=MasterServer(data_dir=str(tmp_path / "data")),
        database=MasterDatabase(url=db_url),
        # The cheapest accepted hash cost: these throw-away masters hash many passwords.
        auth=MasterAuth(
            admin_password=ADMIN_PASSWORD, join_token="join-token-for-tests", password_cost=14
        ),
    )


@pytest.fixture
async def app(settings: MasterSettings) -> AsyncIterator[Quart]:
    application = create_app(settings)
    async with application.test_app():
        yield application


@pytest.fixture
def master(app: Quart) -> Master:
    found: Master = app.extensions["gdos"]
    return found


def client_for(app: Quart, token: str | None = None) -> AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return AsyncClient("http://master.test", token=token, transport=transport)


@pytest.fixture
async def admin(app: Quart) -> AsyncIterator[AsyncClient]:
    async with client_for(app) as client:
        await client.login("admin", ADMIN_PASSWORD)
        yield client


async def token_for(admin: AsyncClient, app: Quart, role: str) -> str:
    """Create a user with ``role`` and return an API token of theirs."""
    await admin.create_user(f"user-{role}", "password-1234", role)
    async with client_for(app) as client:
        await client.login(f"user-{role}", "password-1234")
        return (await client.create_token("t")).secret


@contextlib.contextmanager
def statements_run(db: Database) -> Iterator[list[str]]:
    """The SQL statements the master runs through ``db`` inside the block, on either engine.

    Recorded at the facade, which every query of the master goes through; one call is
    one statement (``scalar`` reading through ``one`` is counted once).
    """
    statements: list[str] = []
    depth = 0

    def recorded(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def run(sql: str, *args: Any, **kwargs: Any) -> Any:
            nonlocal depth
            if not depth:
                statements.append(sql)
            depth += 1
            try:
                return method(sql, *args, **kwargs)
            finally:
                depth -= 1

        return run

    names = ("execute", "executemany", "insert", "one", "all", "scalar")
    for name in names:
        setattr(db, name, recorded(getattr(db, name)))
    try:
        yield statements
    finally:
        for name in names:
            delattr(db, name)  # the class's methods again
