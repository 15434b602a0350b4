"""Worker-side message checks: one bad message never stops a worker.

Anyone who can write to a queue can put any bytes there, and Celery trusts what it
reads: a message without an ``id`` header makes the consumer raise ``KeyError('id')``
(the worker exits on RabbitMQ and Azure, and reconnects in a loop on Redis), a
``timelimit`` of the wrong shape fails in ``execute_using_pool``, an unhashable ``task``
in the strategy lookup, and kombu inflates a compressed body in the main process
before anything looks at its size. Two layers, installed on every app that has a
:class:`~celery_bgp.BackgroundProcessing` (:func:`install`):

- :class:`MessageGuard`, a consumer bootstep, wraps Celery's ``on_task_received`` for
  *all* tasks of the app. Before Celery reads a message it checks the protocol-2
  headers Celery's request reads (types and formats, see :func:`check_headers`); a
  protocol-1 message (no ``task`` header: the task name is inside the body) must be
  JSON and within ``bgp_max_message_bytes`` before it is decoded. A message that fails,
  or that makes Celery raise anyway, is dead-lettered with the reason (rejected
  without requeue: RabbitMQ moves it to the queue's dead-letter exchange, if any;
  ``azurequeue://`` to the ``-poison`` queue; Redis drops it), logged, and recorded as
  an ERROR event when it names a command task and an id. It also bounds
  decompression (:mod:`celery_bgp.inflate`) and takes the task consumer's decode
  errors (an undecodable or refused compressed body) the same way.
- :func:`json_only_strategy`, the strategy of command and job tasks, refuses before
  any decoding a body that is not JSON, larger than ``bgp_max_message_bytes`` (and a
  command payload larger than ``bgp_max_payload_bytes``), not a Celery
  ``[args, kwargs, embed]`` triple, or, for ``bgp.job``, not ``(job_id, execution_id)``.

Valid messages take the same path as before, plus a few dictionary lookups.
"""
from __future__ import annotations

import json
import logging
import math
from datetime import datetime
from typing import Any

import pydantic_core
from celery import bootsteps, signals
from celery.exceptions import InvalidTaskError
from celery.utils.time import maybe_iso8601, maybe_make_aware

from . import inflate
from .exceptions import ImproperlyConfigured, InvalidCommand

__all__ = [
    "MessageGuard",
    "check_headers",
    "check_job_arguments",
    "check_message",
    "dead_letter",
    "install",
    "json_only_strategy",
    "message_limit",
]

logger = logging.getLogger("celery_bgp.worker")

JSON_CONTENT_TYPE = "application/json"
#: Body limit when bgp_max_message_bytes is not set: this many times the payload limit
#: (room for JSON escaping, the Celery envelope, and the signatures a chain carries).
MESSAGE_LIMIT_FACTOR = 8

#: Protocol-2 headers Celery's request reads as strings (when present and not None).
_OPTIONAL_STRINGS = ("root_id", "parent_id", "group", "shadow", "argsrepr", "kwargsrepr")
_NUMBER = (int, float)
_NO_LIMITS = [None, None]
_MISSING = object()


def _kind(value: Any) -> str:
    """A value's type for an error message (never the value: it is untrusted)."""
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    return type(value).__name__


def _check_datetime(name: str, value: Any, where: str) -> str | None:
    if isinstance(value, datetime):
        return None
    if not isinstance(value, str):
        return f"the {name!r} {where} must be an ISO 8601 date-time string, got {_kind(value)}"
    try:
        when = maybe_iso8601(value)
        if when is not None:
            maybe_make_aware(when).timestamp()
    except (ValueError, TypeError, OverflowError, AttributeError, OSError):
        return f"the {name!r} {where} is not a valid ISO 8601 date-time"
    return None


def _check_limit(value: Any) -> bool:
    """A time limit: None, or seconds >= 0 that a float can hold (the pool's timers)."""
    if value is None:
        return True
    if not isinstance(value, _NUMBER) or isinstance(value, bool):
        return False
    try:
        seconds = float(value)
    except OverflowError:
        return False
    return math.isfinite(seconds) and seconds >= 0


