"""The web terminal page in Chromium: open from the nodes page, type, see output, replay."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from gdos_sdk.testing import LocalCluster

from .conftest import login


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Like conftest's, with a shell whose startup does not depend on this host's profile."""
    local = LocalCluster(tmp_path_factory.mktemp("browser-terminal") / "cluster")
    try:
        local.start_master()
        local.start_worker(env={"OPS_WORKER_TERMINAL_SHELL": "/bin/bash --noprofile --norc -i"})
        yield local
    finally:
        local.close()


def test_terminal_page_types_a_command_and_replays_it(page: Page, cluster: LocalCluster) -> None:
    login(page, cluster.url, cluster.admin_password)
    page.goto(f"{cluster.url}/nodes")
    page.click("[data-test=node-terminal]")
    expect(page.locator("[data-test=terminal-state]")).to_have_text("Connected", timeout=30_000)
    page.click("[data-test=terminal-screen]")
    page.keyboard.type("echo browser-$((3*4))")
    page.keyboard.press("Enter")
    screen = page.locator("[data-test=terminal-screen] .xterm-rows")
    expect(screen).to_contain_text("browser-12")

    page.keyboard.type("exit")
    page.keyboard.press("Enter")
    expect(page.locator("[data-test=terminal-state]")).to_contain_text("Session ended")
    page.get_by_role("button", name="Recording").click()
    replay = page.locator("[data-test=replay-screen] .xterm-rows")
    expect(replay).to_contain_text("browser-12", timeout=30_000)

    page.goto(f"{cluster.url}/audit")
    expect(page.locator("[data-test=audit-replay]").first).to_be_visible()
