"""Browser tests: Debian's Chromium, driven by Playwright, against real master and worker processes.

The console must be built (``nox -s web``) into ``gdos_master/static``. Outside CI a missing
Chromium or a missing build skips these tests; in CI (``CI`` set) they run and fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from gdos_sdk.testing import LocalCluster

HERE = Path(__file__).parent
CHROMIUM = os.environ.get("GDOS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
STATIC = HERE.parents[1] / "gdos_master" / "static" / "index.html"
VIEWPORT = {"width": 1280, "height": 800}


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    if not STATIC.is_file():
        return "the web console is not built (nox -s web)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing()
    if reason is None or os.environ.get("CI"):
        return
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: Playwright's sync API runs an event loop in this thread
    # while it is open, which the async tests of later modules must not find running.
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A master with one connected worker, shared by a module's tests; always stopped."""
    local = LocalCluster(tmp_path_factory.mktemp("browser") / "cluster")
    try:
        local.start_master()
        local.start_worker()
        yield local
    finally:
        local.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) at 1280 x 800; fails the test on a JS error or
    on anything the master's Content-Security-Policy blocked (the console must work under it).
    """
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(20_000)
    tab = context.new_page()
    errors: list[str] = []
    blocked: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on(
        "console",
        lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not blocked, f"the Content-Security-Policy blocked: {blocked}"


def login(page: Page, url: str, password: str, user: str = "admin") -> None:
    """Log in through the form and wait for the dashboard."""
    page.goto(f"{url}/login")
    page.fill("[data-test=login-username]", user)
    page.fill("[data-test=login-password]", password)
    page.click("[data-test=login-submit]")
    page.wait_for_selector("[data-test=nodes-card]")
