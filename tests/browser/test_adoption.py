"""The adopt dialog: describe a running process, preview it on the node, adopt it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from playwright.sync_api import Page, expect

from gdos_sdk.testing import LocalCluster

from .conftest import login


def test_adopt_a_running_process_from_the_systems_page(
    page: Page, cluster: LocalCluster, tmp_path: Path
) -> None:
    marker = str(tmp_path / "legacy-ui")
    outside = subprocess.Popen(
        ["python3", "-c", "import time\nwhile True: time.sleep(1)\n", marker],
        start_new_session=True,
    )
    try:
        with cluster.client() as gdos:
            system = gdos.create_system("legacy-ui")
        login(page, cluster.url, cluster.admin_password)
        page.goto(f"{cluster.url}/systems/{system.id}")
        page.click("[data-test=adopt-process]")
        dialog = page.locator("[data-test=adopt-dialog]")
        page.fill("[data-test=adopt-name]", "daemon")
        dialog.locator("[data-test=adopt-strategy]").get_by_text("Process match").click()
        page.fill("[data-test=adopt-process-name]", "python3")
        page.fill("[data-test=adopt-cmdline]", f"{marker}$")

        # Preview on the (only, preselected) online node: exactly the outside process.
        page.click("[data-test=adopt-preview]")
        candidates = page.locator("[data-test=adopt-candidates] .el-table__body")
        expect(candidates).to_contain_text(str(outside.pid))
        expect(candidates.locator("tr")).to_have_count(1)

        page.click("[data-test=adopt-submit]")
        module = page.locator("[data-test=module-daemon]")
        expect(module).to_contain_text("adopted")
        instances = module.locator("[data-test=instances-table] .el-table__body")
        expect(instances.locator("[data-state=running]")).to_be_visible()
        expect(instances).to_contain_text(str(outside.pid))
        assert outside.poll() is None  # adopted, not restarted
    finally:
        outside.kill()
        outside.wait(10)
