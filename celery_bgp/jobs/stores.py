"""Build a job store from a setting: an instance, a factory, or a URL.

``memory://`` (a process-wide store; ``memory://name`` for several),
``django://`` / ``django://<database alias>`` (the ORM store of
``celery_bgp.contrib.django``, which needs the ``[django]`` extra) and
``db+<SQLAlchemy URL>`` (``celery_bgp.contrib.sqlalchemy``, the ``[sqlalchemy]`` extra;
Celery's own ``db+`` convention), or a SQLAlchemy ``Engine``.
"""
from __future__ import annotations

import importlib
import threading
from typing import Any
from urllib.parse import urlsplit

from celery import bootsteps

from ..exceptions import ImproperlyConfigured
from .memory import MemoryJobStore
from .store import JobStore

__all__ = ["STORE_SCHEMES", "SharedStoreStep", "check_job_store", "resolve_job_store"]

STORE_SCHEMES = {
    "django": "celery_bgp.contrib.django.store:DjangoJobStore",
    "db": "celery_bgp.contrib.sqlalchemy.store:SQLAlchemyJobStore",
}

_memory: dict[str, MemoryJobStore] = {}
_memory_lock = threading.Lock()


def check_job_store(value: Any) -> None:
    """Refuse a job store setting that can never work, before anything connects.

    ``None`` (no jobs), a URL with a known scheme, a :class:`JobStore` or a factory.
    """
    if value is None or isinstance(value, JobStore) or callable(value) or _is_engine(value):
        return
    if not isinstance(value, str):
        raise TypeError(f"job_store must be a URL, a JobStore or a factory, "
                        f"not {type(value).__name__}")
    scheme = _scheme(value)
    if scheme != "memory" and scheme not in STORE_SCHEMES:
        known = ", ".join(f"{name}://" if name != "db" else "db+<SQLAlchemy URL>"
                          for name in sorted({"memory", *STORE_SCHEMES}))
        raise ImproperlyConfigured(
            f"unknown job store {value!r}: the scheme must be one of {known} "
            "(or pass a JobStore instance)"
        )


def resolve_job_store(value: Any) -> JobStore:
    """Turn ``bgp_job_store`` into a :class:`JobStore`."""
    if isinstance(value, JobStore):
        return value
    if _is_engine(value):
        return _load(STORE_SCHEMES["db"])(value)  # a SQLAlchemy Engine
    if callable(value):
        return resolve_job_store(value())
    check_job_store(value)
    parts = urlsplit(value)
    scheme = _scheme(value)
    if scheme == "memory":
        with _memory_lock:
            return _memory.setdefault(parts.netloc or "default", MemoryJobStore())
    cls = _load(STORE_SCHEMES[scheme])
    if hasattr(cls, "from_url"):
        return cls.from_url(value)
    return cls(using=parts.netloc or "default")


def _scheme(url: str) -> str:
    """``db+postgresql://...`` -> ``db`` (Celery's prefix for SQLAlchemy URLs)."""
    scheme = urlsplit(url).scheme
    if scheme == "db":  # no database named: an unknown scheme
        return "db://"
    return "db" if scheme.startswith("db+") else scheme


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _is_engine(value: Any) -> bool:
    """A SQLAlchemy Engine (checked without importing SQLAlchemy)."""
    return any(cls.__module__ == "sqlalchemy.engine.base" and cls.__name__ == "Engine"
               for cls in type(value).__mro__)


def process_local(value: Any) -> bool:
    """True for a job store setting that lives in one process's memory."""
    if isinstance(value, MemoryJobStore):
        return True
    return isinstance(value, str) and urlsplit(value).scheme == "memory"


class SharedStoreStep(bootsteps.Step):
    """A ``celery worker`` refuses to start on a job store it cannot share.

    With ``memory://`` the publisher's jobs live in the publisher's memory: a worker
    process would drop every message ("no longer exists"). The in-process workers of
    tests (``celery.contrib.testing``, the ``bgp_worker`` fixture) share the memory and
    are allowed.
    """

    name = "celery-bgp shared job store"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        from celery.apps.worker import Worker  # the `celery worker` command's class

        super().__init__(worker, **kwargs)
        bgp = getattr(worker.app, "bgp", None)
        if not isinstance(worker, Worker) or bgp is None or not bgp.has_jobs:
            return
        if process_local(bgp.settings.job_store):
            raise ImproperlyConfigured(
                f"job_store={bgp.settings.job_store!r} keeps jobs in one process's memory; a "
                "worker cannot see the jobs other processes enqueue. Use a store that "
                "publishers and workers share: job_store='django://' (celery-bgp[django]) "
                "or a JobStore of your own. memory:// is for tests with in-process workers."
            )
