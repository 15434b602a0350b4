"""Worker-side message checks for command tasks: JSON only, well-formed, or rejected.

Celery decodes a task body in the pool with the worker-wide ``accept_content``; a
project that accepts pickle for its own tasks would then unpickle whatever arrives
under a command's name. This strategy runs in the consumer, before any decoding,
and rejects (without requeue) any command message that is not a well-formed JSON
Celery body, recording an ERROR event for it. The worker keeps running.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from celery.worker.strategy import default as default_strategy

from .exceptions import InvalidCommand

__all__ = ["check_message", "json_only_strategy"]

logger = logging.getLogger("celery_bgp.worker")

JSON_CONTENT_TYPE = "application/json"


def check_message(message: Any) -> str | None:
    """Return why a command message is unacceptable, or None if it is fine."""
    content_type = getattr(message, "content_type", None)
    if content_type != JSON_CONTENT_TYPE:
        return (
            f"command messages must be JSON ({JSON_CONTENT_TYPE}), got content type "
            f"{content_type!r}; the message was not decoded"
        )
    if (message.headers or {}).get("compression"):
        return None  # kombu decompresses in the pool; the JSON check happens there
    try:
        body = json.loads(message.body)
    except (ValueError, TypeError) as exc:
        return f"command message body is not valid JSON: {exc}"
    except RecursionError:
        return "command message body is nested too deeply"
    if (
        not isinstance(body, list)
        or len(body) != 3
        or not isinstance(body[0], list)
        or not isinstance(body[1], dict)
    ):
        return "command message body is not a Celery [args, kwargs, embed] triple"
    return None


def json_only_strategy(task: Any, app: Any, consumer: Any, **kwargs: Any):
    """Celery's default strategy, behind :func:`check_message`."""
    handle = default_strategy(task, app, consumer, **kwargs)

    def task_message_handler(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any,
                             **kw: Any) -> Any:
        problem = check_message(message) if body is None else None
        if problem is None:
            return handle(message, body, ack, reject, callbacks, **kw)
        headers = message.headers or {}
        logger.error(
            "celery-bgp: rejected command message %s (%s): %s",
            headers.get("id"), headers.get("task"), problem,
        )
        task.bgp.record_invalid(headers.get("id"), task, InvalidCommand(problem))
        message.reject_log_error(logger, consumer.connection_errors, requeue=False)
        return None

    return task_message_handler
