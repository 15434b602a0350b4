"""The daemons' admin: every daemon and worker copy, its logs, and stop/start/restart.

Rows are read-only; the three actions need the ``celery_bgp.control_daemon``
permission, write what the operator wants on the daemon's row (the workers act on it
within a heartbeat, see :mod:`celery_bgp.daemons.runner`) and are recorded in each
daemon's History.
"""
from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from celery_bgp.commands import utcnow
from celery_bgp.daemons.model import row_id

from .admin_support import pretty_json
from .daemon_models import Daemon, DaemonLog
from .daemon_store import DjangoDaemonStore

__all__ = ["DaemonAdmin"]

COLOURS = {"running": "#2e7d32", "starting": "#0277bd", "stopped": "#757575",
           "faulted": "#c62828"}
#: action -> (desired, new generation, past tense)
STEERING = {"stop": ("stopped", False, "stop"), "start": ("running", True, "start"),
            "restart": ("running", True, "restart")}


def _steer(action: str):
    desired, new_generation, verb = STEERING[action]

    def run(model_admin: DaemonAdmin, request: HttpRequest, queryset: QuerySet[Daemon]):
        if not model_admin.has_control_permission(request):
            raise PermissionDenied
        store = DjangoDaemonStore(using=queryset.db)
        names = []
        for daemon in queryset.order_by("name", "instance"):
            control = row_id(daemon.environment, daemon.name)
            if control in names:
                continue
            store.steer(control, desired, new_generation)
            names.append(control)
            target = Daemon.objects.using(queryset.db).filter(pk=control).first() or daemon
            model_admin.log_change(request, target, f"Asked to {verb} (admin action).")
        model_admin.message_user(
            request, f"Asked to {verb} {len(names)} daemon{'s' if len(names) != 1 else ''}: "
            f"{', '.join(n.split(':', 1)[1] for n in names)}. The workers act on it within "
            "a few seconds.", messages.SUCCESS)

    run.__name__ = f"{action}_daemons"
    run.short_description = f"{action.capitalize()} selected daemons"  # type: ignore[attr-defined]
    run.allowed_permissions = ("control",)  # type: ignore[attr-defined]
    return run


@admin.register(Daemon)
class DaemonAdmin(admin.ModelAdmin):
    """Read-only list and page of daemons; stop/start/restart as actions."""

    list_display = ("name", "copy", "scope", "status_badge", "desired", "worker", "since",
                    "restarts", "error_line")
    list_filter = ("status", "scope", "desired", "environment")
    search_fields = ("name", "worker")
    ordering = ("name", "instance")
    actions = [_steer("stop"), _steer("start"), _steer("restart")]
    fields = ("name", "environment", "scope", "instance", "status_badge", "desired", "worker",
              "since", "restarts", "generation", "lease_holder", "lease_expires", "last_error",
              "state_json", "properties_json", "recent_logs")

    @admin.display(description="copy on", ordering="instance")
    def copy(self, obj: Daemon) -> str:
        return obj.instance or "—"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Daemon) -> Any:
        now = utcnow()
        lost = obj.status in ("starting", "running") and (
            obj.lease_expires is None or obj.lease_expires < now)
        status = "faulted" if lost else obj.status
        label = f"{status} (worker lost)" if lost else status
        if obj.scope == "worker" and not obj.instance:  # a worker daemon: its copies
            rows = (Daemon.objects.using(obj._state.db)
                    .filter(environment=obj.environment, name=obj.name).exclude(instance="")
                    .values_list("status", "lease_expires"))
            copies = [s if s not in ("starting", "running") or (e and e >= now) else "faulted"
                      for s, e in rows]
            running = copies.count("running")
            status = "running" if running else (copies[0] if copies else obj.status)
            label = f"{status} ({running} of {len(copies)} workers)"
        return format_html('<span class="bgp-state" style="background:{}">{}</span>',
                           COLOURS.get(status, "#757575"), label)

    @admin.display(description="last error")
    def error_line(self, obj: Daemon) -> str:
        lines = (obj.last_error or "").strip().splitlines()
        return lines[-1][:120] if lines else ""

    @admin.display(description="state")
    def state_json(self, obj: Daemon) -> Any:
        return pretty_json(obj.state)

    @admin.display(description="properties")
    def properties_json(self, obj: Daemon) -> Any:
        return pretty_json(obj.properties)

    @admin.display(description="logs (newest 50)")
    def recent_logs(self, obj: Daemon) -> Any:
        rows = (DaemonLog.objects.using(obj._state.db)
                .filter(environment=obj.environment, daemon=obj.name).order_by("-id")[:50])
        return format_html("<table>{}</table>", format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((f"{r.time:%Y-%m-%d %H:%M:%S}", logging.getLevelName(r.level), r.worker or "",
              r.message) for r in rows)))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_control_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.control_daemon")
