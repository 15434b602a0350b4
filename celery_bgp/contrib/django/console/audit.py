"""The admin History entry of a console action whose target is no model row.

A worker or a broker queue has no row of its own, so the action is logged against
the job model's content type with no object id: it shows in the admin index's
"Recent actions" and in any LogEntry list, with a message that names the target
(``worker w1@host: shutdown``). Actions on jobs use ``model_admin.log_change``
on the job itself, so they show in that job's History too.
"""
from __future__ import annotations

from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.http import HttpRequest

__all__ = ["log_console_action"]


def log_console_action(model_admin: Any, request: HttpRequest, target: str,
                       message: str) -> LogEntry:
    """Record ``message`` about ``target`` (e.g. ``worker w1@host``) by the request's user."""
    content_type = ContentType.objects.get_for_model(model_admin.model, for_concrete_model=True)
    return LogEntry.objects.create(
        user_id=request.user.pk, content_type=content_type, object_id=None,
        object_repr=target[:200], action_flag=CHANGE, change_message=message)
