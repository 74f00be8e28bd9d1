"""The console's first login with a generated admin password: it must be changed first."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from gdos_sdk import Client
from gdos_sdk.testing import LocalCluster, wait_until


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, str]]:
    """A master whose first admin password was generated (and printed once)."""
    local = LocalCluster(tmp_path_factory.mktemp("first") / "cluster")
    try:
        master = local.start_master(env={"OPS_MASTER_AUTH_ADMIN_PASSWORD": ""})
        printed = wait_until(
            lambda: re.search(r"admin password: (\S+)", master.output()),
            timeout=10,
            what="the printed admin password",
        )
        yield local, printed.group(1)
    finally:
        local.close()


def test_the_console_asks_for_a_new_password_first(
    page: Page, generated: tuple[LocalCluster, str]
) -> None:
    cluster, printed = generated
    page.goto(f"{cluster.url}/nodes")
    page.fill("[data-test=login-username]", "admin")
    page.fill("[data-test=login-password]", printed)
    page.click("[data-test=login-submit]")
    form = page.locator("[data-test=change-password-form]")
    expect(form).to_be_visible()
    expect(form).to_contain_text("Choose your own password")
    # Another page of the console leads back here until the password is changed.
    page.goto(f"{cluster.url}/audit")
    expect(form).to_be_visible()
    expect(page.locator("[data-test=change-current]")).to_be_visible()  # a reload forgot it
    page.fill("[data-test=change-current]", printed)
    page.fill("[data-test=change-new]", "my-own-password-1")
    page.fill("[data-test=change-again]", "my-own-password-2")
    page.click("[data-test=change-submit]")
    expect(page.locator("[data-test=login-error]")).to_contain_text("differ")
    page.fill("[data-test=change-again]", "my-own-password-1")
    page.click("[data-test=change-submit]")
    page.wait_for_url(f"{cluster.url}/audit")
    expect(page.locator("[data-test=change-password-form]")).to_have_count(0)
    with Client(cluster.url) as gdos:
        assert gdos.login("admin", "my-own-password-1").user.must_change_password is False
