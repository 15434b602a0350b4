"""Command types only the REST tests use (registered on tests.apps.rest_app.bgp)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery_bgp import BackgroundCommand, handler


@dataclass
class Note(BackgroundCommand):
    """A command with a free-form field: any JSON value, nested as deep as a client likes."""

    data: Any = None


@handler(Note)
def note(command: Note) -> None:
    return None