def check_headers(headers: Any, where: str = "header") -> str | None:
    """Why these protocol-2 headers would trip Celery's worker, or None if they are fine.

    Checks what the consumer, the strategy and the request read in the main process:
    ``task`` and ``id`` (non-empty strings), ``root_id``/``parent_id``/``group``/
    ``shadow``/``argsrepr``/``kwargsrepr`` (strings or None), ``eta``/``expires`` (ISO
    8601), ``retries`` (an int >= 0), ``timelimit`` (``[hard, soft]``, numbers >= 0 or
    None), ``group_index`` (int or None), ``stamped_headers`` (list of strings) and
    ``stamps`` (an object). The reason names the header, never its value.
    """
    if not isinstance(headers, dict):
        return f"message headers must be an object, got {_kind(headers)}"
    get = headers.get
    task = get("task")
    if not isinstance(task, str) or not task:
        return f"the 'task' {where} must be a string (not empty), got {_kind(task)}"
    task_id = get("id", _MISSING)
    if not isinstance(task_id, str) or not task_id:
        if task_id is _MISSING:
            return f"the 'id' {where} is missing"
        return f"the 'id' {where} must be a string (not empty), got {_kind(task_id)}"
    for name in _OPTIONAL_STRINGS:
        value = get(name)
        if value is not None and not isinstance(value, str):
            return f"the {name!r} {where} must be a string, got {_kind(value)}"
    retries = get("retries", 0)
    if type(retries) is not int or retries < 0:  # exactly int: a bool is not a count
        return f"the 'retries' {where} must be an integer >= 0, got {_kind(retries)}"
    timelimit = get("timelimit")
    if timelimit is not None and timelimit != _NO_LIMITS and not (
        isinstance(timelimit, (list, tuple)) and len(timelimit) == 2
        and _check_limit(timelimit[0]) and _check_limit(timelimit[1])
    ):
        return (f"the 'timelimit' {where} must be [hard, soft] (seconds >= 0 or null), "
                f"got {_kind(timelimit)}")
    eta, expires = get("eta"), get("expires")
    if eta is not None or expires is not None:
        for name, value in (("eta", eta), ("expires", expires)):
            if value is not None:
                problem = _check_datetime(name, value, where)
                if problem:
                    return problem
    group_index = get("group_index")
    if group_index is not None and type(group_index) is not int:
        return f"the 'group_index' {where} must be an integer, got {_kind(group_index)}"
    stamped = get("stamped_headers")
    if stamped is not None and not (isinstance(stamped, list)
                                    and all(isinstance(s, str) for s in stamped)):
        return f"the 'stamped_headers' {where} must be a list of strings"
    stamps = get("stamps")
    if stamps is not None and not isinstance(stamps, dict):
        return f"the 'stamps' {where} must be an object, got {_kind(stamps)}"
    return None


def check_job_arguments(name: str, args: Any, kwargs: Any) -> str | None:
    """Why ``args``/``kwargs`` do not bind to ``job(job_id, execution_id)``, or None."""
    names = ("job_id", "execution_id")
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        return f"{name} takes (job_id, execution_id): its arguments are not [args, kwargs]"
    if (len(args) > 2 or len(args) + len(kwargs) != 2
            or any(key not in names[len(args):] for key in kwargs)):
        return (f"{name} takes (job_id, execution_id); got {len(args)} positional and "
                f"{len(kwargs)} keyword arguments")
    if not all(isinstance(v, str) and v for v in (*args, *kwargs.values())):
        return f"{name} takes (job_id, execution_id) as two non-empty strings"
    return None


def _size(body: Any) -> int:
    return len(body) if isinstance(body, (bytes, bytearray, str, memoryview)) else 0


