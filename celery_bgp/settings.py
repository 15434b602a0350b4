"""Settings: constructor options, then ``bgp_*`` Celery config, then defaults.

Celery's ``config_from_object("django.conf:settings", namespace="CELERY")`` turns
``CELERY_BGP_EVENT_REPOSITORY`` into ``bgp_event_repository``, so Django projects set
everything in settings.py. Resolution is lazy: the Celery config is read on first
use, after the project has had the chance to load it.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

from .events.repository import DEFAULT_EXPIRY, parse_expiry
from .exceptions import ImproperlyConfigured

__all__ = ["DEFAULTS", "Settings", "resolve_settings"]

#: Option name -> default. The Celery setting is ``bgp_<name>``.
DEFAULTS: dict[str, Any] = {
    "event_repository": "memory://",
    "event_expiry": DEFAULT_EXPIRY,
    "event_write": "background",
    # acks_late: seconds a task may wait for its final event to be written (0: no wait)
    "event_final_timeout": 5.0,
    # seconds the event writer waits after an event for more to share its round trip
    "event_linger": 0.05,
    "max_payload_bytes": 1024 * 1024,
    "max_message_bytes": None,  # worker side; None: 8 x max_payload_bytes (celery_bgp.worker)
    "handler_modules": (),
    "job_store": None,
    "job_modules": (),
    "job_retry": None,
    "job_lock_timeout": 60.0,
    "job_on_worker_lost": "requeue",
    "job_retention": 30 * 24 * 3600.0,
    "job_log_level": "INFO",
    "job_monitor_interval": 30.0,
    "job_stalled_after": 300.0,
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved settings of one :class:`~celery_bgp.BackgroundProcessing`."""

    event_repository: Any
    event_expiry: float | None
    event_write: str
    max_payload_bytes: int | None
    handler_modules: tuple[str, ...]
    job_store: Any = None
    job_modules: tuple[str, ...] = ()
    job_retry: Any = None
    job_lock_timeout: float = 60.0
    job_on_worker_lost: str = "requeue"
    job_retention: float | None = 30 * 24 * 3600.0
    job_log_level: int = 20
    job_monitor_interval: float = 30.0
    #: Seconds a due job may stay Enqueued before the monitor sends it again (0: never).
    job_stalled_after: float = 300.0


#: Longest ``bgp_event_linger``: events later than this are not "batched", they are late.
MAX_EVENT_LINGER = 1.0


def parse_linger(value: Any) -> float:
    """``bgp_event_linger`` as seconds (0 to :data:`MAX_EVENT_LINGER`); a clear error else."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds <= MAX_EVENT_LINGER:  # also NaN
        raise ImproperlyConfigured(
            f"bgp_event_linger is seconds from 0 to {MAX_EVENT_LINGER:g}, got {value!r}")
    return seconds


def check_options(options: dict[str, Any]) -> None:
    """Reject unknown constructor options early, naming the known ones."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ImproperlyConfigured(
            f"unknown BackgroundProcessing option(s) {sorted(unknown)}; "
            f"known: {', '.join(DEFAULTS)}"
        )
    _check_stores(options)


def _check_stores(values: dict[str, Any]) -> None:
    """A mistyped store URL fails here, naming the known schemes, not at first write."""
    from .events.repository import check_repository
    from .jobs.stores import check_job_store

    if values.get("event_repository") is not None:
        check_repository(values["event_repository"])
    check_job_store(values.get("job_store"))


def resolve_settings(options: dict[str, Any], conf: Any) -> Settings:
    """Merge explicit options over the Celery config ``conf`` over :data:`DEFAULTS`."""
    values = {}
    for name, default in DEFAULTS.items():
        if name in options:
            values[name] = options[name]
        else:
            values[name] = conf.get(f"bgp_{name}", default)
    _check_stores(values)
    modules = _names(values["handler_modules"])
    max_bytes = values["max_payload_bytes"]
    if values["job_on_worker_lost"] not in ("requeue", "fail"):
        raise ImproperlyConfigured("bgp_job_on_worker_lost is 'requeue' or 'fail'")
    level = values["job_log_level"]
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            raise ImproperlyConfigured(f"unknown bgp_job_log_level {values['job_log_level']!r}")
    return Settings(
        event_repository=values["event_repository"],
        event_expiry=parse_expiry(values["event_expiry"]),
        event_write=str(values["event_write"]),
        max_payload_bytes=None if max_bytes in (None, 0) else int(max_bytes),
        handler_modules=tuple(modules),
        job_store=values["job_store"],
        job_modules=tuple(_names(values["job_modules"])),
        job_retry=values["job_retry"],
        job_lock_timeout=float(values["job_lock_timeout"]),
        job_on_worker_lost=values["job_on_worker_lost"],
        job_retention=parse_expiry(values["job_retention"]),
        job_log_level=level,
        job_monitor_interval=float(values["job_monitor_interval"] or 0),
        job_stalled_after=float(values["job_stalled_after"] or 0),
    )


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [m.strip() for m in value.split(",") if m.strip()]
    return list(value or ())
