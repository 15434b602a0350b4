"""Celery signal receivers that turn a command task's life into events.

Publisher side: ``before_task_publish`` stamps the dispatch time into the message
(taken *before* sending, as the seed does) and ``after_task_publish`` records
DISPATCHED once the broker accepted it. Worker side: prerun, success, failure,
retry, revoked and unknown-task record the rest. Worker events are never dated
before the dispatch stamp, so the order survives clock skew and racing writes.
Receivers are module-level and connected once, whatever the number of instances.

Under ``acks_late`` the final event (PROCESSED, ERROR) is written before the task
returns, so before its message is acknowledged: a worker killed right after the ack
leaves no command PROCESSING forever (see docs/operations.rst).

The ``bgp_dispatched_at`` and ``bgp_requeues`` headers come from the wire: a malformed
value is ignored (dispatch stamp) or read as 0 (counts), with a warning, and the
events are recorded anyway; a receiver never raises on them.
"""
from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import weakref
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from celery import signals
from celery.exceptions import Reject

from .commands import utcnow
from .events.model import MAX_COUNT, CommandEvent, ErrorInfo, EventStatus
from .events.recorder import flush_all
from .tasks import CommandTask

if TYPE_CHECKING:
    from .processing import BackgroundProcessing

__all__ = ["DISPATCHED_AT", "INSTANCE", "connect", "register_instance"]

#: Message header naming the owning instance (publish-side signals get no app).
INSTANCE = "bgp"
#: Message header with the dispatch time, seconds since the epoch.
DISPATCHED_AT = "bgp_dispatched_at"
#: Message header counting re-dispatches by hand of the same command id.
REQUEUES = "bgp_requeues"

_instances: weakref.WeakValueDictionary[str, BackgroundProcessing] = (
    weakref.WeakValueDictionary()
)
_connected = False
_connect_lock = threading.Lock()
_ONE_TICK = timedelta(microseconds=1)
#: Seconds a stopping worker waits for queued events (longer if the store is down).
SHUTDOWN_FLUSH_TIMEOUT = 5.0
#: A dispatch stamp further ahead of this process's clock is malformed, not skew.
MAX_CLOCK_SKEW = timedelta(days=1)
_MAX_SKEW_SECONDS = MAX_CLOCK_SKEW.total_seconds()

logger = logging.getLogger("celery_bgp")


def register_instance(bgp: BackgroundProcessing) -> None:
    """Make ``bgp`` the owner of messages whose ``bgp`` header is its name."""
    _instances[bgp.name] = bgp
    connect()


def instance_named(name: Any) -> BackgroundProcessing | None:
    """The live instance called ``name``; else this process's only instance, if one."""
    found = _instances.get(name) if isinstance(name, str) else None
    if found is None:
        live = list(_instances.values())
        if len(live) == 1:
            return live[0]
    return found


def connect() -> None:
    """Connect the receivers (idempotent)."""
    global _connected
    with _connect_lock:
        if _connected:
            return
        signals.before_task_publish.connect(_before_publish, weak=False)
        signals.after_task_publish.connect(_after_publish, weak=False)
        signals.task_prerun.connect(_prerun, weak=False)
        signals.task_success.connect(_success, weak=False)
        signals.task_failure.connect(_failure, weak=False)
        signals.task_retry.connect(_retry, weak=False)
        signals.task_revoked.connect(_revoked, weak=False)
        signals.task_unknown.connect(_unknown, weak=False)
        signals.worker_process_shutdown.connect(_flush, weak=False)
        signals.worker_shutdown.connect(_flush, weak=False)
        _connected = True


def _flush(**_: Any) -> None:
    flush_all(SHUTDOWN_FLUSH_TIMEOUT)


# -- headers from the wire ------------------------------------------------------------


def dispatch_stamp(value: Any, command_id: Any = None) -> datetime | None:
    """The ``bgp_dispatched_at`` header as a datetime; None if absent or malformed.

    A number of seconds since the epoch (a numeric string is accepted); anything
    else, or a time further ahead than :data:`MAX_CLOCK_SKEW`, is logged and ignored.
    """
    if value is None:
        return None
    seconds = value if type(value) is float else None  # what a celery-bgp publisher sends
    if seconds is None and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        with contextlib.suppress(ValueError, OverflowError):
            seconds = float(value)
    if seconds is not None and math.isfinite(seconds) \
            and seconds - time.time() <= _MAX_SKEW_SECONDS:
        try:
            return datetime.fromtimestamp(seconds, timezone.utc)
        except (OverflowError, OSError, ValueError):
            pass
    _malformed(DISPATCHED_AT, value, command_id, "ignored: the event is dated now")
    return None