def check_message(message: Any, max_bytes: int | None = None, *,
                  max_payload_bytes: int | None = None, job: str | None = None) -> str | None:
    """Why a command (or, with ``job`` = its task name, job) message is unacceptable, or None.

    Reads only the raw body: its content type must be JSON and its size at most
    ``max_bytes`` before it is parsed; then it must be a Celery ``[args, kwargs,
    embed]`` triple. A command's payload must encode to at most ``max_payload_bytes``
    (measured only when the body is larger than that); a job's arguments must be
    ``(job_id, execution_id)``. A compressed body was inflated (bounded) by kombu when
    the message was received, so this sees the decompressed bytes.
    """
    content_type = getattr(message, "content_type", None)
    if content_type != JSON_CONTENT_TYPE:
        return (
            f"command messages must be JSON ({JSON_CONTENT_TYPE}), got content type "
            f"{content_type!r}; the message was not decoded"
        )
    raw = message.body
    size = _size(raw)
    if max_bytes is not None and size > max_bytes:
        return (f"message body is {size} bytes, above the worker's limit of {max_bytes} "
                "bytes (bgp_max_message_bytes); the message was not decoded")
    try:
        body = json.loads(raw)
    except (ValueError, TypeError) as exc:
        return f"command message body is not valid JSON: {exc}"
    except RecursionError:
        return "command message body is nested too deeply"
    if (
        not isinstance(body, list)
        or len(body) != 3
        or not isinstance(body[0], list)
        or not isinstance(body[1], dict)
        or not (body[2] is None or isinstance(body[2], dict))
    ):
        return "command message body is not a Celery [args, kwargs, embed] triple"
    if job is not None:
        return check_job_arguments(job, body[0], body[1])
    if max_payload_bytes is not None and size > max_payload_bytes and body[0]:
        try:
            payload_size = len(pydantic_core.to_json(body[0][0]))
        except (ValueError, TypeError, RecursionError):
            return "command payload cannot be measured"
        if payload_size > max_payload_bytes:
            return (f"command payload is {payload_size} bytes, above the limit of "
                    f"{max_payload_bytes} bytes (bgp_max_payload_bytes)")
    return None


def message_limit(bgp: Any) -> int | None:
    """The largest message body ``bgp``'s worker accepts (None: no limit).

    ``bgp_max_message_bytes`` when set (0 disables), else :data:`MESSAGE_LIMIT_FACTOR`
    times ``bgp_max_payload_bytes`` (none when that is disabled).
    """
    explicit = bgp.setting("max_message_bytes")
    if explicit is not None:
        try:
            limit = int(explicit)
        except (TypeError, ValueError):
            limit = -1
        if limit < 0:
            raise ImproperlyConfigured(
                "bgp_max_message_bytes is a number of bytes (0 disables the limit)")
        return limit or None
    payload = bgp.settings.max_payload_bytes
    return payload * MESSAGE_LIMIT_FACTOR if payload else None


# -- refusing -------------------------------------------------------------------------

def _show(value: Any) -> str:
    """A header value for a log line: short strings as repr, anything else by type."""
    if isinstance(value, str) and len(value) <= 200:
        return repr(value)
    return f"<{_kind(value)}>"


def _reason_text(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:300] + "..."


def dead_letter(message: Any, reason: str, connection_errors: tuple = ()) -> None:
    """Reject ``message`` without requeue; on ``azurequeue://`` move it to ``-poison``.

    Does nothing for a message already acknowledged or rejected. RabbitMQ dead-letters
    a rejected message to the queue's ``x-dead-letter-exchange`` when there is one;
    Redis drops it.
    """
    if getattr(message, "acknowledged", False):
        return
    channel = getattr(message, "channel", None)
    move = getattr(channel, "dead_letter", None)
    if move is not None:
        info = getattr(message, "delivery_info", None) or {}
        try:
            move(message.delivery_tag, reason, info.get("azure_dequeue_count"))
        except Exception as exc:  # it comes back when its lease expires, and is refused again
            logger.error("celery-bgp: could not move message %s to its poison queue: %s",
                         getattr(message, "delivery_tag", None), _reason_text(exc))
    message.reject_log_error(logger, connection_errors, requeue=False)


def _record_invalid(app: Any, task_name: Any, task_id: Any, reason: str) -> None:
    """ERROR event for a refused message that names a command task and an id."""
    if not (isinstance(task_name, str) and isinstance(task_id, str) and task_id):
        return
    from .tasks import CommandTask

    task = app.tasks.get(task_name)
    if isinstance(task, CommandTask):
        task.bgp.record_invalid(task_id, task, InvalidCommand(reason))


