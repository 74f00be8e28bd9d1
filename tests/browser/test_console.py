"""The operator's path through the console, by the UI alone, against real processes.

Log in; upload a package built by gdos-pack; create a system and a module; deploy to
the node; start; watch the instance run with its CPU chart gaining points; stop; find
those actions in the audit log; switch to Chinese; log out.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import Page, expect

from gdos_sdk.testing import LocalCluster, free_port

from ..conftest import write_service
from .conftest import login

SERVICE = Path(__file__).parents[1] / "e2e" / "services" / "http.py"


def build_package(tmp_path: Path) -> Path:
    """tests/e2e/services/http.py packed by the real gdos-pack."""
    folder = write_service(
        tmp_path / "src" / "http-1.0.0",
        {"name": "http", "version": "1.0.0", "entrypoint": "main.py"},
        {"main.py": SERVICE.read_text()},
        exec_files=("main.py",),
    )
    out = tmp_path / "http-1.0.0.zip"
    script = Path(sys.executable).with_name("gdos-pack")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "gdos_pack"]
    result = subprocess.run(
        [*argv, "build", str(folder), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


def choose(page: Page, select: str, option: str) -> None:
    """Pick an option of an Element Plus select (its list is rendered in a popper)."""
    page.click(select)
    page.locator(".el-select-dropdown__item:visible", has_text=option).first.click()


def points(page: Page, chart: str) -> int:
    return int(page.get_attribute(chart, "data-points") or 0)


def test_operator_path_through_the_console(
    page: Page, cluster: LocalCluster, tmp_path: Path
) -> None:
    url = cluster.url
    package = build_package(tmp_path)
    port = free_port()

    login(page, url, cluster.admin_password)
    expect(page.locator("[data-test=count-online]")).to_have_text("1")

    # Upload through the drop zone's file input; the progress bar reaches 100 %.
    page.click("[data-test=nav-packages]")
    page.set_input_files("[data-test=package-upload] input[type=file]", str(package))
    # (Its "100%" label turns into a check mark once the server answered, so the test
    # reads the bar's value and its success state, not the label.)
    progress = page.locator("[data-test=upload-progress]")
    expect(progress).to_have_attribute("aria-valuenow", "100")
    expect(progress).to_have_class(re.compile(r"\bis-success\b"))
    expect(page.locator("[data-test=packages-table]")).to_contain_text("http")
    expect(page.locator("[data-test=versions-table]")).to_contain_text("1.0.0")

    # A system with one module running that package.
    page.click("[data-test=nav-systems]")
    page.click("[data-test=new-system]")
    page.fill("[data-test=system-name]", "shop")
    page.click("[data-test=system-submit]")
    expect(page.locator("[data-test=system-shop]")).to_be_visible()
    page.click("[data-test=new-module]")
    page.fill("[data-test=module-name]", "web")
    choose(page, "[data-test=module-package]", "http")
    expect(page.locator("[data-test=module-version]")).to_contain_text("1.0.0")
    page.fill("[data-test=module-env]", f"PORT={port}")
    page.click("[data-test=module-submit]")
    module = page.locator("[data-test=module-web]")
    expect(module).to_contain_text("http@1.0.0")

    # Deploy without starting (the only online node is preselected), then start.
    module.locator("[data-test=deploy]").click()
    page.click("[data-test=deploy-start]")  # untick "start after deploying"
    page.click("[data-test=deploy-submit]")
    # (Element Plus also renders column templates once, hidden: look in the table body.)
    instances = module.locator("[data-test=instances-table] .el-table__body")
    expect(instances.locator("[data-state=stopped]")).to_be_visible()
    instances.locator("[data-test=instance-start]").click()
    expect(instances.locator("[data-state=running]")).to_be_visible()

    # Its charts gain a point a second, pushed over the live channel.
    instances.locator("[data-test=instance-chart]").click()
    chart = "[data-test=instance-cpu-chart]"
    # Arrow functions, not bare expressions: Playwright evaluates those with eval(), which
    # the console's Content-Security-Policy forbids.
    page.wait_for_function(
        f"() => document.querySelector('{chart}')?.dataset.points >= 2", timeout=15_000
    )
    before = points(page, chart)
    page.wait_for_function(
        f"() => document.querySelector('{chart}').dataset.points > {before}", timeout=15_000
    )
    expect(page.locator("[data-test=drawer-state] [data-state=running]")).to_be_visible()
    page.keyboard.press("Escape")

    instances.locator("[data-test=instance-stop]").click()
    expect(instances.locator("[data-state=stopped]")).to_be_visible()

    # Every step is in the audit log; filtering by action works on the server.
    page.click("[data-test=nav-audit]")
    table = page.locator("[data-test=audit-table]")
    for action in (
        "package.upload",
        "system.create",
        "module.create",
        "instance.deploy",
        "instance.start",
        "instance.stop",
    ):
        expect(table).to_contain_text(action)
    page.fill("[data-test=audit-action]", "instance.")
    page.click("[data-test=audit-search]")
    expect(table).not_to_contain_text("package.upload")
    expect(table).to_contain_text("instance.stop")

    # Chinese labels, remembered by the browser.
    page.click("[data-test=lang-toggle]")
    expect(page.locator("[data-test=nav-nodes]")).to_contain_text("节点")
    expect(page.locator("h1")).to_have_text("审计日志")
    page.reload()
    expect(page.locator("[data-test=nav-systems]")).to_contain_text("业务系统")

    # Log out: back on the login form, and the console needs a login again.
    page.click("[data-test=logout]")
    expect(page).to_have_url(re.compile(r"/login"))
    page.goto(f"{url}/systems")
    expect(page).to_have_url(re.compile(r"/login\?redirect="))
    expect(page.locator("[data-test=login-submit]")).to_contain_text("登录")
