"""The console's job list and job page in a real browser, on the real demo: an operator
requeues the report job (it reports progress step by step) and, without reloading,
sees its row change state in the list (a checked box holds the refresh), then on its
page the progress bar, the ETA and the log lines advance; pausing live updates stops
them. Every column of the list fits
at 1,280 px with the navigation sidebar open."""
from __future__ import annotations

import re
import time

import pytest
from django.contrib.admin.utils import quote

from tests.helpers import waiting
from tests.helpers.demo import in_demo

pytestmark = pytest.mark.integration

REPORT = "shop.jobs:generate_report"


def wait_for(check, timeout: float = 40, what: str = ""):
    """Poll without reloading the page (the page must update by itself)."""
    return waiting.wait_for(check, timeout, what)


def report_row(page):
    return page.locator("#result_list tbody tr", has_text=REPORT).first


def row_state(page) -> str:
    return report_row(page).locator(".field-state_badge .bgp-state").inner_text().strip()


def progress_value(page) -> int:
    bar = page.locator("#bgp-live-status progress.bgp-progress")
    return int(bar.get_attribute("value") or 0) if bar.count() else -1


def log_count(page) -> int:
    return page.locator("#bgp-log-lines tr:not(.bgp-no-logs)").count()


def assert_every_column_fits(page) -> None:
    need, shown = page.evaluate("""() => {
        const box = document.querySelector('#changelist .results');
        return [box.scrollWidth, box.clientWidth];
    }""")
    assert need <= shown, f"the columns need {need} px, {shown} px are shown"


def test_the_list_and_a_running_jobs_page_update_by_themselves(demo, admin_page, shots):
    page = admin_page
    page.evaluate("window.localStorage.removeItem('celery_bgp.live.paused')")
    page.goto(f"{demo.url}/admin/celery_bgp/job/?q=REPORT&o=-6")  # any case, a part
    assert row_state(page) == "Succeeded"
    # Every column fits at 1,280 px with the navigation sidebar open: no side scrolling.
    assert page.locator("#nav-sidebar").is_visible()
    assert_every_column_fits(page)
    headers = page.locator("#result_list thead th").all_inner_texts()
    assert [h.strip().lower() for h in headers[1:3]] == ["name", "id"], headers
    short = report_row(page).locator(".bgp-id")
    assert len(short.inner_text()) == 8 and len(short.get_attribute("title")) > 8

    # Requeue it from the list; back on the list, the row changes state by itself.
    marker = page.evaluate("() => (window.bgpMarker = Math.random())")  # gone on a reload
    report_row(page).locator("input.action-select").check()
    page.select_option("select[name=action]", "requeue_jobs")
    page.click("button[name=index]")
    page.wait_for_selector("#bgp-confirm")
    page.click("#bgp-confirm")
    page.wait_for_url(re.compile(r"q=REPORT"))
    marker = page.evaluate("() => (window.bgpMarker = Math.random())")
    wait_for(lambda: row_state(page) == "Executing", what="the row to show Executing")
    wait_for(lambda: report_row(page).locator("progress.bgp-progress").count(),
             what="a progress bar in the row")
    assert_every_column_fits(page)  # with a bar and a worker in the running row
    page.screenshot(path=str(shots / "console-list.png"))  # 1,280 x 900
    # A checked box is not lost to a refresh: the list waits until it is unchecked.
    box = report_row(page).locator("input.action-select")
    box.check()
    box.evaluate("(el) => { el.dataset.bgpMine = '1'; }")
    time.sleep(5.5)  # more than the list's interval (5 s); the job moves meanwhile
    assert box.evaluate("(el) => el.checked && el.dataset.bgpMine === '1'")
    box.uncheck()
    wait_for(lambda: row_state(page) == "Succeeded", what="the row to show Succeeded")
    assert page.evaluate("() => window.bgpMarker") == marker, "the list was reloaded"

    # Requeue it from its page, and watch it run there.
    report_row(page).locator("th a").click()
    page.wait_for_selector("#bgp-live-job")
    lines_before = log_count(page)
    page.click("button[name=bgp_requeue]")
    page.wait_for_selector("#bgp-confirm")
    page.click("#bgp-confirm")
    page.wait_for_selector("#bgp-live-job")
    marker = page.evaluate("() => (window.bgpMarker = Math.random())")
    first = wait_for(lambda: progress_value(page) > 0 and progress_value(page),
                     what="the progress bar")
    wait_for(lambda: log_count(page) > lines_before, what="new log lines")
    status = page.locator("#bgp-live-status").inner_text()
    assert "Executing" in status and "left" in status and "sales" in status, status
    page.screenshot(path=str(shots / "console-job-live.png"))

    # Paused: nothing moves, though the job goes on.
    page.click("[data-bgp-live-toggle]")
    assert page.locator("[data-bgp-live-toggle]").inner_text() == "Resume live updates"
    held = (progress_value(page), log_count(page))
    time.sleep(4.5)  # more than the job page's interval (3 s), the job makes steps
    assert (progress_value(page), log_count(page)) == held
    page.click("[data-bgp-live-toggle]")
    wait_for(lambda: (progress_value(page), log_count(page)) != held, what="updates again")
    assert progress_value(page) >= first
    wait_for(lambda: "Succeeded" in page.locator("#bgp-live-status").inner_text(),
             what="the page to show Succeeded")
    assert "report 2026-10: step 10/10" in page.locator("#bgp-logs").inner_text()
    assert page.evaluate("() => window.bgpMarker") == marker, "the page was reloaded"


SUBMIT_REPORT = """
import django, sys; django.setup()
from proj.celery import bgp
from shop import jobs
print(bgp.jobs.submit(jobs.generate_report, args=["2026-12"], kwargs={"steps": int(sys.argv[1])}))
"""


def test_a_job_page_left_open_keeps_only_its_newest_log_lines(demo, admin_page):
    """The page appends a running job's new lines and keeps the newest (500; here 3, set
    on the page), saying that older lines are not shown: open all day, it does not grow."""
    page = admin_page
    page.evaluate("window.localStorage.removeItem('celery_bgp.live.paused')")
    job_id = in_demo(demo.data, SUBMIT_REPORT, "8").splitlines()[-1]
    page.goto(f"{demo.url}/admin/celery_bgp/job/{quote(job_id)}/change/")
    lines = page.locator("#bgp-log-lines")
    assert lines.get_attribute("data-bgp-keep") == "500"
    assert page.locator("#bgp-logs-cut").is_hidden()  # fewer than 500 lines so far
    page.evaluate("document.getElementById('bgp-log-lines').setAttribute('data-bgp-keep', '3')")
    wait_for(lambda: "2026-12: step 8/8" in lines.inner_text(), 60, "the report's last line")
    shown = page.locator("#bgp-log-lines tr:not(.bgp-no-logs)").all_inner_texts()
    assert len(shown) == 3, shown
    assert "step 6/8" in shown[0] and "step 8/8" in shown[-1]
    assert page.locator("#bgp-logs-cut").is_visible()
