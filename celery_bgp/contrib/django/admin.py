"""The Django admin of the job store: a read-only job list and page, actions, a dashboard.

Built for an operator at 3 a.m. on a table of millions of jobs:

- the list reads one page of rows (large JSON columns deferred) with the last start
  and worker as correlated subqueries, counts with PostgreSQL's estimate when
  unfiltered (:mod:`.admin_paging`), filters without ``DISTINCT``
  (:mod:`.admin_filters`) and searches by index (:mod:`.admin_search`);
- a job's page shows its timeline, logs, failure, properties, data and links
  (:mod:`.admin_detail`), each one bounded query;
- requeue, cancel and delete go through the job engine (:mod:`.admin_actions`),
  with permissions ``celery_bgp.requeue_job``, ``celery_bgp.cancel_job`` and
  ``celery_bgp.delete_job``; nothing is edited or added by hand;
- ``dashboard/`` shows counts, waiting, finished jobs over time and run time percentiles,
  live, with server-side SVG charts (:mod:`.admin_dashboard`).
"""
from __future__ import annotations

from datetime import timezone
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.views.main import ALL_VAR, ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from .admin_actions import ACTIONS, action_permission, make_action
from .admin_dashboard import dashboard_view
from .admin_detail import job_details
from .admin_filters import (
    EnvironmentFilter,
    NameFilter,
    PriorityFilter,
    QueueFilter,
    StateFilter,
)
from .admin_paging import SEARCH_COUNT_LIMIT, EstimatedCountPaginator
from .admin_search import MAX_PROPERTY_MATCHES, search_filter, sort_matches
from .admin_support import (
    breakable_name,
    format_duration,
    page_progress,
    pretty_json,
    priority_label,
    progress_bar,
    run_seconds,
    short_id,
    short_time,
    state_badge,
)
from .console.base import nav
from .console.live import (
    JOB_INTERVAL,
    LIST_INTERVAL,
    list_live_url,
    needs_probe,
    progress_part_id,
)
from .models import Job, JobState, OperationsConsole

__all__ = ["JobAdmin", "OperationsConsoleAdmin"]

#: Columns the list never shows: not read for a page of the list.
HEAVY = ("args", "kwargs", "middleware", "options", "result")


