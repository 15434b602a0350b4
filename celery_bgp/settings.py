"""Settings: constructor options, then ``bgp_*`` Celery config, then defaults.

Celery's ``config_from_object("django.conf:settings", namespace="CELERY")`` turns
``CELERY_BGP_EVENT_REPOSITORY`` into ``bgp_event_repository``, so Django projects set
everything in settings.py. Resolution is lazy: the Celery config is read on first
use, after the project has had the chance to load it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .events.repository import DEFAULT_EXPIRY, parse_expiry
from .exceptions import ImproperlyConfigured

__all__ = ["DEFAULTS", "Settings", "resolve_settings"]

#: Option name -> default. The Celery setting is ``bgp_<name>``.
DEFAULTS: dict[str, Any] = {
    "event_repository": "memory://",
    "event_expiry": DEFAULT_EXPIRY,
    "event_write": "background",
    "max_payload_bytes": 1024 * 1024,
    "handler_modules": (),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved settings of one :class:`~celery_bgp.BackgroundProcessing`."""

    event_repository: Any
    event_expiry: float | None
    event_write: str
    max_payload_bytes: int | None
    handler_modules: tuple[str, ...]


def check_options(options: dict[str, Any]) -> None:
    """Reject unknown constructor options early, naming the known ones."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ImproperlyConfigured(
            f"unknown BackgroundProcessing option(s) {sorted(unknown)}; "
            f"known: {', '.join(DEFAULTS)}"
        )


def resolve_settings(options: dict[str, Any], conf: Any) -> Settings:
    """Merge explicit options over the Celery config ``conf`` over :data:`DEFAULTS`."""
    values = {}
    for name, default in DEFAULTS.items():
        if name in options:
            values[name] = options[name]
        else:
            values[name] = conf.get(f"bgp_{name}", default)
    modules = values["handler_modules"]
    if isinstance(modules, str):
        modules = [m.strip() for m in modules.split(",") if m.strip()]
    max_bytes = values["max_payload_bytes"]
    return Settings(
        event_repository=values["event_repository"],
        event_expiry=parse_expiry(values["event_expiry"]),
        event_write=str(values["event_write"]),
        max_payload_bytes=None if max_bytes in (None, 0) else int(max_bytes),
        handler_modules=tuple(modules),
    )
