"""The admin in a real browser, on the real demo: find the failed job, requeue it, see it
succeed. Headless Chromium from the system (``/usr/bin/chromium``) driven by Playwright
(fixtures in ``conftest.py``); the screenshots of the list and a job go to
``docs/_static`` with BGP_DOCS_SCREENSHOTS=1 (else to a temporary folder)."""
from __future__ import annotations

import re
import time

import pytest

pytestmark = pytest.mark.integration


def state_of(page) -> str:
    return page.locator(".field-state_badge .bgp-state").first.inner_text().strip()


def test_an_operator_requeues_the_failed_charge_and_sees_it_succeed(demo, admin_page, shots):
    url, page = demo.url, admin_page
    assert "shop.jobs:charge_card" in page.content()
    page.click("#toggle-nav-sidebar")  # more room for the columns
    page.screenshot(path=str(shots / "admin-list.png"), full_page=True)

    page.click('#changelist-filter a[href="?state=Failed"]')
    page.wait_for_url(re.compile(r"state=Failed"))
    rows = page.locator("#result_list tbody tr")
    assert rows.count() >= 1
    assert all("Failed" in rows.nth(i).inner_text() for i in range(rows.count()))
    rows.filter(has_text="shop.jobs:charge_card").locator("th a").first.click()
    page.wait_for_selector("#bgp-failure")
    assert state_of(page) == "Failed"
    failure = page.locator("#bgp-failure").inner_text()
    assert "PaymentDeclined" in failure and "attempt 2" in failure
    page.screenshot(path=str(shots / "admin-detail.png"), full_page=True)

    page.click("button[name=bgp_requeue]")
    page.wait_for_selector("#bgp-confirm")
    assert "Requeue 1 job?" in page.content()
    page.click("#bgp-confirm")
    page.wait_for_selector("#bgp-timeline")
    assert "Requeued 1 job" in page.locator(".messagelist").inner_text()
    deadline = time.monotonic() + 60
    while state_of(page) != "Succeeded":
        assert time.monotonic() < deadline, f"still {state_of(page)}"
        time.sleep(1)
        page.reload()
    timeline = page.locator("#bgp-timeline").inner_text()
    assert "requeued by admin in the admin" in timeline
    assert "charged 19.5 for order A-1002" in page.locator("#bgp-logs").inner_text()

    page.goto(f"{url}/admin/celery_bgp/job/")
    page.click("text=Dashboard")
    page.wait_for_selector("#bgp-queues")
    assert "celery" in page.locator("#bgp-queues").inner_text()
