"""What the worker-side message checks cost per message, in the consumer (main) process.

    python benchmarks/message_guard.py [-n 200000]

For a valid protocol-2 message as ``bgp.dispatch`` sends it, against part of the work
Celery's consumer does for the same message anyway (decoding its body with kombu and
building its ``Request``; the rest, events, timers, the hand-off to the pool, is not
counted, so the share printed is an upper bound):

- ``check_headers``: the header check of :class:`celery_bgp.worker.MessageGuard`;
- ``guard``: the whole wrapper around ``on_task_received`` (check + call), with a
  no-op in place of Celery's handler, minus that no-op;
- ``check_message``: the command strategy's check (JSON parse, shape, size limits);
- ``inflate``: the bounded zlib decoder against ``zlib.decompress`` for a 20 KB body.

No broker is needed: the messages are kombu ``Message`` objects built in memory.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def per_call(fn, n: int, rounds: int = 5) -> float:
    """Best of ``rounds``: seconds per call."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - started) / n)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200_000)
    n = parser.parse_args().n

    from celery import Celery
    from celery.worker.request import Request
    from kombu import Message

    from celery_bgp import BackgroundProcessing, inflate
    from celery_bgp.commands import encode_command
    from celery_bgp.worker import MessageGuard, check_headers, check_message
    from tests.apps.commands import Echo

    app = Celery("bench-guard", set_as_current=False)
    bgp = BackgroundProcessing(app, name="bench")
    task = bgp.register_handler(__import__("tests.apps.commands", fromlist=["echo"]).echo)
    command = Echo(text="hello " * 10)
    options = bgp._publish_options(command, {})
    sent = app.amqp.as_task_v2(options.pop("task_id"), task.name,
                               args=(encode_command(command),), **options)
    headers = {**sent.headers, **options["headers"]}
    body = json.dumps(sent.body).encode()
    message = Message(body=body, content_type="application/json",
                      content_encoding="utf-8", headers=headers,
                      delivery_info={"exchange": "", "routing_key": "q"},
                      properties={}, delivery_tag=1)
    assert check_headers(headers) is None and check_message(message) is None

    consumer = type("Consumer", (), {"app": app, "connection_errors": (),
                                     "channel_errors": ()})()
    guard = MessageGuard(consumer)

    def inner(message):
        return None

    guarded = guard.wrap(inner)

    def build_request():
        Request(message, app=app, hostname="bench@x", task=task)

    results = {
        "kombu decode of the body (reference)": per_call(message._decode, n // 4),
        "celery Request(message) (reference)": per_call(build_request, n // 4),
        "no-op handler (baseline)": per_call(lambda: inner(message), n),
        "check_headers(headers)": per_call(lambda: check_headers(headers), n),
        "guarded on_task_received(message)": per_call(lambda: guarded(message), n),
        "check_message(command message)": per_call(
            lambda: check_message(message, 8 << 20, max_payload_bytes=1 << 20), n // 4),
    }
    packed = zlib.compress(json.dumps({"rows": [uuid.uuid4().hex for _ in range(500)]})
                           .encode())
    inflate.install(inflate.enabled_compressions(["gzip"]), 8 << 20)
    results["zlib.decompress 20 KB"] = per_call(lambda: zlib.decompress(packed), n // 20)
    results["bounded zlib 20 KB"] = per_call(
        lambda: inflate.bounded("application/x-gzip", packed, 8 << 20), n // 20)

    reference = (results["celery Request(message) (reference)"]
                 + results["kombu decode of the body (reference)"])
    guard_cost = results["guarded on_task_received(message)"] - results[
        "no-op handler (baseline)"]
    print(f"{'':<40}{'per message':>14}")
    for name, seconds in results.items():
        print(f"{name:<40}{seconds * 1e6:>11.2f} us")
    print(f"\nguard overhead: {guard_cost * 1e6:.2f} us per message, "
          f"{guard_cost / reference:.0%} of decoding the body and building the Request")
    print(f"bounded zlib: {results['bounded zlib 20 KB'] / results['zlib.decompress 20 KB']:.2f}"
          " x zlib.decompress")


if __name__ == "__main__":
    main()
