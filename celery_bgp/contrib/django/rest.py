"""REST polling for commands: the long-running-operation pattern of the seed's web sample.

``POST commands/<name>`` validates the JSON body against the registered command
type, dispatches it and answers 202 with the ``Location`` of its status.
``GET commands/<id>/status`` answers 404 (unknown), 200 with ``Retry-After`` while
it is dispatched or processing, 303 See Other to ``output`` once processed, and an
RFC 9457 problem (``application/problem+json``) when it failed (500, as in the
seed) or was cancelled (410). Every view is authenticated and permission-checked
(``CELERY_BGP_REST_PERMISSION``, default staff only) and POST keeps Django's CSRF
protection: send the ``X-CSRFToken`` header.

Every refusal is a problem too, never Django's HTML error page or a login redirect:
401 (not logged in), 403 (not allowed, or the CSRF check failed), 405 (wrong method),
413 (body above ``DATA_UPLOAD_MAX_MEMORY_SIZE`` or ``bgp_max_payload_bytes``). For
that the views are ``csrf_exempt`` and run the project's own ``CsrfViewMiddleware``
check themselves, after the permission check (only when that middleware is
installed, as before); they are ``login_not_required`` for Django 5.1's
``LoginRequiredMiddleware``.
"""
from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from django.utils.log import log_response
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from ...events.model import EventStatus
from ...exceptions import InvalidCommand, NoHandlerRegistered, PayloadTooLarge

__all__ = ["command_output", "command_status", "problem", "rest_view", "submit_command"]

PROBLEM = "application/problem+json"
SERVER_FIELDS = ("id", "timestamp")


