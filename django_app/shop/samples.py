"""The sample work the demo submits: every kind of command and job."""
from __future__ import annotations

from datetime import timedelta

from proj.celery import bgp

from . import jobs
from .commands import PlaceOrder, RefundOrder


def submit() -> dict[str, str]:
    """Dispatch the sample commands and enqueue the sample jobs; name -> id."""
    ids = {}
    order = PlaceOrder(sku="kettle", quantity=2)
    bgp.dispatch(order)
    ids["command: place order (fast)"] = order.id
    refund = RefundOrder(order="A-1001", amount=39.9)
    bgp.dispatch(refund)
    ids["command: refund (fails)"] = refund.id
    ids["job: generate report (slow, progress logs)"] = bgp.jobs.submit(
        jobs.generate_report, args=["2026-10"], properties={"kind": "report"})
    ids["job: charge card (fails, requeue it)"] = bgp.jobs.submit(
        jobs.charge_card, args=["A-1002", 19.5], properties={"tenant": "acme"})
    ids["job: send reminder (delayed 20s)"] = bgp.jobs.submit(
        jobs.send_reminder, args=["ada@example.com"], delay=timedelta(seconds=20))
    pack = bgp.jobs.submit(jobs.pack_order, args=["A-1003"])
    ids["job: pack order"] = pack
    ids["job: ship order (continuation)"] = bgp.jobs.submit(
        jobs.ship_order, args=["A-1003"], after=(pack, "succeeded"))
    return ids
