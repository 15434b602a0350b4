"""Daemons: named long-running callables that the workers keep alive (HiveMind's daemons).

Declare with ``bgp.daemon("name", fn, restart=..., scope=...)``; see and steer with
``bgp.daemons`` (the query API), ``celery -A proj bgp daemons`` and the Django admin.
"""
from __future__ import annotations

from .client import Daemons
from .context import DaemonContext, StopToken
from .model import DaemonNotFound, DaemonRecord, DaemonSpec, Policy, Scope, Status
from .store import DaemonStore, daemon_store_for

__all__ = ["DaemonContext", "DaemonNotFound", "DaemonRecord", "DaemonSpec", "DaemonStore",
           "Daemons", "Policy", "Scope", "Status", "StopToken", "daemon_store_for"]
