"""The Backups page: back up, change data, restore after confirming, reject a bad upload,
save the schedule; by the UI, against real processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from gdos_sdk.testing import LocalCluster, wait_until

from .conftest import login
from .test_console import choose


def test_backup_restore_and_schedule_through_the_console(
    page: Page, cluster: LocalCluster, tmp_path: Path, make_zip: Callable[..., bytes]
) -> None:
    with cluster.client() as gdos:
        doomed = gdos.create_system("doomed-by-ui")
    login(page, cluster.url, cluster.admin_password)
    page.click("[data-test=nav-backups]")

    page.click("[data-test=backup-create]")
    table = page.locator("[data-test=backups-table] .el-table__body")
    expect(table).to_contain_text("Manual")
    expect(table).to_contain_text("-db-manual.tar.gz")

    with cluster.client() as gdos:
        gdos.delete_system(doomed.id)
        assert "doomed-by-ui" not in [s.name for s in gdos.list_systems()]
        late = gdos.upload_package(make_zip("late", "1.0.0"))  # orphaned by the restore

    # Restore asks first; after confirming, the master serves the backed-up state.
    table.locator("[data-test=backup-restore]").first.click()
    box = page.locator(".el-message-box")
    expect(box).to_contain_text("Replace all current data")
    box.locator("button", has_text="Restore").click()
    expect(page.locator(".el-message--success", has_text="Restored")).to_be_visible()
    with cluster.client() as gdos:
        wait_until(lambda: "doomed-by-ui" in [s.name for s in gdos.list_systems()], what="restore")

    # The package uploaded after the backup is now an object without a record: the
    # clean-up card finds it (any age) and deletes it after a confirmation.
    card = page.locator("[data-test=orphans]")
    choose(page, "[data-test=orphans-age]", "any age")
    card.locator("[data-test=orphans-find]").click()
    found = card.locator("[data-test=orphans-found]")
    expect(found).to_contain_text("1 object without a record,")
    expect(found).to_contain_text(f"packages/{late.sha256}.zip")
    card.locator("[data-test=orphans-remove]").click()
    page.locator(".el-message-box").locator("button", has_text="Delete").click()
    expect(page.locator(".el-message--success", has_text="Deleted 1 object,")).to_be_visible()
    with cluster.client() as gdos:
        assert gdos.list_orphans(min_age=0).objects == []

    # A file that is no backup is refused with the server's reason; nothing is added.
    bogus = tmp_path / "not-a-backup.tar.gz"
    bogus.write_bytes(b"this is not an archive" * 100)
    page.set_input_files("[data-test=backup-upload] input[type=file]", str(bogus))
    expect(page.locator(".el-message--error", has_text="not a GDOS backup")).to_be_visible()
    expect(table.locator(".el-table__row")).to_have_count(1)

    # The schedule is saved on the server.
    form = page.locator("[data-test=backup-schedule]")
    form.locator(".el-input-number input").first.fill("12")
    form.locator("button", has_text="Save").click()
    expect(page.locator(".el-message--success", has_text="Schedule saved")).to_be_visible()
    with cluster.client() as gdos:
        assert gdos.get_backup_schedule().interval_hours == 12
        # Still signed in after the restore: the session survived.
    expect(page.locator("[data-test=user-name]")).to_contain_text("admin")