def header_count(value: Any, name: str = REQUEUES, command_id: Any = None) -> int:
    """A count header (``bgp_requeues``, ``retries``) as an int in 0..999999; else 0."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
        return value
    text = isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) <= 6
    whole = isinstance(value, float) and value.is_integer()
    if (text or whole) and 0 <= int(value) <= MAX_COUNT:
        return int(value)
    _malformed(name, value, command_id, "read as 0")
    return 0


def _malformed(name: str, value: Any, command_id: Any, what: str) -> None:
    logger.warning("celery-bgp: malformed %s header %.80r on command %s: %s",
                   name, value, command_id, what)


# -- publisher side -------------------------------------------------------------------


def _before_publish(headers: dict | None = None, **_: Any) -> None:
    if headers and INSTANCE in headers:
        headers[DISPATCHED_AT] = time.time()


def _after_publish(sender: str | None = None, headers: dict | None = None, body: Any = None,
                   routing_key: str | None = None, **_: Any) -> None:
    if not headers or INSTANCE not in headers or headers.get("retries"):
        return  # not a command, or a retry (already recorded as RETRYING)
    bgp = instance_named(headers[INSTANCE])
    if bgp is None:
        return
    command_id = headers.get("id")  # not a string: the recorder quarantines the event
    when = dispatch_stamp(headers.get(DISPATCHED_AT), command_id) or utcnow()
    bgp.record(CommandEvent.trusted(  # fields from the wire: the recorder checks them
        command_id=command_id,
        status=EventStatus.DISPATCHED,
        timestamp=when,
        command_name=bgp.command_name_for_task(sender),
        command=_payload(body),
        queue=routing_key,
        requeues=header_count(headers.get(REQUEUES), REQUEUES, command_id),
    ))


def _payload(body: Any) -> dict | None:
    try:
        payload = body[0][0]
    except (TypeError, IndexError, KeyError):
        return None
    return payload if isinstance(payload, dict) else None


# -- worker side ----------------------------------------------------------------------


def worker_timestamp(request: Any) -> datetime:
    """Now, but never earlier than the dispatch stamp carried by the message."""
    now = utcnow()
    floor = _floor(request) if request is not None else None
    return floor if floor is not None and floor > now else now


#: First item of what the receivers keep on a Celery request between its events. A
#: message's headers become attributes of its request too; no decoder makes this object,
#: so a header named like a kept value (``_bgp_facts``, ``_bgp_floor``) is not taken for it.
_KEPT: Any = object()


def _floor(request: Any) -> datetime | None:
    """The earliest time a worker event of ``request`` may carry, parsed once per request."""
    kept = getattr(request, "_bgp_floor", None)
    if type(kept) is tuple and kept[0] is _KEPT:
        return kept[1]
    value = getattr(request, DISPATCHED_AT, None)
    stamp = dispatch_stamp(value, getattr(request, "id", None)) if value is not None else None
    floor = stamp + _ONE_TICK if stamp is not None else None
    try:  # noqa: SIM105  (per command: contextlib.suppress costs more than the rest)
        request._bgp_floor = (_KEPT, floor)
    except AttributeError:  # a request without a __dict__
        pass
    return floor


def _facts(task: CommandTask, request: Any) -> tuple[Any, dict[str, Any], datetime | None]:
    """What every worker event of one request repeats, read and checked once per request
    (a command records two events or more): ``(_KEPT, the event's fields, floor)``: its
    id, name, worker, retries and requeues, the other fields at their defaults, and the
    floor of its timestamp."""
    facts = getattr(request, "_bgp_facts", None)
    if type(facts) is not tuple or facts[0] is not _KEPT:
        command_id = request.id
        retries = getattr(request, "retries", 0)
        requeues = getattr(request, REQUEUES, None)
        facts = (_KEPT, CommandEvent.fields_with(
            command_id=command_id, command_name=task.command_name,
            worker=getattr(request, "hostname", None),
            retries=retries if type(retries) is int and 0 <= retries <= MAX_COUNT
            else header_count(retries, "retries", command_id),
            requeues=0 if requeues is None else header_count(requeues, REQUEUES, command_id),
        ), _floor(request))
        try:  # noqa: SIM105  (as in _floor)
            request._bgp_facts = facts
        except AttributeError:  # a request without a __dict__
            pass
    return facts


def _event(task: CommandTask, status: EventStatus, request: Any = None,
           command_id: str | None = None, **fields: Any) -> CommandEvent:
    request = request if request is not None else task.request
    _, common, floor = _facts(task, request)
    now = datetime.now(timezone.utc)
    fields["status"] = status
    fields["timestamp"] = floor if floor is not None and floor > now else now
    if command_id:
        fields["command_id"] = command_id
    return CommandEvent.trusted_over(common, fields)


def acks_late(task: Any) -> bool:
    """True when the task's message is acknowledged after it ran (as the worker decides)."""
    return bool(getattr(task, "acks_late", False))


def _prerun(sender: Any = None, task_id: str | None = None, args: Any = None, **_: Any) -> None:
    if isinstance(sender, CommandTask):
        # A celery-bgp dispatcher (its instance header) recorded the payload with
        # DISPATCHED: storing it again per command would double the bytes written.
        # A message from elsewhere (a plain send_task, another language) has no
        # DISPATCHED, so its PROCESSING carries the payload.
        request = sender.request
        sent_by_bgp = getattr(request, INSTANCE, None) is not None
        payload = args[0] if not sent_by_bgp and args and isinstance(args[0], dict) else None
        sender.bgp.record(_event(sender, EventStatus.PROCESSING, request, command_id=task_id,
                                 command=payload))


def _followed(request: Any, *fields: str) -> bool:
    """True when ``request`` sends more work once it ends (a chain's next step, a link, a
    chord's body): Celery has sent it before the task's end signal, so the final event is
    written without lingering, not after the next step's events from another process."""
    for field in fields:  # noqa: SIM110  (a generator in any() costs more, per command)
        if getattr(request, field, None):
            return True
    return False


def _success(sender: Any = None, **_: Any) -> None:
    if isinstance(sender, CommandTask):
        # Before the ack (acks_late): written now, or a kill after the ack loses it.
        request = sender.request
        sender.bgp.record(_event(sender, EventStatus.PROCESSED, request),
                          durable=acks_late(sender),
                          soon=_followed(request, "chain", "callbacks", "chord"))


def _failure(sender: Any = None, task_id: str | None = None, exception: Any = None,
             einfo: Any = None, **_: Any) -> None:
    if isinstance(sender, CommandTask) and exception is not None:
        if isinstance(exception, Reject):
            return  # the processor already recorded why (e.g. an invalid payload)
        text = getattr(einfo, "traceback", None)
        request = sender.request
        sender.bgp.record(_event(sender, EventStatus.ERROR, request, command_id=task_id,
                                 error=ErrorInfo.from_exception(exception, text)),
                          durable=acks_late(sender), soon=_followed(request, "errbacks", "chord"))


def _retry(sender: Any = None, request: Any = None, reason: Any = None, einfo: Any = None,
           **_: Any) -> None:
    if not isinstance(sender, CommandTask):
        return
    exc = getattr(einfo, "exception", None)
    if isinstance(reason, BaseException):
        exc = reason
    exc = getattr(exc, "exc", None) or exc  # celery.exceptions.Retry wraps the cause
    error = ErrorInfo.from_exception(exc, getattr(einfo, "traceback", None)) if exc else None
    sender.bgp.record(_event(sender, EventStatus.RETRYING, request=request, error=error,
                             reason=str(reason) if reason is not None else None))


def _revoked(sender: Any = None, request: Any = None, terminated: bool = False,
             expired: bool = False, signum: Any = None, **_: Any) -> None:
    if not isinstance(sender, CommandTask) or request is None:
        return
    reason = "expired" if expired else ("terminated" if terminated else "revoked")
    if terminated and signum:
        reason = f"terminated by signal {signum}"
    sender.bgp.record(_event(sender, EventStatus.CANCELLED, request=request, reason=reason))


def _unknown(name: str | None = None, id: str | None = None, message: Any = None,
             **_: Any) -> None:
    headers = getattr(message, "headers", None) or {}
    bgp = instance_named(headers.get(INSTANCE))
    if bgp is None or not id:
        return
    bgp.record(CommandEvent(
        command_id=id,
        status=EventStatus.ERROR,
        timestamp=utcnow(),
        command_name=bgp.command_name_for_task(name),
        error=ErrorInfo(
            type="celery_bgp.exceptions.NoHandlerRegistered",
            message=f"unknown command type: no handler for task {name!r} in this worker; "
                    "the message was rejected",
        ),
    ))
