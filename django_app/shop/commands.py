"""The shop's typed commands (the BackgroundProcessing half of the demo)."""
from __future__ import annotations

from dataclasses import dataclass

from celery_bgp import BackgroundCommand


@dataclass
class PlaceOrder(BackgroundCommand):
    """Take an order: fast, always succeeds."""

    sku: str
    quantity: int = 1


@dataclass
class RefundOrder(BackgroundCommand):
    """Refund an order: the payment provider refuses, so this one fails."""

    order: str
    amount: float
