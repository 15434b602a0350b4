"""The admin in a real browser, on the real demo: find the failed job, requeue it, see it
succeed. Headless Chromium from the system (``/usr/bin/chromium``) driven by Playwright;
the screenshots of the list, a job and the dashboard go to ``docs/_static`` with
BGP_DOCS_SCREENSHOTS=1 (else to a temporary folder)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.helpers.demo import free_port, read_until_ready, start_demo
from tests.helpers.servers import IN_CI
from tests.helpers.workers import ROOT

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("BGP_TEST_CHROMIUM", "/usr/bin/chromium")
#: Screenshots go to the docs only when asked (BGP_DOCS_SCREENSHOTS=1), so that a test run
#: leaves the checkout as it found it.
SHOTS_TO_DOCS = os.environ.get("BGP_DOCS_SCREENSHOTS") == "1"


def require_browser() -> None:
    """Skip without Chromium or Playwright; under CI that is a failure."""
    problems = []
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        problems.append(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is not installed (pip install playwright)")
    if not problems:
        return
    if IN_CI:
        pytest.fail("; ".join(problems), pytrace=False)
    pytest.skip("; ".join(problems))


@pytest.fixture
def demo(tmp_path):
    """The demo (worker, admin, sample work) until every sample ran; (url, password)."""
    require_browser()  # before starting anything
    port = free_port()
    proc = start_demo(tmp_path / "data", port)
    try:
        output = read_until_ready(proc)
        password = re.search(r"user admin\s+password (\S+)", output)
        assert password, output
        yield f"http://127.0.0.1:{port}", password.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest[-3000:]


def state_of(page) -> str:
    return page.locator(".field-state_badge .bgp-state").first.inner_text().strip()


def test_an_operator_requeues_the_failed_charge_and_sees_it_succeed(demo, tmp_path):
    from playwright.sync_api import sync_playwright

    url, password = demo
    shots = ROOT / "docs" / "_static" if SHOTS_TO_DOCS else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(f"{url}/admin/login/?next=/admin/celery_bgp/job/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", password)
            page.click("input[type=submit]")
            page.wait_for_selector("#result_list")
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
            page.screenshot(path=str(shots / "admin-dashboard.png"), full_page=True)
        finally:
            browser.close()
