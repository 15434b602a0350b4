"""The shop's background jobs (the HiveMind half of the demo): plain functions."""
from __future__ import annotations

import time

from celery_bgp.jobs import CancellationToken, JobContext


class PaymentDeclined(Exception):
    """The card was declined (the first attempts of charge_card)."""


def charge_card(order: str, amount: float, job_context: JobContext) -> str:
    """Fails on its first two attempts, then succeeds: requeue it from the admin."""
    if job_context.job.attempt <= 2:
        raise PaymentDeclined(f"card declined for order {order} (attempt "
                              f"{job_context.job.attempt})")
    job_context.info(f"charged {amount} for order {order}")
    return f"charged {amount}"


def generate_report(month: str, job_context: JobContext, cancellation: CancellationToken,
                    steps: int = 10) -> dict:
    """A slow job (a second a step) that reports its progress as it goes."""
    for step in range(1, steps + 1):
        if cancellation.wait(1.0):
            job_context.warning(f"cancelled at step {step}")
            return {"month": month, "cancelled_at": step}
        job_context.progress(step, steps, message=f"step {step} of {steps}: {month} sales")
        job_context.info(f"report {month}: step {step}/{steps}")
    return {"month": month, "rows": 1234}


def pack_order(order: str) -> str:
    time.sleep(1)
    return f"packed {order}"


def ship_order(order: str) -> str:
    """Runs as a continuation of pack_order."""
    return f"shipped {order}"


def send_reminder(email: str) -> str:
    """Enqueued with a delay."""
    return f"reminded {email}"


def clean_abandoned_carts() -> int:
    """The recurring job."""
    return 0
