"""The operations console: pages of the job admin beside the list and a job's page.

Each page is a module of this package with a ``urls(model_admin)`` function returning
its URL patterns (mounted under the job admin, ``/admin/celery_bgp/job/...``) and
views rendered through :func:`.base.render` (the admin's context, its permissions,
the console's navigation and live refresh). The list of pages is :data:`PAGES`.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PAGES", "console_urls"]

#: Console page modules, in navigation order (the dashboard and the list live in admin.py).
PAGES = ("workers", "queues", "recurring", "live")


def console_urls(model_admin: Any) -> list[Any]:
    """Every console page's URL patterns, for :meth:`JobAdmin.get_urls`."""
    found: list[Any] = []
    for name in PAGES:
        module = importlib.import_module(f"{__name__}.{name}")
        found.extend(module.urls(model_admin))
    return found
