"""A package whose handlers are found by autodiscovery (``shop.handlers``)."""
from __future__ import annotations

from dataclasses import dataclass

from celery_bgp import BackgroundCommand


@dataclass
class PlaceOrder(BackgroundCommand):
    sku: str
    quantity: int = 1


@dataclass
class CancelOrder(BackgroundCommand):
    order: str
