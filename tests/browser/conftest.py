"""One demo (worker, beat, admin, sample work) and one headless Chromium for the browser
tests: starting them is the slow part. A test that changes a job changes one that no
other test looks at. Both are package-scoped: Playwright's sync API runs an asyncio loop
in this thread while it is open, which the tests after this package must not inherit."""
from __future__ import annotations

import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.demo import free_port, read_until_ready, start_demo
from tests.helpers.servers import IN_CI
from tests.helpers.workers import ROOT

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


@dataclass
class Demo:
    url: str
    password: str
    data: Path  # the demo's --data folder (its SQLite database is data / "demo.sqlite3")


@pytest.fixture(scope="package")
def demo(tmp_path_factory):
    """The demo until every sample ran, shared by the browser tests."""
    require_browser()  # before starting anything
    port = free_port()
    data = tmp_path_factory.mktemp("demo") / "data"
    proc = start_demo(data, port)
    try:
        output = read_until_ready(proc)
        password = re.search(r"user admin\s+password (\S+)", output)
        assert password, output
        yield Demo(f"http://127.0.0.1:{port}", password.group(1), data)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest[-3000:]


@pytest.fixture(scope="package")
def chromium(demo):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def admin_page(demo, chromium):
    """A logged-in admin tab (1,280 x 900) on the job list; closed after the test."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{demo.url}/admin/login/?next=/admin/celery_bgp/job/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", demo.password)
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where screenshots go: docs/_static with BGP_DOCS_SCREENSHOTS=1, else tmp_path."""
    folder = ROOT / "docs" / "_static" if SHOTS_TO_DOCS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder
