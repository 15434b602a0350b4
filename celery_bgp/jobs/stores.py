"""Build a job store from a setting: an instance, a factory, or a URL.

``memory://`` (a process-wide store; ``memory://name`` for several) and
``django://`` / ``django://<database alias>`` (the ORM store of
``celery_bgp.contrib.django``, which needs the ``[django]`` extra).
"""
from __future__ import annotations

import importlib
import threading
from typing import Any
from urllib.parse import urlsplit

from ..exceptions import ImproperlyConfigured
from .memory import MemoryJobStore
from .store import JobStore

__all__ = ["STORE_SCHEMES", "resolve_job_store"]

STORE_SCHEMES = {
    "django": "celery_bgp.contrib.django.store:DjangoJobStore",
}

_memory: dict[str, MemoryJobStore] = {}
_memory_lock = threading.Lock()


def resolve_job_store(value: Any) -> JobStore:
    """Turn ``bgp_job_store`` into a :class:`JobStore`."""
    if isinstance(value, JobStore):
        return value
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme == "memory":
            with _memory_lock:
                return _memory.setdefault(parts.netloc or "default", MemoryJobStore())
        target = STORE_SCHEMES.get(parts.scheme)
        if target is None:
            raise ImproperlyConfigured(
                f"unknown job store {value!r}; use memory://, django:// or a JobStore instance"
            )
        module, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        return cls(using=parts.netloc or "default")
    if callable(value):
        return resolve_job_store(value())
    raise ImproperlyConfigured(f"bgp_job_store must be a URL or a JobStore, not {value!r}")
