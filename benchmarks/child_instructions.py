"""Instructions a worker's pool child executes per message: command against plain task.

    python benchmarks/child_instructions.py [-n 1000] [--events redis|discard]

Wall-clock and CPU-time ratios on a shared 2-core machine move by 10-15 % from run to
run; instruction counts do not. This benchmark runs, under ``valgrind --tool=callgrind``,
what a prefork child does with each message (Celery's ``fast_trace_task``: decode the
body, run the tracer with its signals, the task, the event recorder and its writer
thread) for ``n`` messages of ``benchmarks/overhead_app.py``'s plain task and of its
equivalent command, and subtracts a run that loads the same messages but runs only the
first 50 (the warm-up both runs share): what is left is the child's own work per
message once warm, counted in instructions (every thread).

The messages are produced beforehand, outside valgrind, by the real dispatch path on a
``memory://`` broker. Events go to the benchmark's own redis-server
(``benchmarks/private_redis.py``) or, with ``--events discard``, to a repository that
drops them. The plain task and the handler both INCR a Redis counter, as in
``overhead.py``.
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WARM = 50
TEXT = "x" * 200


def produce(kind: str, n: int, path: Path) -> None:
    """Send ``n`` messages the way a user would, then save them as the child gets them."""
    from benchmarks.overhead_app import BenchCommand, app, bgp, plain

    for i in range(n):
        payload = {"key": "k", "text": TEXT, "number": i}
        if kind == "plain":
            plain.delay(payload)
        else:
            bgp.dispatch(BenchCommand(**payload))
    saved = []
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        while (message := channel.basic_get("bench", no_ack=True)) is not None:
            saved.append((message.headers, message.body, message.properties,
                          message.delivery_info, message.content_type,
                          message.content_encoding))
    assert len(saved) == n, f"{len(saved)} of {n} messages"
    path.write_bytes(pickle.dumps(saved))


def consume(path: Path, execute: int) -> None:
    """A pool child's work on the first ``execute`` saved messages (all are loaded)."""
    from celery import signals
    from celery.app import trace
    from celery.worker.request import Request  # noqa: F401  (imported by a real child)

    from benchmarks.overhead_app import app, bgp

    signals.worker_init.send(sender=None)
    signals.worker_process_init.send(sender=None)
    hostname = "bench@child"
    app.finalize()
    trace.setup_worker_optimizations(app, hostname)
    for name, task in app.tasks.items():
        task.__trace__ = trace.build_tracer(name, task, app.loader, hostname, app=app)
    saved = pickle.loads(path.read_bytes())
    for headers, body, properties, delivery_info, content_type, encoding in saved[:execute]:
        request = dict(headers)
        request.update({"properties": properties, "reply_to": properties.get("reply_to"),
                        "correlation_id": properties.get("correlation_id"),
                        "hostname": hostname, "delivery_info": delivery_info})
        trace.fast_trace_task(headers["task"], headers["id"], request, body,
                              content_type, encoding, hostname=hostname)
    assert bgp.recorder.flush(), "events not written"


def instructions(args: list[str]) -> int:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        "--trace-children=no", sys.executable, __file__, *args],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=os.environ.copy())
        text = out.read_text(errors="replace")
        found = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
        assert found, "no totals in the callgrind output"
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--events", choices=("redis", "discard"), default="redis")
    parser.add_argument("--inner", nargs=3, metavar=("WHAT", "FILE", "EXECUTE"),
                        help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.inner:
        what, file, execute = options.inner
        if what == "produce":
            produce(execute, options.n, Path(file))
        else:
            consume(Path(file), int(execute))
        return

    from benchmarks import private_redis  # noqa: F401  (the events' and counter's server)

    os.environ["BGP_BENCH_BROKER"] = "memory://"
    if options.events == "discard":
        os.environ["BGP_BENCH_EVENTS"] = "discard"
    per = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("plain", "command"):
            file = str(Path(folder) / f"{kind}.pickle")
            subprocess.run([sys.executable, __file__, "-n", str(options.n + WARM),
                            "--inner", "produce", file, kind], check=True)
            warm = instructions(["--inner", "consume", file, str(WARM)])
            ran = instructions(["--inner", "consume", file, str(options.n + WARM)])
            per[kind] = (ran - warm) / options.n
    print(f"{'':<10}{'instructions per message':>26}")
    print(f"{'plain':<10}{per['plain']:>26,.0f}")
    print(f"{'command':<10}{per['command']:>26,.0f}")
    print(f"command / plain: {per['command'] / per['plain']:.2f}x "
          f"(events: {options.events}, n={options.n})")


if __name__ == "__main__":
    main()
