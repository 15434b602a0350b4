"""The job list's actions: requeue, cancel, delete, through the job engine's client.

Each action calls the same :class:`~celery_bgp.jobs.client.Jobs` method as
``celery bgp requeue|cancel``: the state machine checks the transition and the
job's lock, election and event handlers run, and requeued jobs are sent by the
project's Celery app. Every action first shows a confirmation page (like Django's
delete confirmation); every job that could not take the action is reported with
its reason. "Delete" moves jobs to the Deleted state (retention removes them
later); rows are never deleted behind the engine's back. Each job done leaves an
entry in its admin History (``log_change``). "Cancel" reports running jobs
apart ("Cancel requested for ..."): they are Cancelled only once they stop; its
confirmation page offers to terminate them (kill the process running each one).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.http import url_has_allowed_host_and_scheme

from celery_bgp.jobs.cancelling import CancelResult

from .admin_support import find_bgp
from .models import Job

__all__ = ["ACTIONS", "MAX_JOBS", "Operation", "action_permission", "make_action"]

#: One action takes at most this many jobs (a "select all" over a million rows is refused).
MAX_JOBS = 1000
#: At most this many per-job failure messages; the rest are summed up.
MAX_MESSAGES = 20


@dataclasses.dataclass(frozen=True)
class Operation:
    """One action: its words, the permission it needs, and the client call."""

    name: str
    verb: str
    past: str
    permission: str
    run: Callable[..., Any]
    explanation: str
    #: Checkboxes of the confirmation page, passed to ``run`` as keyword arguments:
    #: (name, label) pairs.
    options: tuple[tuple[str, str], ...] = ()


def _requeue(jobs: Any, job_id: str, who: str) -> Any:
    return jobs.requeue(job_id, reason=f"requeued by {who} in the admin")


def _cancel(jobs: Any, job_id: str, who: str, terminate: bool = False) -> Any:
    return jobs.cancel(job_id, reason=f"cancelled by {who} in the admin", terminate=terminate)


def _delete(jobs: Any, job_id: str, who: str) -> Any:
    return jobs.delete(job_id, reason=f"deleted by {who} in the admin")


ACTIONS = {
    op.name: op for op in (
        Operation("requeue_jobs", "requeue", "requeued", "requeue", _requeue,
                  "Each job is enqueued again and sent to its queue (commands are "
                  "dispatched again with the same id)."),
        Operation("cancel_jobs", "cancel", "cancelled", "cancel", _cancel,
                  "Waiting jobs become Cancelled now. Running jobs are asked to stop: "
                  "their cancellation token fires within about a second, and each becomes "
                  "Cancelled when its code stops (a job that finishes first keeps its "
                  "result).",
                  (("terminate", "Also terminate running jobs: kill the worker process "
                                 "that runs each one (for code that does not check its "
                                 "cancellation token); they become Cancelled."),)),
        Operation("delete_jobs", "delete", "deleted", "delete", _delete,
                  "Each job moves to the Deleted state and will not run; retention "
                  "removes it later."),
    )
}


def action_permission(model_admin: admin.ModelAdmin, request: HttpRequest,
                      op: Operation) -> bool:
    """Whether the user may run ``op`` (the ``has_<permission>_permission`` check)."""
    return getattr(model_admin, f"has_{op.permission}_permission")(request)


def make_action(op: Operation) -> Callable[..., HttpResponse | None]:
    """The Django admin action function of ``op``."""

    def action(model_admin: admin.ModelAdmin, request: HttpRequest,
               queryset: QuerySet[Job]) -> HttpResponse | None:
        if not action_permission(model_admin, request, op):
            raise PermissionDenied
        ids = list(queryset.order_by("-created").values_list("pk", flat=True)[:MAX_JOBS + 1])
        if len(ids) > MAX_JOBS:
            model_admin.message_user(
                request, f"Select at most {MAX_JOBS} jobs to {op.verb} at once (narrow the "
                "list with the filters); nothing was done.", messages.ERROR)
            return None
        if request.POST.get("post") != "yes":
            return confirmation(model_admin, request, op, ids)
        perform(model_admin, request, op, ids)
        back = return_url(request)
        return HttpResponseRedirect(back) if back else None

    action.__name__ = op.name
    action.short_description = f"{op.verb.capitalize()} selected jobs"  # type: ignore[attr-defined]
    action.allowed_permissions = (op.permission,)  # type: ignore[attr-defined]
    return action


def return_url(request: HttpRequest) -> str:
    """The posted ``_return`` (the page the action started from) when it is a URL of this
    site (relative, or this host; http(s) only), else ``""``: the changelist.

    It goes into the confirmation page's "No, take me back" link and the redirect after
    the action, so ``javascript:`` and other sites' URLs must never pass.
    """
    back = request.POST.get("_return", "")
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()},
                                                require_https=request.is_secure()):
        return back
    return ""


def confirmation(model_admin: admin.ModelAdmin, request: HttpRequest, op: Operation,
                 ids: list[str]) -> TemplateResponse:
    """The "are you sure?" page: the jobs, their states, one button."""
    opts = model_admin.model._meta
    shown = list(Job.objects.filter(pk__in=ids[:100]).order_by("-created")
                 .only("id", "name", "queue", "state", "created"))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"{op.verb.capitalize()} {len(ids)} job{'s' if len(ids) != 1 else ''}?",
        "subtitle": None,
        "op": op,
        "ids": ids,
        "shown": shown,
        "more": len(ids) - len(shown),
        "opts": opts,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "return_to": return_url(request),
        "media": model_admin.media,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/celery_bgp/job/action_confirmation.html", context)


def perform(model_admin: admin.ModelAdmin, request: HttpRequest, op: Operation,
            ids: list[str]) -> tuple[list[str], dict[str, str]]:
    """Run ``op`` on each job; report what was done and, job by job, what was not."""
    bgp = find_bgp()
    if bgp is None or not bgp.has_jobs:
        model_admin.message_user(
            request, "No job engine: set CELERY_BGP_INSTANCE to the project's "
            "BackgroundProcessing (with a job store); nothing was done.", messages.ERROR)
        return [], dict.fromkeys(ids, "no job engine")
    who = request.user.get_username() or "an operator"
    options = {name: request.POST.get(name) == "1" for name, _ in op.options}
    done: list[str] = []
    requested: list[str] = []
    failed: dict[str, str] = {}
    for job_id in ids:
        try:
            result = op.run(bgp.jobs, job_id, who, **options)
            asked = isinstance(result, CancelResult) and result.requested  # running: asked
            (requested if asked else done).append(job_id)
        except Exception as exc:  # report each job's reason, go on with the others
            failed[job_id] = f"{type(exc).__name__}: {exc}"
    if done:
        model_admin.message_user(
            request, f"{op.past.capitalize()} {len(done)} job{'s' if len(done) != 1 else ''}: "
            f"{_listed(done)}.", messages.SUCCESS)
    if requested:
        how = "Terminate" if options.get("terminate") else "Cancel"
        model_admin.message_user(
            request, f"{how} requested for {len(requested)} running "
            f"job{'s' if len(requested) != 1 else ''}: {_listed(requested)}. "
            f"{'They become' if len(requested) != 1 else 'It becomes'} Cancelled when "
            f"{'they stop' if len(requested) != 1 else 'it stops'}.", messages.SUCCESS)
    _history(model_admin, request, op, done, requested, options)
    for job_id, why in list(failed.items())[:MAX_MESSAGES]:
        model_admin.message_user(request, f"Job {job_id} was not {op.past}: {why}",
                                 messages.ERROR)
    if len(failed) > MAX_MESSAGES:
        model_admin.message_user(
            request, f"... and {len(failed) - MAX_MESSAGES} more jobs were not {op.past}.",
            messages.ERROR)
    return done + requested, failed


def _history(model_admin: admin.ModelAdmin, request: HttpRequest, op: Operation,
             done: list[str], requested: list[str], options: dict[str, bool]) -> None:
    """An entry in each job's admin History (who did what, from the list or its page)."""
    asked = set(requested)
    how = " (terminate)" if options.get("terminate") else ""
    for job in Job.objects.filter(pk__in=done + requested).only("id", "name", "state"):
        message = (f"Cancel requested{how} (it was running)" if job.pk in asked
                   else f"{op.past.capitalize()}{how}")
        model_admin.log_change(request, job, f"{message} through the admin action "
                                             f"“{op.verb} selected jobs”.")


def _listed(ids: list[str]) -> str:
    return ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
