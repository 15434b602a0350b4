"""Small pieces the job admin's pages share: the job engine, badges, labels, durations.

The admin steers jobs through the project's ``BackgroundProcessing`` (the same one
the REST views use: ``CELERY_BGP_INSTANCE`` or the current Celery app's), so
requeued jobs are sent by the project's own Celery app and broker.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.utils.html import format_html
from django.utils.safestring import SafeString

from celery_bgp.priority import Priority

__all__ = ["STATE_COLOURS", "find_bgp", "format_duration", "pretty_json", "priority_label",
           "state_badge"]

#: State -> badge colour (background); unknown states are grey.
STATE_COLOURS = {
    "Succeeded": "#2e7d32", "Failed": "#c62828", "Executing": "#0277bd",
    "Enqueued": "#1565c0", "Retrying": "#ef6c00", "Awaiting": "#6a1b9a",
    "Created": "#546e7a", "Idle": "#546e7a", "Cancelled": "#616161", "Deleted": "#9e9e9e",
}


def find_bgp() -> Any | None:
    """The project's BackgroundProcessing, or None when none is configured."""
    from .rest import get_bgp

    try:
        return get_bgp()
    except (LookupError, ImportError):
        return None


def state_badge(state: str) -> SafeString:
    """A coloured label for a state name (the ``bgp-state`` CSS class)."""
    colour = STATE_COLOURS.get(state, "#757575")
    return format_html('<span class="bgp-state" style="background:{}">{}</span>', colour, state)


def priority_label(value: int | None) -> str:
    """``0`` -> ``CRITICAL`` ... ``4`` -> ``NONE``; other numbers as they are."""
    try:
        return Priority(value).name
    except ValueError:
        return str(value)


def format_duration(seconds: float | None) -> str:
    """``0.42s``, ``12.3s``, ``4m 05s``, ``2h 03m``: short enough for a list column."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def run_seconds(started: datetime | None, ended: datetime | None) -> float | None:
    """Seconds from the last start to the end (or None when it never started)."""
    if started is None or ended is None or ended < started:
        return None
    return (ended - started) / timedelta(seconds=1)


def pretty_json(value: Any) -> SafeString:
    """JSON, indented, in a ``<pre>`` (escaped)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=True)
    return format_html('<pre class="bgp-json">{}</pre>', text)
