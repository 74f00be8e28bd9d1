"""The alert centre, by the UI alone, against a real master, a real worker and a real webhook.

Add a webhook receiver with a secret and press its test button: the local HTTP server gets
a signed test body and the page shows the delivery. Write a rule the master refuses and read
its error under the field it names; then a memory rule that fires at once on the real node:
a toast pops, the bell counts 1, the alert shows in Active, and the webhook gets it. Delete
the rule: the bell clears, and the history holds the resolved event. Silence by label, and
expire the silence.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from gdos_sdk.redaction import mask_url
from gdos_sdk.testing import LocalCluster, wait_until

from ..helpers.webhook import WebhookReceiver
from .conftest import login
from .test_console import choose

SECRET = "hook-secret-1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A master that may post to the loopback test receiver (denied by default)."""
    local = LocalCluster(tmp_path_factory.mktemp("browser") / "cluster")
    try:
        local.start_master(env={"OPS_MASTER_ALERTS_WEBHOOK_ALLOW": "127.0.0.1/32"})
        local.start_worker()
        yield local
    finally:
        local.close()


def add_receiver(page: Page, hook: WebhookReceiver) -> None:
    page.click("[data-test=tab-receivers]")
    page.click("[data-test=new-receiver]")
    page.fill("[data-test=receiver-name]", "hook")
    page.fill("[data-test=receiver-url]", hook.url)
    page.fill("[data-test=receiver-secret]", SECRET)
    page.click("[data-test=receiver-submit]")
    table = page.locator("[data-test=receivers-table]")
    expect(table).to_contain_text(mask_url(hook.url))  # scheme, host and port only
    expect(table).not_to_contain_text("/hook")  # the path may hold a credential
    expect(table).not_to_contain_text(SECRET)  # the secret is never shown back

    page.click("[data-test=test-receiver-hook]")
    result = page.locator("[data-test=receiver-result-hook]")
    expect(result).to_have_attribute("data-ok", "true")
    expect(result).to_contain_text("200")
    test = hook.received[0]
    assert test.json()["status"] == "test"
    expected = hmac.new(SECRET.encode(), test.body, hashlib.sha256).hexdigest()
    assert test.signature == f"sha256={expected}"

    # Editing shows the hidden URL as a hint and leaves it alone: the test still arrives.
    page.click("[data-test=edit-receiver-hook]")
    url = page.locator("[data-test=receiver-url]")
    expect(url).to_have_value("")
    expect(url).to_have_attribute("placeholder", re.compile(re.escape(mask_url(hook.url))))
    page.click("[data-test=receiver-submit]")
    expect(page.locator("[data-test=receiver-dialog]")).to_be_hidden()
    page.click("[data-test=test-receiver-hook]")
    wait_until(lambda: len(hook.received) == 2, what="the second test body")


def test_alert_centre_fires_toasts_counts_and_resolves(
    page: Page, cluster: LocalCluster, hook: WebhookReceiver
) -> None:
    login(page, cluster.url, cluster.admin_password)
    expect(page.locator("[data-test=count-online]")).to_have_text("1")
    page.click("[data-test=nav-alerts]")
    expect(page.locator("[data-test=active-table]")).to_contain_text("No alert is pending")
    expect(page.locator("[data-test=alert-count]")).to_have_count(0)

    add_receiver(page, hook)

    # A clear threshold above the threshold of a '>' rule: the master names the field.
    page.click("[data-test=tab-rules]")
    page.click("[data-test=new-rule]")
    page.fill("[data-test=rule-name]", "memory in use")
    choose(page, "[data-test=rule-metric]", "Memory %")
    page.fill("[data-test=rule-threshold] input", "0")
    page.fill("[data-test=rule-for] input", "0")
    page.fill("[data-test=rule-clear] input", "50")
    page.click("[data-test=rule-severity] >> text=Critical")
    page.click("[data-test=rule-submit]")
    expect(page.locator("[data-test=rule-error]")).to_contain_text("$.clear_threshold")
    expect(page.locator("[data-test=field-clear] .el-form-item__error")).to_contain_text(
        "must not be above the threshold"
    )

    # Without it the rule saves, and fires on the first evaluation: memory is in use.
    page.fill("[data-test=rule-clear] input", "")
    page.click("[data-test=rule-submit]")
    expect(page.locator("[data-test=rules-table]")).to_contain_text("memory in use")
    expect(page.locator(".alert-toast")).to_contain_text("memory in use")
    expect(page.locator("[data-test=alert-count]")).to_have_text("1")

    # A fresh page gets the count from the topic's snapshot and the list from the API.
    page.reload()
    expect(page.locator("[data-test=alert-count]")).to_have_text("1")
    page.click("[data-test=tab-active]")
    active = page.locator("[data-test=active-table]")
    expect(active).to_contain_text("memory in use")
    expect(active.locator("[data-state=firing]")).to_have_count(1)
    wait_until(lambda: "firing" in hook.statuses(), what="the webhook")

    # Deleting the rule resolves its alert: the bell clears, Active empties, History keeps it.
    page.click("[data-test=tab-rules]")
    page.click("[data-test=delete-rule-memory\\ in\\ use]")
    page.click(".el-message-box__btns .el-button--primary")
    expect(page.locator("[data-test=alert-count]")).to_have_count(0)
    page.click("[data-test=tab-active]")
    expect(active).to_contain_text("No alert is pending")

    page.click("[data-test=tab-history]")
    history = page.locator("[data-test=history-table]")
    expect(history).to_contain_text("memory in use")
    expect(history.locator("[data-state=resolved]")).to_have_count(1)
    expect(history).to_contain_text("rule deleted")
    choose(page, "[data-test=history-state]", "Firing")
    page.click("[data-test=history-search]")
    expect(history.locator(".el-table__row")).to_have_count(0)
    wait_until(lambda: "resolved" in hook.statuses(), what="the webhook")

    # A silence for two hours (the default window) by label, then expired by hand.
    page.click("[data-test=tab-silences]")
    page.click("[data-test=new-silence]")
    page.fill("[data-test=matcher-value-0]", "memory in use")
    page.fill("[data-test=silence-comment]", "maintenance")
    page.click("[data-test=silence-submit]")
    silences = page.locator("[data-test=silences-table]")
    expect(silences).to_contain_text("alertname=memory in use")
    expect(silences.locator("[data-state=active]")).to_have_count(1)
    page.click("[data-test=expire-silence]")
    expect(silences.locator(".el-table__row")).to_have_count(0)
    page.click("[data-test=silences-expired]")
    expect(silences.locator("[data-state=expired]")).to_have_count(1)


def test_a_viewer_sees_the_alert_centre_read_only(page: Page, cluster: LocalCluster) -> None:
    with cluster.client() as gdos:
        gdos.create_user("watcher", "watcher-password-1", "viewer")
    login(page, cluster.url, "watcher-password-1", user="watcher")
    page.click("[data-test=nav-alerts]")
    expect(page.locator("[data-test=active-table]")).to_be_visible()
    page.click("[data-test=tab-rules]")
    expect(page.locator("[data-test=rules-table]")).to_be_visible()
    expect(page.locator("[data-test=new-rule]")).to_have_count(0)
    page.click("[data-test=tab-silences]")
    expect(page.locator("[data-test=silences-table]")).to_be_visible()
    expect(page.locator("[data-test=new-silence]")).to_have_count(0)
    page.click("[data-test=tab-receivers]")
    expect(page.locator("[data-test=receivers-table]")).to_be_visible()
    expect(page.locator("[data-test=new-receiver]")).to_have_count(0)
