"""An in-process master (real SQLite file, real local storage) driven through the SDK client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from quart import Quart

from gdos_master.app import Master, create_app
from gdos_sdk.client import AsyncClient
from gdos_sdk.config import MasterAuth, MasterServer, MasterSettings

ADMIN_PASSWORD = "admin-password-1"


@pytest.fixture
def settings(tmp_path: Path) -> MasterSettings:
    return MasterSettings(
        server=MasterServer(data_dir=str(tmp_path / "data")),
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
