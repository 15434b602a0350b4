"""URLs of the REST polling API: ``path("bgp/", include("celery_bgp.contrib.django.urls"))``."""
from __future__ import annotations

from django.urls import path

from .openapi import openapi_view
from .rest import command_output, command_status, submit_command

app_name = "celery_bgp"

urlpatterns = [
    path("commands/<str:name>", submit_command, name="command-submit"),
    path("commands/<str:command_id>/status", command_status, name="command-status"),
    path("commands/<str:command_id>/output", command_output, name="command-output"),
    path("openapi.json", openapi_view, name="openapi"),
]