class MessageGuard:
    """The checks a worker's consumer runs on every task message of its app."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.app = consumer.app
        self.limit: int | None = None
        self._inflate: object | None = None

    # -- setup ----------------------------------------------------------------------------

    def start(self) -> None:
        """Read the limits (the app's modules are imported by now); bound decompression."""
        limits = []
        seen: set[int] = set()
        for task in list(self.app.tasks.values()):
            bgp = getattr(task, "bgp", None)
            if bgp is None or id(bgp) in seen or not hasattr(bgp, "setting"):
                continue
            seen.add(id(bgp))
            limits.append(message_limit(bgp))
        self.limit = None if (not limits or None in limits) else max(limits)
        conf = self.app.conf
        self._inflate = inflate.install(
            inflate.enabled_compressions((conf.task_compression, conf.result_compression)),
            self.limit)

    def stop(self) -> None:
        """Give kombu its own decoders back (an in-process test worker stopping)."""
        if self._inflate is not None:
            inflate.uninstall(self._inflate)
            self._inflate = None

    @property
    def recoverable(self) -> tuple:
        c = self.consumer
        return tuple(c.connection_errors or ()) + tuple(c.channel_errors or ())

    # -- checks ---------------------------------------------------------------------------

    def check(self, message: Any) -> tuple[str, Any] | None:
        """``(reason, headers to report)`` for a message to refuse, or None."""
        headers = message.headers
        if isinstance(headers, dict) and "task" in headers:  # protocol 2: the fast path
            problem = check_headers(headers)
            return None if problem is None else (problem, headers)
        return self.check_protocol1(message)

    def check_protocol1(self, message: Any) -> tuple[str, Any] | None:
        headers = message.headers
        if not isinstance(headers, dict):
            return f"message headers must be an object, got {_kind(headers)}", None
        prefix = "protocol 1 message (no 'task' header)"
        if message.content_type != JSON_CONTENT_TYPE:
            return (f"{prefix} must be JSON, got content type {message.content_type!r}: "
                    "its task is named inside the body, so it was not decoded"), headers
        size = _size(message.body)
        if self.limit is not None and size > self.limit:
            return (f"{prefix}: body is {size} bytes, above the worker's limit of "
                    f"{self.limit} bytes (bgp_max_message_bytes); not decoded"), headers
        try:
            payload = message.decode()
        except Exception as exc:
            return f"{prefix}: body is not valid JSON ({type(exc).__name__})", headers
        if not isinstance(payload, dict):
            return f"{prefix}: body must be an object, got {_kind(payload)}", headers
        merged = {**payload, **headers}
        problem = check_headers(merged, where="field")
        if problem is not None:
            return f"{prefix}: {problem}", merged
        if not isinstance(payload.get("args", ()), (list, tuple)) or not isinstance(
                payload.get("kwargs", {}), dict):
            return f"{prefix}: 'args' must be a list and 'kwargs' an object", merged
        return None

    # -- the consumer's callbacks -----------------------------------------------------------

    def wrap(self, on_task_received: Any) -> Any:
        """Celery's ``on_task_received``, behind :meth:`check` and a last-resort catch."""
        check, refuse = self.check, self.refuse

        def guarded_on_task_received(message: Any) -> Any:
            try:
                found = check(message)
            except Exception as exc:
                found = (f"the message could not be checked ({type(exc).__name__})", None)
            if found is not None:
                return refuse(message, *found)
            try:
                return on_task_received(message)
            except self.recoverable:
                raise
            except Exception as exc:
                return self.crashed(message, exc)

        guarded_on_task_received.__wrapped__ = on_task_received  # type: ignore[attr-defined]
        return guarded_on_task_received

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        """The task consumer's decode errors: refused compression, undecodable bodies."""
        if not hasattr(message, "reject_log_error"):  # no kombu message was built
            try:
                self.consumer.on_decode_error(message, exc)
            except Exception:
                logger.exception("celery-bgp: could not drop an undecodable message")
            return
        if isinstance(exc, inflate.CompressionRefused):
            reason = str(exc)
        else:
            reason = f"undecodable message ({type(exc).__name__}: {_reason_text(exc)})"
        self.refuse(message, reason, message.headers)

    def crashed(self, message: Any, exc: BaseException) -> None:
        """Celery raised on a message the checks let through: log, then refuse it."""
        logger.error("celery-bgp: the worker could not take a message (%s); refusing it",
                     type(exc).__name__, exc_info=True)
        if getattr(message, "acknowledged", False):
            return
        self.refuse(message, f"the worker could not take this message ({type(exc).__name__}: "
                             f"{_reason_text(exc)})", message.headers)

    def refuse(self, message: Any, reason: str, headers: Any = None) -> None:
        """Dead-letter ``message``, log why, ERROR event for a command; never raises."""
        try:
            headers = headers if isinstance(headers, dict) else {}
            task_name, task_id = headers.get("task"), headers.get("id")
            logger.error("celery-bgp: dead-lettered message %s of task %s: %s",
                         _show(task_id), _show(task_name), reason)
            _record_invalid(self.app, task_name, task_id, reason)
            dead_letter(message, reason, self.consumer.connection_errors)
            signals.task_rejected.send(sender=self.consumer, message=message,
                                       exc=InvalidTaskError(reason))
        except self.recoverable:
            raise
        except Exception:
            logger.exception("celery-bgp: could not dead-letter a refused message")


class MessageGuardStep(bootsteps.StartStopStep):
    """Consumer bootstep: puts :class:`MessageGuard` in front of the task consumer."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        self.guard = guard = MessageGuard(c)
        create = c.create_task_handler

        def create_task_handler(*args: Any, **kw: Any) -> Any:
            return guard.wrap(create(*args, **kw))

        c.create_task_handler = create_task_handler
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        self.guard.start()
        if c.task_consumer is not None:
            c.task_consumer.on_decode_error = self.guard.on_decode_error

    def stop(self, c: Any) -> None:
        self.guard.stop()

    def shutdown(self, c: Any) -> None:
        self.guard.stop()


def install(app: Any) -> None:
    """Add :class:`MessageGuardStep` to ``app``'s worker consumer (once)."""
    steps = app.steps["consumer"]
    if MessageGuardStep not in steps:
        steps.add(MessageGuardStep)


# -- the strategy of command and job tasks ------------------------------------------------

def json_only_strategy(task: Any, app: Any, consumer: Any, **kwargs: Any):
    """Celery's default strategy, behind :func:`check_message`."""
    from celery.worker.strategy import default as default_strategy

    handle = default_strategy(task, app, consumer, **kwargs)
    bgp = task.bgp
    max_bytes = message_limit(bgp)
    command = getattr(task, "command_type", None) is not None
    max_payload = bgp.settings.max_payload_bytes if command else None
    job = None if command else task.name

    def task_message_handler(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any,
                             **kw: Any) -> Any:
        if body is None:
            problem = check_message(message, max_bytes, max_payload_bytes=max_payload,
                                    job=job)
        else:  # protocol 1: already decoded (as JSON: MessageGuard refuses anything else)
            problem = _check_protocol1_body(body, job)
        if problem is None:
            return handle(message, body, ack, reject, callbacks, **kw)
        headers = message.headers if isinstance(message.headers, dict) else {}
        if body is not None and isinstance(body, dict):
            headers = {**body, **headers}
        task_id = headers.get("id")
        logger.error("celery-bgp: rejected message %s of task %s: %s",
                     _show(task_id), _show(task.name), problem)
        if isinstance(task_id, str) and task_id:
            bgp.record_invalid(task_id, task, InvalidCommand(problem))
        dead_letter(message, problem, consumer.connection_errors)
        return None

    return task_message_handler


def _check_protocol1_body(body: Any, job: str | None) -> str | None:
    if not isinstance(body, dict):
        return "protocol 1 message body is not an object"
    args, kwargs = body.get("args", ()), body.get("kwargs", {})
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        return "protocol 1 message: 'args' must be a list and 'kwargs' an object"
    if job is not None:
        return check_job_arguments(job, args, kwargs)
    return None
