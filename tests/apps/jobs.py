"""Callables the job tests enqueue (this module is on the job allow-list)."""
from __future__ import annotations

import os
import time

from celery_bgp.jobs import CancellationToken, JobCancelled, JobContext


def sink():
    import redis

    from tests.helpers.servers import REDIS_HOST, REDIS_PORT

    default = f"redis://{REDIS_HOST}:{REDIS_PORT}/13"
    return redis.Redis.from_url(os.environ.get("BGP_TEST_SINK", default), decode_responses=True)


def add(a: int, b: int) -> int:
    return a + b


def record(key: str, item: str) -> str:
    """Append ``item`` to a Redis list: the order jobs ran in."""
    sink().rpush(key, item)
    return item


def fail(message: str) -> None:
    raise ValueError(message)


def fail_times(key: str, times: int) -> int:
    """Fail the first ``times`` attempts, then succeed with the attempt number."""
    attempt = sink().incr(key)
    if attempt <= times:
        raise ConnectionError(f"attempt {attempt} fails")
    return attempt


def uses_context(label: str, job_context: JobContext) -> dict:
    job_context.set_property("label", label)
    job_context.set_property("size", 3)
    job_context.set_data("progress", {"done": 3, "of": 3})
    job_context.info(f"working on {label}")
    job_context.warning("almost done")
    return {"id": job_context.id}


def slow(seconds: float, cancellation: CancellationToken) -> str:
    """Sleep, waking up early (and ending Cancelled) when cancelled."""
    if cancellation.wait(seconds):
        raise JobCancelled("stopped on request")
    return "slept"


def sleep_plain(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def not_json() -> object:
    return object()


class Mailer:
    """A service a DI container would build; jobs call its methods."""

    def __init__(self, sender: str = "default@example.com") -> None:
        self.sender = sender

    def send(self, to: str) -> str:
        return f"{self.sender} -> {to}"

    @staticmethod
    def render(name: str) -> str:
        return f"Hello {name}"

    @classmethod
    def kind(cls, suffix: str) -> str:
        return f"{cls.__name__}{suffix}"


def slow_first_time(key: str, seconds: float) -> int:
    """Sleep ``seconds`` on the first run only (a worker gets killed meanwhile)."""
    attempt = sink().incr(key)
    if attempt == 1:
        time.sleep(seconds)
    return attempt


def cancellable(key: str, seconds: float, cancellation: CancellationToken) -> str:
    """Count its runs in the sink, then work in 0.1 s steps for up to ``seconds``,
    ending Cancelled (the wall time of the stop in the sink) when cancelled."""
    sink().incr(key)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cancellation.wait(0.1):
            sink().set(f"{key}:stopped", repr(time.time()))
            raise JobCancelled("stopped on request")
    return "done"


def ignores_cancel(key: str, seconds: float) -> str:
    """Count its runs in the sink, then sleep ``seconds`` without looking at any token."""
    sink().incr(key)
    time.sleep(seconds)
    return "slept"


def imported(module: str) -> bool:
    """Whether the worker process has imported ``module`` (e.g. "django")."""
    import sys

    return module in sys.modules
