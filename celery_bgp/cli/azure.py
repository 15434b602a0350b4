"""``celery bgp scheduled``: delayed tasks waiting in Azure Storage Queue (``azurequeue://``).

On Redis, ``celery inspect scheduled`` lists eta/countdown tasks because workers hold
them in memory. ``azurequeue://`` leaves the delay to Azure, where no worker sees the
message until it is due; this command reads the record the publisher wrote (see
:mod:`celery_bgp.transport.scheduled`). It needs no ``BackgroundProcessing`` on the app.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import click
from celery.bin.base import CeleryCommand

from . import bgp, json_option
from .output import Output

__all__ = ["scheduled"]


@bgp.command("scheduled", cls=CeleryCommand)
@click.argument("queues", nargs=-1)
@json_option
def scheduled(queues: tuple[str, ...], as_json: bool, **_: Any) -> None:
    """Delayed (eta/countdown) tasks per queue with their due time (azurequeue:// only)."""
    click_ctx = click.get_current_context()
    out = Output(as_json, no_color=bool(getattr(click_ctx.obj, "no_color", False)))
    app = click_ctx.obj.app
    with app.connection_for_write() as conn:
        transport = conn.transport
        index = getattr(transport, "scheduled", None)
        if index is None:
            out.fail("bgp scheduled reads the azurequeue:// broker only; on "
                     f"{conn.transport_cls} use `celery inspect scheduled`")
        if not index.enabled:
            out.fail("delayed messages are not recorded: the scheduled_table transport "
                     "option is off")
        found = index.list(list(queues) or None)
    now = datetime.now(timezone.utc)
    if out.as_json:
        out.json({"scheduled": found})
        return
    out.table(f"Delayed tasks waiting in Azure ({len(found)})",
              ["queue", "due (UTC)", "in", "task", "task id", "message id"],
              ([m.queue, m.due, _until(m.due, now), m.task, m.task_id, m.message_id]
               for m in found))


def _until(due: datetime | None, now: datetime) -> str:
    if due is None:
        return "?"
    seconds = (due - now).total_seconds()
    if seconds <= 0:
        return "due (waiting for a worker)"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
