"""Console page: queues (to be built)."""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

from .base import check_perm, render


def urls(model_admin: Any) -> list[Any]:
    def view(request: HttpRequest) -> HttpResponse:
        check_perm(model_admin, request)
        return render(model_admin, request, "admin/celery_bgp/console/page.html", {},
                      title="Queues", current="celery_bgp_console_queues")

    return [path("queues/", model_admin.admin_site.admin_view(view),
                 name="celery_bgp_console_queues")]
