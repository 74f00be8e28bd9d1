"""Issue 15, item 5: a master that loses PostgreSQL or NATS says so in the console, refuses
changes with the banner's words, and the banner goes away by itself when it is back.

A master of a cluster (PostgreSQL and NATS, as in docs/scale-out.md) on a PostgreSQL server
and a NATS server of the test's own: the test stops one (``LocalPostgres.halt``,
``LocalNats.stop``) and starts it again (on the same port).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
from playwright.sync_api import Page, expect

from gdos_sdk.localnats import LocalNats
from gdos_sdk.localpg import LocalPostgres
from gdos_sdk.testing import LocalCluster

from .conftest import login


@pytest.fixture
def clustered(tmp_path: Path, nats: LocalNats) -> Iterator[tuple[LocalCluster, LocalPostgres]]:
    """One master with -bus on a PostgreSQL server of its own; everything stopped after."""
    with LocalPostgres() as server:
        url = server.create_database("gdos")
        local = LocalCluster(tmp_path / "cluster", db_url=url)
        try:
            local.start_master("-bus", nats.url, "-master_id", "m1")
            yield local, server
        finally:
            local.close()


@attrs.frozen
class Loss:
    """What a test takes away from the master, and the words the console then shows."""

    part: str  # the banner's data-lost
    english: str  # what is lost, in the banner's and the refusal's English
    chinese: str  # the banner's title in Chinese
    not_said: str  # the master's own English, which the refusal must not show


DATABASE = Loss("database", "the database", "当前主控节点与数据库的连接已断开", "unreachable")
BUS = Loss("bus", "the message bus", "当前主控节点与消息总线的连接已断开", "writes are refused")


def _outage_and_recovery(
    page: Page,
    cluster: LocalCluster,
    loss: Loss,
    stop: Callable[[], None],
    start: Callable[[], None],
) -> None:
    login(page, cluster.url, cluster.admin_password)
    page.click("[data-test=nav-systems]")
    banner = page.locator("[data-test=outage-banner]")
    expect(banner).to_have_count(0)

    stop()
    # The console asks /healthz every 5 s while all is well: the banner within ~6 s.
    expect(banner).to_be_visible(timeout=15_000)
    expect(banner).to_have_attribute("role", "alert")
    expect(banner).to_have_attribute("data-lost", loss.part)
    expect(banner).to_contain_text(f"This master lost {loss.english}.")
    expect(banner).to_contain_text("Changes are refused until it is back")
    expect(banner).to_contain_text("Master: m1.")
    expect(page.locator("[data-test=outage-since]")).to_contain_text("Since")

    # A change made meanwhile is refused with the banner's words, not the master's English.
    page.click("[data-test=new-system]")
    page.fill("[data-test=system-name]", "during")
    page.click("[data-test=system-submit]")
    refusal = page.locator(".el-message--error")
    expect(refusal).to_contain_text(f"Not done: this master lost {loss.english}")
    expect(refusal).not_to_contain_text(loss.not_said)
    page.keyboard.press("Escape")  # the dialog stays open with what was typed; close it

    # Reading goes on: another page loads meanwhile; in Chinese too.
    page.click("[data-test=nav-nodes]")
    expect(banner).to_be_visible()
    page.click("[data-test=lang-toggle]")
    expect(banner).to_contain_text(loss.chinese)
    page.click("[data-test=lang-toggle]")

    start()
    # Looked at every 2 s during an outage: gone by itself, no reload.
    expect(banner).to_have_count(0, timeout=20_000)
    page.click("[data-test=nav-systems]")
    page.click("[data-test=new-system]")
    page.fill("[data-test=system-name]", "after")
    page.click("[data-test=system-submit]")
    expect(page.locator("[data-test=system-after]")).to_be_visible()
    expect(page.locator("[data-test=system-during]")).to_have_count(0)


def test_a_lost_database_shows_a_banner_refuses_changes_and_clears_by_itself(
    page: Page, clustered: tuple[LocalCluster, LocalPostgres]
) -> None:
    cluster, server = clustered
    _outage_and_recovery(page, cluster, DATABASE, server.halt, server.resume)


def test_a_lost_bus_shows_a_banner_refuses_changes_and_clears_by_itself(
    page: Page, clustered: tuple[LocalCluster, LocalPostgres], nats: LocalNats
) -> None:
    cluster, _ = clustered
    # The master notices at once (the socket closes); the server comes back on its port
    # and the master's client finds it again by itself.
    _outage_and_recovery(page, cluster, BUS, nats.stop, nats.start)
