"""Handlers of the shop's commands (found by bgp.autodiscover_handlers())."""
from __future__ import annotations

from celery_bgp import CommandHandler, handler

from .commands import PlaceOrder, RefundOrder

PRICES = {"tea": 4.5, "mug": 12.0, "kettle": 39.9}


class PlaceOrderHandler(CommandHandler[PlaceOrder]):
    def handle(self, command: PlaceOrder) -> dict:
        total = round(PRICES.get(command.sku, 10.0) * command.quantity, 2)
        return {"sku": command.sku, "quantity": command.quantity, "total": total}


class RefundDeclined(Exception):
    """The payment provider said no."""


@handler(RefundOrder)
def refund(command: RefundOrder) -> None:
    raise RefundDeclined(f"refund of {command.amount} for order {command.order} was declined")