class JobChangeList(ChangeList):
    """The list's queryset without the large JSON columns; a narrow search's matches
    sorted rather than found along the ``created`` index (:func:`.sort_matches`); the
    page's rows read once, with the running ones' progress in one more query, and the
    URL its live refresh asks (:mod:`.console.live`)."""

    bgp_live_url = ""

    def get_queryset(self, request: HttpRequest, *args: Any, **kwargs: Any) -> QuerySet:
        jobs = super().get_queryset(request, *args, **kwargs)
        if getattr(request, "bgp_narrow_search", False):
            jobs = jobs.order_by(*sort_matches(jobs.query.order_by))
        return jobs.defer(*HEAVY)

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if needs_probe(request):  # the live probe only needs the filtered queryset
            return
        rows = list(self.result_list)
        reports = page_progress([row.pk for row in rows if row.state == "Executing"])
        for row in rows:
            row.bgp_progress = reports.get(row.pk)
        self.result_list = rows
        self.bgp_live_url = list_live_url(self.model_admin, request, rows)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("job_name", "job_id", "queue", "priority_label", "state_badge", "created_at",
                    "duration", "worker_display")
    list_display_links = ("job_name",)
    list_filter = (StateFilter, QueueFilter, PriorityFilter, NameFilter, EnvironmentFilter,
                   ("created", admin.DateFieldListFilter))
    search_fields = ("id",)  # shows the box; get_search_results does the work
    search_help_text = ("Part of a job name, an id or property value (exact or prefix), "
                        "or property=value (value* for a prefix).")
    ordering = ("-created",)
    list_select_related = False  # no foreign keys: the extras are subqueries (get_queryset)
    list_per_page = 50
    show_full_result_count = False
    if hasattr(admin, "ShowFacets"):  # Django 5.0+: facets would count every filter value
        show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    actions = [make_action(op) for op in ACTIONS.values()]
    fieldsets = (
        # The state is at the top of the page, live (change_form.html), not here.
        (None, {"fields": ("id", "name", "kind", "queue", "priority_label", "environment")}),
        ("Run", {"fields": ("created", "modified", "duration", "attempt", "execution_id",
                            "worker_display", "cancel_requested")}),
        ("Lock", {"fields": ("lock_holder", "lock_acquired", "lock_heartbeat",
                             "lock_expires"), "classes": ("collapse",)}),
        ("Invocation", {"fields": ("arguments", "keyword_arguments", "result_json",
                                   "middleware_json", "options_json")}),
    )

    # -- queries ------------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        runs = (JobState.objects.filter(job=OuterRef("pk"), name="Executing")
                .order_by("-sequence"))
        return super().get_queryset(request).annotate(
            started=Subquery(runs.values("elected")[:1]),
            run_worker=Subquery(runs.values("data__worker")[:1]),
        )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return JobChangeList

    def get_paginator(self, request: HttpRequest, queryset: QuerySet[Job], per_page: int,
                      orphans: int = 0, allow_empty_first_page: bool = True
                      ) -> EstimatedCountPaginator:
        searched = getattr(request, "bgp_narrow_search", None) is not None
        return EstimatedCountPaginator(
            queryset, per_page, orphans, allow_empty_first_page,
            count_limit=SEARCH_COUNT_LIMIT if searched else None,
            uncounted=bool(getattr(request, "bgp_live", None)) and ALL_VAR not in request.GET)

    def get_preserved_filters(self, request: HttpRequest) -> str:
        """A live refresh's row links keep the list's filters, as the list's own do."""
        if getattr(request, "bgp_live", None):
            return urlencode({"_changelist_filters": request.GET.urlencode()})
        return super().get_preserved_filters(request)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Job],
                           search_term: str) -> tuple[QuerySet[Job], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        search = search_filter(term)
        request.bgp_narrow_search = search.narrow  # read by JobChangeList
        if search.capped:
            self.message_user(
                request, f"More than {MAX_PROPERTY_MATCHES} jobs have a property value "
                f"starting with “{term}”: only {MAX_PROPERTY_MATCHES} of them are searched. "
                "Search NAME=VALUE for every match.", messages.WARNING)
        return queryset.filter(search.condition), False

    # -- permissions: read-only, changed only through the actions -----------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.requeue_job")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.cancel_job")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        found = super().get_actions(request)
        found.pop("delete_selected", None)  # a row delete would bypass the job engine
        return found

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [name for _, options in self.fieldsets for name in options["fields"]]

    # -- columns ------------------------------------------------------------------------

    @admin.display(description="name", ordering="name")
    def job_name(self, obj: Job) -> str:
        return breakable_name(obj.name)

    @admin.display(description="id", ordering="id")
    def job_id(self, obj: Job) -> str:
        return short_id(obj.pk)

    @admin.display(description="priority", ordering="priority")
    def priority_label(self, obj: Job) -> str:
        return priority_label(obj.priority)

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: Job) -> str:
        badge = state_badge(obj.state)
        if obj.state == "Executing" and obj.cancel_requested is not None:
            # Asked to stop, not stopped yet: say so until it is Cancelled (or finished).
            badge = format_html('{} <span class="bgp-cancel-requested">cancel requested</span>',
                                badge)
        if obj.state == "Executing":  # its bar, replaced alone by a live refresh
            from celery_bgp.commands import utcnow

            bar = progress_bar(getattr(obj, "bgp_progress", None),
                               getattr(obj, "started", None), utcnow())
            return format_html('{}<br><span id="{}">{}</span>', badge,
                               progress_part_id(obj.pk), bar)
        return badge

    @admin.display(description="created", ordering="created")
    def created_at(self, obj: Job) -> str:
        from celery_bgp.commands import utcnow

        return short_time(obj.created.astimezone(timezone.utc), utcnow())

    @admin.display(description="duration")
    def duration(self, obj: Job) -> str:
        started = getattr(obj, "started", None)
        if started is not None and obj.state == "Executing":
            from celery_bgp.commands import utcnow

            return format_html('{} <span class="bgp-note">so far</span>',
                               format_duration(run_seconds(started, utcnow())))
        return format_duration(run_seconds(started, obj.modified))

    @admin.display(description="worker")
    def worker_display(self, obj: Job) -> str:
        # A lock holder is "worker/pid/execution id": the worker is what an operator
        # reads here (the whole holder is in the job page's Lock section).
        holder = obj.lock_holder.split("/")[0] if obj.lock_holder else None
        return holder or getattr(obj, "run_worker", None) or obj.worker or "—"

    @admin.display(description="args")
    def arguments(self, obj: Job) -> str:
        return pretty_json(obj.args)

    @admin.display(description="kwargs")
    def keyword_arguments(self, obj: Job) -> str:
        return pretty_json(obj.kwargs)

    @admin.display(description="result")
    def result_json(self, obj: Job) -> str:
        return pretty_json(obj.result)

    @admin.display(description="middleware")
    def middleware_json(self, obj: Job) -> str:
        return pretty_json(obj.middleware)

    @admin.display(description="options")
    def options_json(self, obj: Job) -> str:
        return pretty_json(obj.options)

    # -- views --------------------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if request.method == "POST":
            self._check_action_permission(request)
        extra = {"dashboard_url": reverse(f"{self.admin_site.name}:celery_bgp_job_dashboard"),
                 "console_nav": nav(self, "celery_bgp_job_changelist"),
                 "live_interval": LIST_INTERVAL}
        return super().changelist_view(request, {**extra, **(extra_context or {})})

    def _check_action_permission(self, request: HttpRequest) -> None:
        """403 for a job action the user may not run (Django would just ignore it)."""
        names = request.POST.getlist("action")
        try:
            name = names[int(request.POST.get("index", 0))]
        except (IndexError, ValueError):
            return
        op = ACTIONS.get(name)
        if op is not None and not action_permission(self, request, op):
            raise PermissionDenied

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "", obj: Any = None
                           ) -> HttpResponse:
        if obj is not None:
            context.update(job_details(obj, self.admin_site))
            context["job"] = obj
            context["job_actions"] = [op for op in ACTIONS.values()
                                      if action_permission(self, request, op)]
            context["changelist_url"] = reverse(
                f"{self.admin_site.name}:celery_bgp_job_changelist")
            context["show_delete"] = False
            context["console_nav"] = nav(self, "celery_bgp_job_changelist")
            context["live_interval"] = JOB_INTERVAL
            # Without the state (str(job) has it): the page's live part shows the state.
            context["subtitle"] = f"{obj.name} [{obj.pk}]"
        return super().render_change_form(request, context, add, change, form_url, obj)

    def delete_view(self, request: HttpRequest, object_id: str,
                    extra_context: Any = None) -> HttpResponse:
        """Rows are not deleted by hand: the Delete action moves a job to Deleted."""
        self.message_user(request, "Use the “Delete selected jobs” action: a job is deleted "
                          "through the job engine.", messages.WARNING)
        return HttpResponseRedirect(reverse(f"{self.admin_site.name}:celery_bgp_job_change",
                                            args=[object_id]))

    def get_urls(self) -> list[Any]:
        # cacheable: its live parts answer 304 to If-None-Match (it sets its own headers)
        dashboard = self.admin_site.admin_view(self.dashboard_view, cacheable=True)
        from .console import console_urls

        return [path("dashboard/", dashboard, name="celery_bgp_job_dashboard"),
                *console_urls(self), *super().get_urls()]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """The console's dashboard, live (:mod:`.admin_dashboard`)."""
        return dashboard_view(self, request)


@admin.register(OperationsConsole)
class OperationsConsoleAdmin(admin.ModelAdmin):
    """The admin index's link to the console: its list is the jobs dashboard."""

    def _may_view_jobs(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.view_job")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._may_view_jobs(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_view_jobs(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        def to_dashboard(request: HttpRequest) -> HttpResponse:
            return HttpResponseRedirect(
                reverse(f"{self.admin_site.name}:celery_bgp_job_dashboard"))

        return [path("", self.admin_site.admin_view(to_dashboard),
                     name="celery_bgp_operationsconsole_changelist")]


from . import admin_daemons as _admin_daemons  # noqa: E402,F401  (daemons, issue 16)
