"""A worker's own PostgreSQL connection for the job engine's statements, kept between jobs.

Celery's Django fixup closes every Django connection after each task, whatever
``CONN_MAX_AGE`` says (unless ``CELERY_DB_REUSE_MAX`` is set; with Django's connection
pool, a prefork child closes the pool too). A job's worker-side statements (its read,
the Executing write, the final state) would then open a new PostgreSQL session per job:
a server process forked, authenticated and its caches warmed for three small
statements, which halved the jobs' throughput in a Django project.

Those statements are each their own transaction, so they run on a connection that
Django's handler (and so the fixup) does not know of: one per worker thread and
database alias, kept while the worker runs and closed when its process shuts down. A
connection idle for :data:`IDLE_CHECK` seconds is checked (``SELECT 1``) before use, and
the store closes it after an error (``on_idle``), so a server restart costs one retry.
The job's own code and anything inside a ``transaction.atomic()`` still use Django's
connection, as before, and so does an alias with Django's connection pool
(``OPTIONS["pool"]``), which the fixup closes after every task of a prefork child.
"""
from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any

from celery import signals
from django.db import connections

__all__ = ["IDLE_CHECK", "close_all", "connection", "discard", "pooled"]

#: Seconds a kept connection may sit idle before it is checked before use.
IDLE_CHECK = 30.0

_local = threading.local()  # per thread: alias -> _Kept
_live: weakref.WeakSet[_Kept] = weakref.WeakSet()  # every thread's, to close at shutdown
_lock = threading.Lock()


class _Kept:
    __slots__ = ("__weakref__", "pid", "used", "wrapper")

    def __init__(self, wrapper: Any) -> None:
        self.wrapper, self.pid, self.used = wrapper, os.getpid(), time.monotonic()


def connection(alias: str) -> Any:
    """This thread's kept connection (a Django ``DatabaseWrapper``) for ``alias``."""
    slots = getattr(_local, "slots", None)
    if slots is None:
        slots = _local.slots = {}
    kept = slots.get(alias)
    now = time.monotonic()
    if kept is None or kept.pid != os.getpid():  # a forked child opens its own
        wrapper = connections.create_connection(alias)
        wrapper.inc_thread_sharing()  # closed at shutdown by whichever thread runs it
        kept = slots[alias] = _Kept(wrapper)
        with _lock:
            _live.add(kept)
    elif now - kept.used > IDLE_CHECK and kept.wrapper.connection is not None \
            and not kept.wrapper.is_usable():
        _close(kept.wrapper)  # dropped by the server meanwhile: connect again on use
    kept.used = now
    return kept.wrapper


def pooled(wrapper: Any) -> bool:
    """True when the alias of ``wrapper`` uses Django's connection pool
    (``OPTIONS["pool"]``): the pool is shared by every wrapper of the alias and the fixup
    closes it after each task of a prefork child, so a kept connection would be closed
    under it. Django's connection is used then."""
    return bool(wrapper.settings_dict.get("OPTIONS", {}).get("pool"))


def discard(alias: str) -> None:
    """Close this thread's kept connection for ``alias`` (after an error on it)."""
    kept = getattr(_local, "slots", {}).get(alias)
    if kept is not None and kept.pid == os.getpid():
        _close(kept.wrapper)


def close_all(**_: Any) -> None:
    """Close every kept connection this process opened (at worker shutdown); one
    inherited through a fork is its parent's and stays as it is."""
    with _lock:
        kept = [k for k in _live if k.pid == os.getpid()]
    for each in kept:
        _close(each.wrapper)


def _close(wrapper: Any) -> None:
    try:
        wrapper.close()
    except Exception:  # a broken connection is closed all the same
        wrapper.connection = None


signals.worker_process_shutdown.connect(close_all, weak=False)
signals.worker_shutdown.connect(close_all, weak=False)
