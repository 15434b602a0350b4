"""The console's Workers and Queues pages in a real browser, on the demo (a real ``celery
worker`` on the embedded filesystem broker): the worker with its queues and pool, live
(the list refreshes by itself), a queue consumer added and cancelled from the page, and
the queue depths from the broker beside the store's figures. Screenshots
``console-workers.png`` and ``console-queues.png``."""
from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.admin.utils import quote

from tests.helpers.demo import in_demo
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.integration

WORKERS = "/admin/celery_bgp/job/workers/"
QUEUES = "/admin/celery_bgp/job/queues/"
SUBMIT_REPORT = """
import django; django.setup()
from proj.celery import bgp
from shop import jobs
print(bgp.jobs.submit(jobs.generate_report, args=["2026-11"], kwargs={"steps": 120}))
"""
CANCEL = """
import django, sys; django.setup()
from proj.celery import bgp
bgp.jobs.cancel(sys.argv[1])
"""


def submit_report(demo) -> str:
    """A new report job in the demo that no other test looks at: 120 steps of a second,
    long enough to be seen on a loaded machine, cancelled by the test once seen."""
    return in_demo(demo.data, SUBMIT_REPORT).splitlines()[-1]


def test_the_workers_page_shows_the_demo_worker_live_and_changes_its_queues(
        demo, admin_page, shots):
    page = admin_page
    page.evaluate("window.localStorage.removeItem('celery_bgp.live.paused')")
    job_id = submit_report(demo)
    page.goto(f"{demo.url}{WORKERS}")
    page.evaluate("""() => { window.bgpRefreshed = 0; window.bgpMarker = 1;
        document.addEventListener('bgp:refreshed', () => { window.bgpRefreshed += 1; }); }""")
    row = page.locator("#bgp-workers tr.bgp-worker").filter(has_text="demo@")
    row.wait_for()
    text = row.inner_text()
    assert "celery" in text and "thread \N{MULTIPLICATION SIGN} 4" in text
    assert "SHUT DOWN" in text.upper()  # the demo's admin is a superuser
    # Live: the page asks the workers again by itself; the report job shows up running,
    # linked to its page, with its lock's heartbeat.
    running = row.locator(f'.bgp-running a[href$="/{quote(job_id)}/change/"]')
    seen: list[str] = []

    def shown() -> bool:
        seen.append(page.evaluate("""() => `${window.bgpRefreshed} refreshes: ` +
            (document.querySelector('#bgp-workers-live') || {}).innerText"""))
        return running.count() > 0

    try:
        wait_for(shown, 40, lambda: f"job {job_id} running on the workers page; it showed, "
                 "in turn:\n" + "\n---\n".join(dict.fromkeys(seen)))
        assert running.inner_text() == "shop.jobs:generate_report"
        assert re.search(r"\d+(\.\d+)?s ago", row.inner_text())
    finally:
        in_demo(demo.data, CANCEL, job_id)  # gives the worker's thread back to the other tests
    page.wait_for_function("window.bgpRefreshed > 0", timeout=15_000)
    assert page.evaluate("window.bgpMarker") == 1  # replaced in place, never reloaded
    page.click("#toggle-nav-sidebar")
    page.screenshot(path=str(shots / "console-workers.png"), full_page=True)

    queue = f"extra-{uuid.uuid4().hex[:6]}"
    page.fill("#bgp-add-consumer input[name=queue]", queue)
    page.click("#bgp-add-consumer button[type=submit]")
    page.wait_for_selector(".messagelist")
    assert re.search(rf"demo@\S+ answered: add consumer {queue}",
                     page.locator(".messagelist").inner_text(), re.IGNORECASE)
    row = page.locator("#bgp-workers tr.bgp-worker").filter(has_text="demo@")
    chip = row.locator(".bgp-chip", has_text=queue)
    chip.wait_for()
    chip.locator("button").click()
    page.wait_for_selector(".messagelist")
    assert f"no longer consuming from {queue}" in page.locator(".messagelist").inner_text()
    assert queue not in page.locator("#bgp-workers").inner_text()


def test_the_queues_page_shows_the_broker_depths_beside_the_store(demo, admin_page, shots):
    page = admin_page
    page.goto(f"{demo.url}{QUEUES}")
    row = page.locator('#bgp-queue-depths tr.bgp-queue[data-queue="celery"]')
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == "celery"
    assert cells[1].strip().isdigit()  # message files waiting in the embedded broker
    assert "demo@" in cells[2]  # the worker consuming it
    assert "kombu's filesystem transport" in page.locator("#bgp-broker-note").inner_text()
    page.click("#toggle-nav-sidebar")
    page.screenshot(path=str(shots / "console-queues.png"), full_page=True)
