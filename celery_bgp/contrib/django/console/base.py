"""What every console page shares: permissions, the admin's context, live fragments.

A live page marks the parts that refresh with ``data-bgp-live="<url>"`` (see
``static/celery_bgp/console.js``): the script asks that URL with the header
``X-BGP-Live: 1`` every few seconds and swaps the element's content for the answer.
A view answers such a request with only the fragment (:func:`is_live`), and may
answer ``204 No Content`` when nothing changed (the script then keeps what it shows).
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

__all__ = ["check_perm", "is_live", "nav", "render", "unchanged"]

#: The console's navigation: (URL name under the admin site, label).
NAV = (
    ("celery_bgp_job_dashboard", "Dashboard"),
    ("celery_bgp_job_changelist", "Jobs"),
    ("celery_bgp_console_workers", "Workers"),
    ("celery_bgp_console_queues", "Queues"),
    ("celery_bgp_console_recurring", "Recurring"),
)


def is_live(request: HttpRequest) -> bool:
    """True for the live script's refresh request (answer with the fragment only)."""
    return request.headers.get("X-BGP-Live") == "1"


def unchanged() -> HttpResponse:
    """The answer to a refresh when nothing changed: the page keeps what it shows."""
    return HttpResponse(status=204)


def check_perm(model_admin: Any, request: HttpRequest, perm: str | None = None) -> None:
    """403 unless the user may view jobs (and has ``celery_bgp.<perm>`` when given)."""
    if not model_admin.has_view_or_change_permission(request):
        raise PermissionDenied
    if perm is not None and not request.user.has_perm(f"{model_admin.opts.app_label}.{perm}"):
        raise PermissionDenied


def nav(model_admin: Any, current: str) -> list[dict[str, Any]]:
    site = model_admin.admin_site.name
    return [{"url": reverse(f"{site}:{name}"), "label": label, "current": name == current}
            for name, label in NAV]


def render(model_admin: Any, request: HttpRequest, template: str, context: dict[str, Any],
           *, title: str, current: str) -> HttpResponse:
    """A console page (or, for a live refresh, its ``fragment`` template when given)."""
    site = model_admin.admin_site
    request.current_app = site.name
    if is_live(request) and context.get("fragment"):
        return TemplateResponse(request, context["fragment"], context)
    full = {
        **site.each_context(request),
        "title": title,
        "subtitle": None,
        "opts": model_admin.opts,
        "console_nav": nav(model_admin, current),
        "changelist_url": reverse(f"{site.name}:celery_bgp_job_changelist"),
        **context,
    }
    return TemplateResponse(request, template, full)