def problem(status: int, title: str, detail: str | None = None, kind: str = "about:blank",
            **extra: Any) -> JsonResponse:
    """An RFC 9457 problem details response."""
    body: dict[str, Any] = {"type": kind, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JsonResponse(body, status=status, content_type=PROBLEM)


def get_bgp() -> Any:
    """The project's BackgroundProcessing: ``CELERY_BGP_INSTANCE`` or the current app's."""
    path = getattr(settings, "CELERY_BGP_INSTANCE", None)
    if path:
        return import_string(path.replace(":", "."))
    from celery import current_app

    bgp = getattr(current_app, "bgp", None)
    if bgp is None:
        raise LookupError("no BackgroundProcessing: set CELERY_BGP_INSTANCE = 'proj.celery.bgp'")
    return bgp


def _permission() -> Callable[[HttpRequest, str | None], bool]:
    rule = getattr(settings, "CELERY_BGP_REST_PERMISSION", "staff")
    if callable(rule):
        return rule
    builtin = {
        "staff": lambda r, name: r.user.is_authenticated and r.user.is_staff,
        "authenticated": lambda r, name: r.user.is_authenticated,
        "any": lambda r, name: True,
    }
    if rule in builtin:
        return builtin[rule]
    return import_string(rule)


def guarded(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """401 for anonymous users, 403 when the permission rule says no or CSRF fails."""

    def check(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        allowed = _permission()(request, kwargs.get("name"))
        if not allowed:
            if not getattr(request.user, "is_authenticated", False):
                response = problem(401, "Authentication required")
                response["WWW-Authenticate"] = 'Session realm="celery-bgp"'
                return response
            return problem(403, "Permission denied")
        refused = csrf_refusal(request)
        return refused if refused is not None else view(request, *args, **kwargs)

    check.__name__ = view.__name__
    check.__doc__ = view.__doc__
    return check


def listed(name: str) -> bool:
    """Whether ``CELERY_BGP_REST_COMMANDS`` (default ``"__all__"``) exposes ``name``."""
    allowed = getattr(settings, "CELERY_BGP_REST_COMMANDS", "__all__")
    return allowed == "__all__" or name in allowed


def may_post(request: HttpRequest, name: str) -> bool:
    """Whether ``POST commands/<name>`` is open to this user (the list and the rule)."""
    return listed(name) and bool(_permission()(request, name))


@functools.lru_cache(maxsize=8)
def _csrf_check_class(middleware: tuple[str, ...]) -> type[CsrfViewMiddleware] | None:
    for path in middleware:
        cls = import_string(path)
        if isinstance(cls, type) and issubclass(cls, CsrfViewMiddleware):
            # The project's own CSRF middleware (with its customisations), answering with
            # the reason instead of rendering CSRF_FAILURE_VIEW (as DRF does).
            return type(f"Rest{cls.__name__}", (cls,),
                        {"_reject": lambda self, request, reason: reason})
    return None


def csrf_refusal(request: HttpRequest) -> HttpResponse | None:
    """Django's CSRF check of ``request``, as the middleware would run it: a 403 problem
    when it fails, None when it passes or no ``CsrfViewMiddleware`` is installed."""
    check = _csrf_check_class(tuple(settings.MIDDLEWARE))
    if check is None:
        return None
    reason = check(lambda r: None).process_view(request, None, (), {})
    if reason is None:
        return None
    response = problem(403, "CSRF check failed",
                       f"{reason} Send the csrftoken cookie's value in the X-CSRFToken "
                       "header (and the Referer/Origin of this site over HTTPS).",
                       kind="urn:celery-bgp:csrf-failed")
    log_response("Forbidden (%s): %s", reason, request.path, response=response,
                 request=request, logger=logging.getLogger("django.security.csrf"))
    return response


def rest_view(*methods: str) -> Callable[[Callable[..., HttpResponse]],
                                         Callable[..., HttpResponse]]:
    """A REST view answering only ``methods``; every refusal is a problem.

    405 for another method, then :func:`guarded` (401/403), then the CSRF check
    (403). The view is ``csrf_exempt`` (Django's middleware would answer its HTML
    page before the view runs; :func:`csrf_refusal` runs the same check) and
    ``login_not_required`` (``LoginRequiredMiddleware`` would redirect to the login
    page; :func:`guarded` answers 401).
    """

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        allowed = guarded(view)

        @functools.wraps(view)
        def handle(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = problem(405, "Method not allowed",
                                   f"{request.method} is not allowed here; use "
                                   f"{' or '.join(methods)}")
                response["Allow"] = ", ".join(methods)
                return response
            return allowed(request, *args, **kwargs)

        handle = csrf_exempt(handle)
        handle.login_required = False  # type: ignore[attr-defined] # Django 5.1+
        return handle

    return decorate


def _exposed(bgp: Any, name: str) -> type | None:
    if not listed(name):
        return None
    bgp.discover()
    try:
        return bgp.registry.type_named(name)
    except NoHandlerRegistered:
        return None


def _status_url(request: HttpRequest, command_id: str) -> str:
    return request.build_absolute_uri(reverse("celery_bgp:command-status", args=[command_id]))


@rest_view("POST")
def submit_command(request: HttpRequest, name: str) -> HttpResponse:
    """Validate and dispatch a command; 202 Accepted with its status URL."""
    bgp = get_bgp()
    command_type = _exposed(bgp, name)
    if command_type is None:
        return problem(404, "Unknown command", f"no command type named {name!r}")
    if request.content_type != "application/json":
        return problem(415, "Unsupported media type", "send the command as application/json")
    try:
        body = json.loads(request.body or b"null")
    except RequestDataTooBig:
        return problem(413, "Command too large", "the body is larger than the server "
                       "accepts (DATA_UPLOAD_MAX_MEMORY_SIZE)")
    except ValueError as exc:
        return problem(400, "Invalid JSON", str(exc))
    except RecursionError:
        return problem(400, "Invalid JSON", "the body is nested too deeply")
    if not isinstance(body, dict):
        return problem(400, "Invalid command", "the body is a JSON object of the command's fields")
    preset = [field for field in SERVER_FIELDS if field in body]
    if preset:
        return problem(400, "Invalid command", f"{', '.join(preset)} are set by the server")
    from ...commands import decode_command, encode_command, new_command_id, utcnow

    try:
        command = decode_command(command_type, {**body, "id": new_command_id(),
                                                "timestamp": utcnow().isoformat()})
        try:
            encode_command(command)  # what dispatch sends; only this may raise ValueError
        except InvalidCommand:
            raise
        except ValueError as exc:  # pydantic: "Maximum serialization depth exceeded"
            return problem(400, "Invalid command",
                           f"the command cannot be encoded as JSON: {exc}")
        bgp.dispatch(command)
    except PayloadTooLarge as exc:
        return problem(413, "Command too large", str(exc))
    except InvalidCommand as exc:
        return problem(400, "Invalid command", str(exc))
    location = _status_url(request, command.id)
    response = JsonResponse({"id": command.id, "status": EventStatus.DISPATCHED.value,
                             "status_url": location}, status=202)
    response["Location"] = location
    response["Retry-After"] = str(_retry_after())
    return response


def _retry_after() -> int:
    return int(getattr(settings, "CELERY_BGP_REST_RETRY_AFTER", 10))


@rest_view("GET")
def command_status(request: HttpRequest, command_id: str) -> HttpResponse:
    """Where the command is: 200 + Retry-After, 303 to the output, or a problem."""
    event = get_bgp().events.latest(command_id)
    if event is None:
        return problem(404, "Unknown command", f"no events for command {command_id}")
    body = {"id": command_id, "status": event.status.value, "command": event.command_name,
            "timestamp": event.timestamp.isoformat()}
    if event.status is EventStatus.PROCESSED:
        output = request.build_absolute_uri(reverse("celery_bgp:command-output",
                                                    args=[command_id]))
        response = JsonResponse({**body, "output_url": output}, status=303)
        response["Location"] = output
        return response
    if event.status is EventStatus.ERROR:
        error = event.error
        return problem(500, "The command failed", error.message if error else None,
                       kind="urn:celery-bgp:command-failed", command_id=command_id,
                       exception_type=error.type if error else None,
                       failed_at=event.timestamp.isoformat())
    if event.status is EventStatus.CANCELLED:
        return problem(410, "The command was cancelled", event.reason,
                       kind="urn:celery-bgp:command-cancelled", command_id=command_id)
    response = JsonResponse(body, status=200)
    response["Retry-After"] = str(_retry_after())
    return response


@rest_view("GET")
def command_output(request: HttpRequest, command_id: str) -> HttpResponse:
    """The handler's return value, from the Celery result backend."""
    bgp = get_bgp()
    event = bgp.events.latest(command_id)
    if event is None or event.status is not EventStatus.PROCESSED:
        return problem(404, "No output", f"command {command_id} has not been processed")
    result = bgp.app.AsyncResult(command_id)
    try:
        value = result.result if result.successful() else None
    except NotImplementedError:  # no result backend configured
        return problem(404, "No output", "the project has no Celery result backend")
    return JsonResponse({"id": command_id, "result": value})
