"""Settings page: the join token is not shown (the master keeps its hash); rotating shows
the new one once, and a worker joins with it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from gdos_sdk.testing import LocalCluster

from ..security.agents import HandAgent
from .conftest import login


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A master that made its own join token (none configured)."""
    local = LocalCluster(tmp_path_factory.mktemp("browser-settings") / "cluster")
    try:
        local.start_master(env={"OPS_MASTER_AUTH_JOIN_TOKEN": ""})
        yield local
    finally:
        local.close()


def test_rotating_shows_the_new_join_token_once(page: Page, cluster: LocalCluster) -> None:
    login(page, cluster.url, cluster.admin_password)
    page.goto(f"{cluster.url}/settings")
    command = page.locator("[data-test=worker-command]")
    expect(command).to_contain_text("-join_token <join token>")
    expect(page.locator("[data-test=token-note]")).to_contain_text("keeps only a hash")
    expect(page.locator("[data-test=copy-command]")).to_be_disabled()

    page.click("[data-test=rotate-token]")
    page.locator(".el-message-box__btns button", has_text="Rotate join token").click()
    expect(page.locator("[data-test=token-note]")).to_contain_text("shown this once")
    expect(command).to_contain_text("•" * 16)  # hidden until asked
    page.get_by_role("button", name="Show token").click()
    found = re.search(r"-join_token (\S+)$", command.inner_text().strip())
    assert found is not None and len(found.group(1)) >= 40
    token = found.group(1)

    cluster.join_token = token  # a worker joins with what the page showed
    agent = HandAgent(cluster, "joined-from-settings")
    try:
        assert agent.connect()["type"] == "welcome"
    finally:
        agent.close()

    page.reload()
    expect(command).to_contain_text("-join_token <join token>")
    assert token not in page.content()
