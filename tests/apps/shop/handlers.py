"""Handlers of the shop package, declared without a BackgroundProcessing instance."""
from __future__ import annotations

from celery_bgp import CommandHandler, handler

from . import CancelOrder, PlaceOrder


class PlaceOrderHandler(CommandHandler[PlaceOrder]):
    task_options = {"rate_limit": "100/s"}

    def handle(self, command: PlaceOrder) -> dict:
        return {"sku": command.sku, "quantity": command.quantity}


@handler(CancelOrder)
async def cancel_order(command: CancelOrder) -> str:
    return f"cancelled {command.order}"
