"""The console's Recurring page in a real browser on the real demo (worker + beat with
django-celery-beat's DatabaseScheduler, ``clean-carts`` every 30 s): the schedule in
words with its next and last run, run now (a new job that runs at once, linked), pause
(beat's stored entry disabled, no run for more than an interval, shown live as paused
by whom), resume, and the History of it all."""
from __future__ import annotations

import re
import sqlite3
import time
from contextlib import closing

import pytest
from django.contrib.admin.utils import quote

pytestmark = pytest.mark.integration

ENTRY = "bgp:default:recurring:clean-carts"
ROW = 'tr[data-recurring="clean-carts"]'


def query(demo, sql: str, *args):
    with closing(sqlite3.connect(demo.data / "demo.sqlite3", timeout=10)) as db:
        found = db.execute(sql, args).fetchone()
    return None if found is None else found[0]


def runs(demo) -> int:
    return query(demo, "SELECT count(*) FROM celery_bgp_jobproperty "
                       "WHERE name = 'recurring' AND value_text = 'clean-carts'")


def enabled(demo) -> bool:
    flag = query(demo, "SELECT enabled FROM django_celery_beat_periodictask WHERE name = ?",
                 ENTRY)
    assert flag is not None, "beat has not stored its entry: " + (
        demo.data / "beat.log").read_text(errors="replace")[-3000:]
    return bool(flag)


def click(page, action: str) -> None:
    """Press a row's button and wait for the page it leads to (POST, then redirect)."""
    with page.expect_navigation():
        page.locator(f'{ROW} button[value="{action}"]').click()
    page.wait_for_selector(".messagelist")


def test_an_operator_runs_pauses_and_resumes_clean_carts(demo, admin_page, shots):
    page = admin_page
    page.goto(f"{demo.url}/admin/celery_bgp/job/recurring/")
    row = page.locator(ROW)
    assert "every 30 seconds" in row.inner_text()
    assert "read-only" in page.locator('tr[data-recurring="bgp:default:purge"]').inner_text()
    try:
        click(page, "trigger")
        message = page.locator(".messagelist").inner_text()
        assert "Started a run of clean-carts now: job" in message
        job_id = re.search(r"job (\S+)\.", message).group(1)
        assert page.locator(f'.messagelist a[href*="/{quote(job_id)}/change/"]').count() == 1
        deadline = time.monotonic() + 30  # the live table shows the run succeed
        while "Succeeded" not in page.locator(f"{ROW} .bgp-last").inner_text():
            assert time.monotonic() < deadline, page.locator(ROW).inner_text()
            time.sleep(0.5)
        # This run (or beat's next one, if it came meanwhile) is the linked last run.
        assert page.locator(f"{ROW} .bgp-last a[href*='/admin/celery_bgp/job/']").count() == 1
        assert query(demo, "SELECT state FROM celery_bgp_job WHERE id = ?", job_id) == "Succeeded"

        click(page, "pause")
        assert "Paused clean-carts" in page.locator(".messagelist").inner_text()
        assert "Paused" in row.inner_text() and "by admin" in row.inner_text()
        assert not enabled(demo)  # django-celery-beat's entry: beat does not even send
        before = runs(demo)
        time.sleep(33)  # more than one interval: beat would have sent a run
        assert runs(demo) == before
        assert "by admin" in page.locator(ROW).inner_text()  # still shown after live refreshes

        click(page, "resume")
        assert "Resumed clean-carts" in page.locator(".messagelist").inner_text()
        assert "Active" in page.locator(ROW).inner_text() and enabled(demo)
        countdown = page.locator(f'{ROW} [data-bgp-rel="next"]')
        shown = countdown.inner_text()
        assert shown.startswith("in ")
        page.wait_for_function(  # the browser counts down by itself (the server says 204)
            "([el, was]) => el.textContent !== was", arg=[countdown.element_handle(), shown])
        history = page.locator("#bgp-recurring-history").inner_text()
        for said in ("Paused", "Resumed", f"Ran now: job {job_id}"):
            assert said in history
        page.screenshot(path=str(shots / "console-recurring.png"), full_page=True)
    finally:  # leave the demo's schedule as it was for the other tests
        if not enabled(demo):
            page.goto(f"{demo.url}/admin/celery_bgp/job/recurring/")
            click(page, "resume")
