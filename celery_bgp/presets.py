"""Celery settings presets for delivery guarantees, as documented in the README.

Celery's defaults favour throughput: a message is acknowledged when a worker takes
it, so a worker killed mid-task (SIGKILL, OOM) loses it, and a publish gives up after
about a second without a broker. ``AT_LEAST_ONCE`` trades that for "nothing lost,
duplicates possible" (make handlers idempotent):

    app.conf.update(celery_bgp.presets.at_least_once(visibility_timeout=600))
"""
from __future__ import annotations

from typing import Any

__all__ = ["at_least_once"]


def at_least_once(visibility_timeout: float = 3600.0, publish_retry_for: float = 60.0
                  ) -> dict[str, Any]:
    """Settings under which no accepted message is lost.

    - ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged
      after its task ran, and requeued if the worker process died while running it.
    - ``worker_prefetch_multiplier = 1``: a dying worker holds at most one message per
      process.
    - ``visibility_timeout`` (Redis, SQS, Azure): how long a taken, unacknowledged
      message stays invisible before it is delivered again. Make it longer than your
      longest task, or that task runs twice.
    - Redis: kombu gives an abandoned message back by a sweep that, by default, scans
      every 100 s (``unacked_restore_interval`` 10 s x ``unacked_restore_throttle``
      10), and a sweeper killed mid-scan leaves its mutex for 5 minutes. Here the
      sweep scans every ``visibility_timeout / 5`` seconds (1 to 10) and the mutex
      expires after 30 s, so a killed worker's messages come back soon after their
      visibility timeout. Other transports ignore these options.
    - publishes retry for about ``publish_retry_for`` seconds while the broker is away.
    """
    step = 1.0
    sweep = max(1, min(10, round(visibility_timeout / 5)))
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": sweep,
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": 30,
        },
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": max(1, int(publish_retry_for / step)),
            "interval_start": 0,
            "interval_step": step,
            "interval_max": step,
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
    }
