"""The admin in a real browser, on the real demo: find the failed job, requeue it, see it
succeed. Headless Chromium from the system (``/usr/bin/chromium``) driven by Playwright;
the screenshots of the list, a job and the dashboard go to ``docs/_static``."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.servers import IN_CI
from tests.helpers.workers import ROOT

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("BGP_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "docs" / "_static"


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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def demo(tmp_path):
    """The demo (worker, admin, sample work) until every sample ran; (url, password)."""
    require_browser()  # before starting anything
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "BGP_"))}
    proc = subprocess.Popen(
        [sys.executable, "django_app/demo.py", "--data", str(tmp_path / "data"), "--fresh",
         "--port", str(port)],
        cwd=ROOT, env={**env, "COLUMNS": "200"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while not any("demo ready" in line for line in lines):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(lines)
            lines.append(line)
            assert time.monotonic() < deadline, "".join(lines)
        password = re.search(r"user admin\s+password (\S+)", "".join(lines))
        assert password, "".join(lines)
        yield f"http://127.0.0.1:{port}", password.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest[-3000:]


def state_of(page) -> str:
    return page.locator(".field-state_badge .bgp-state").first.inner_text().strip()


def test_an_operator_requeues_the_failed_charge_and_sees_it_succeed(demo):
    from playwright.sync_api import sync_playwright

    url, password = demo
    SHOTS.mkdir(parents=True, exist_ok=True)
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
            page.screenshot(path=str(SHOTS / "admin-list.png"), full_page=True)

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
            page.screenshot(path=str(SHOTS / "admin-detail.png"), full_page=True)

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
            page.screenshot(path=str(SHOTS / "admin-dashboard.png"), full_page=True)
        finally:
            browser.close()
