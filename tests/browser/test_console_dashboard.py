"""The console's dashboard in a real browser on the real demo: its charts render with axes,
legends and hover titles, and its counts change by themselves (no reload) when an order
placed through the demo's REST API (as the README shows) is run by the demo's real worker.
The screenshot is ``console-dashboard.png``."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

SUCCEEDED = '#bgp-states a[href$="state=Succeeded"] .bgp-count'


def count(page, selector: str) -> int:
    found = page.locator(selector)
    return int(found.inner_text().replace(",", "").strip()) if found.count() else 0


def place_order(page, url: str) -> None:
    """POST a PlaceOrder command as the logged-in admin (session cookie + CSRF header)."""
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(f"{url}/bgp/commands/shop.commands.PlaceOrder",
                                 data='{"sku": "kettle", "quantity": 1}',
                                 headers={"Content-Type": "application/json",
                                          "X-CSRFToken": csrf, "Referer": url})
    assert response.status in (200, 201, 202), response.text()


def test_the_dashboard_draws_its_charts_and_updates_by_itself(demo, admin_page, shots):
    page = admin_page
    page.goto(f"{demo.url}/admin/celery_bgp/job/dashboard/")
    page.wait_for_selector("#bgp-chart-hour")
    for chart in ("#bgp-chart-hour", "#bgp-chart-day", "#bgp-chart-durations"):
        box = page.locator(chart).bounding_box()
        assert box and box["width"] > 600 and box["height"] > 100, chart
    hour = page.locator("#bgp-chart-hour")
    assert "jobs finished per minute" in hour.inner_html() and "succeeded" in hour.inner_html()
    assert page.locator("#bgp-chart-hour .bgp-bar-group > title").count() == 60
    assert page.locator("#bgp-chart-day .bgp-bar-group > title").count() == 24
    assert "shop.jobs:" in page.locator("#bgp-chart-durations").inner_html()
    assert "celery" in page.locator("#bgp-queues").inner_text()

    # The page must change in place: a full reload would drop this marker.
    page.evaluate("document.body.dataset.bgpSamePage = '1'")
    before = count(page, SUCCEEDED)
    place_order(page, demo.url)
    page.wait_for_function(
        "([selector, before]) => { const n = document.querySelector(selector);"
        " return n && parseInt(n.textContent.replace(/,/g, ''), 10) > before; }",
        arg=[SUCCEEDED, before], timeout=30_000)
    assert page.evaluate("document.body.dataset.bgpSamePage") == "1"
    assert count(page, SUCCEEDED) > before
    assert page.locator("#bgp-chart-hour").count() == 1  # the refreshed part has its chart

    page.click("#toggle-nav-sidebar")  # more room for the charts
    page.screenshot(path=str(shots / "console-dashboard.png"), full_page=True)
