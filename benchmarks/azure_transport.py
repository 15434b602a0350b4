"""Benchmark: celery-bgp's ``azurequeue://`` against kombu's ``azurestoragequeues://``.

One Azurite on free loopback ports, a directory of append-only files (BENCH_SINK) to
count what ran, real ``celery worker`` processes (prefork, concurrency 4, acks_late).
Measures, for each transport in the same run:

(a) publish rate, (b) end-to-end drain of 2,000 tasks by one worker, (c) tasks lost
when the worker is SIGKILLed mid-run (a second worker then drains what is left),
(d) worker RSS with 5,000 tasks delayed by one hour.

Run from the repository root: ``python -m benchmarks.azure_transport`` (needs
``npm install`` for Azurite). Not part of the tests.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from celery import Celery

import celery_bgp  # noqa: F401 - registers azurequeue://
from tests.helpers.azurite import KEY, Azurite, find_azurite
from tests.helpers.workers import WorkerProcess

SINK = Path(os.environ.get("BENCH_SINK", "/tmp/bgp-azure-bench"))
AZURITE: Azurite | None = None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children so far."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


@dataclass
class Contender:
    """One transport under test."""

    label: str
    broker: str
    options: dict
    env: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)


def publisher(c: Contender, queue: str) -> Celery:
    app = Celery(f"bench-pub-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(broker_url=c.broker, broker_transport_options=c.options,
                    task_default_queue=queue, task_ignore_result=True)
    return app


def publish(c: Contender, queue: str, key: str, count: int, threads: int = 1,
            kwargs: dict | None = None, **options) -> float:
    """Publish ``count`` tasks; return the seconds it took."""
    app = publisher(c, queue)
    app.send_task("bench.touch", args=(key, -1), queue=queue)  # declare, warm up
    app.connection_for_write().ensure_connection()

    def send(chunk: range) -> None:
        for i in chunk:
            app.send_task("bench.touch", args=(key, i), kwargs=kwargs or {},
                          queue=queue, **options)

    started = time.perf_counter()
    if threads == 1:
        send(range(count))
    else:
        step = -(-count // threads)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(send, [range(i, min(count, i + step)) for i in range(0, count, step)]))
    return time.perf_counter() - started


def worker(c: Contender, queue: str, concurrency: int = 4) -> WorkerProcess:
    env = {"BENCH_BROKER": c.broker, "BENCH_TRANSPORT_OPTIONS": json.dumps(c.options),
           "BENCH_QUEUE": queue, "BENCH_SINK": str(SINK), **c.env}
    return WorkerProcess("benchmarks.azure_bench_app", env, [queue], concurrency=concurrency)


def done(sink: Path, key: str) -> int:
    """How many distinct tasks of ``key`` ran (the warm-up task -1 not counted)."""
    try:
        lines = (sink / key).read_text().split()
    except FileNotFoundError:
        return 0
    return len(set(lines) - {"-1"})


def wait_count(sink: Path, key: str, target: int, timeout: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout and done(sink, key) < target:
        time.sleep(0.05)
    return time.perf_counter() - started


def drop_queues(prefix: str) -> None:
    """Delete leftover queues (Azurite slows down as undrained messages pile up)."""
    from azure.storage.queue import QueueServiceClient

    service = QueueServiceClient.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"])
    for queue in list(service.list_queues(name_starts_with=prefix)):
        service.delete_queue(queue.name)


def bench_publish(c: Contender, sink: Path, n: int) -> None:
    queue, key = f"pub-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    seconds = publish(c, queue, key, n)
    c.results["publish"] = n / seconds
    print(f"  {c.label}: published {n} in {seconds:.1f}s", flush=True)
    drop_queues(queue)


def bench_drain(c: Contender, sink: Path, n: int) -> None:
    queue, key = f"drain-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    publish(c, queue, key, n, threads=4)
    w = worker(c, queue).start()
    try:
        started = time.perf_counter()
        broker0, worker0 = cpu_seconds(AZURITE.proc.pid), cpu_seconds(w.proc.pid)
        wait_count(sink, key, n, timeout=900)
        seconds = time.perf_counter() - started
        broker1, worker1 = cpu_seconds(AZURITE.proc.pid), cpu_seconds(w.proc.pid)
    finally:
        w.stop()
    c.results["drain"] = done(sink, key) / seconds
    c.results["broker_cpu"] = (broker1 - broker0) * 1000 / n
    c.results["worker_cpu"] = (worker1 - worker0) * 1000 / n
    print(f"  {c.label}: drained {done(sink, key)}/{n} in {seconds:.1f}s; CPU per task: "
          f"Azurite {c.results['broker_cpu']:.1f} ms, worker {c.results['worker_cpu']:.1f} ms",
          flush=True)


def bench_kill(c: Contender, sink: Path, n: int) -> None:
    queue, key = f"kill-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    publish(c, queue, key, n, threads=4, kwargs={"sleep": 0.05})
    w = worker(c, queue).start()
    wait_count(sink, key, n // 4, timeout=300)
    w.kill()
    ran_before = done(sink, key)
    w2 = worker(c, queue).start()
    try:
        # wait for leased messages to come back (visibility timeout) and be drained
        last, stable_since = -1, time.perf_counter()
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline and done(sink, key) < n:
            now = done(sink, key)
            if now != last:
                last, stable_since = now, time.perf_counter()
            elif time.perf_counter() - stable_since > 30:
                break
            time.sleep(0.2)
    finally:
        w2.stop()
    lost = n - done(sink, key)
    c.results["lost"] = lost
    print(f"  {c.label}: {ran_before} ran before SIGKILL, {lost} of {n} lost", flush=True)


def bench_memory(c: Contender, sink: Path, n: int) -> None:
    queue, key = f"mem-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    publish(c, queue, key, 1)  # declare the queue before the worker starts
    w = worker(c, queue).start()
    try:
        time.sleep(3)
        before = psutil.Process(w.proc.pid).memory_info().rss
        publish(c, queue, key, n, threads=4, countdown=3600)
        # let the worker pull whatever it will pull: wait until the queue stops shrinking
        probe = publisher(c, queue)
        with probe.connection_for_write() as conn:
            channel = conn.default_channel
            last, stable = None, 0
            deadline = time.perf_counter() + 300
            while time.perf_counter() < deadline and stable < 5:
                size = channel._size(queue)
                stable = stable + 1 if size == last else 0
                last = size
                time.sleep(1)
        held = n - (last or 0)  # delayed tasks the worker took out of the queue
        after = psutil.Process(w.proc.pid).memory_info().rss
    finally:
        w.stop()
    c.results["rss_growth"] = (after - before) / 2**20
    c.results["held"] = held
    print(f"  {c.label}: RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB, "
          f"{held} delayed tasks pulled into the worker", flush=True)


def table(ours: Contender, builtin: Contender, args: argparse.Namespace) -> str:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "n/a"

    rows = [
        ("(a) publish rate (msg/s)", f"{ours.results['publish']:.0f}",
         f"{builtin.results['publish']:.0f}",
         ratio(ours.results["publish"], builtin.results["publish"])),
        (f"(b) drain {args.drain:,} tasks (tasks/s)", f"{ours.results['drain']:.0f}",
         f"{builtin.results['drain']:.0f}",
         ratio(ours.results["drain"], builtin.results["drain"])),
        ("(b) Azurite CPU per drained task (ms)", f"{ours.results['broker_cpu']:.1f}",
         f"{builtin.results['broker_cpu']:.1f}",
         ratio(builtin.results["broker_cpu"], ours.results["broker_cpu"])),
        ("(b) worker CPU per drained task (ms)", f"{ours.results['worker_cpu']:.1f}",
         f"{builtin.results['worker_cpu']:.1f}",
         ratio(builtin.results["worker_cpu"], ours.results["worker_cpu"])),
        (f"(c) lost of {args.kill:,} after SIGKILL (tasks)", str(ours.results["lost"]),
         str(builtin.results["lost"]), "-"),
        (f"(d) worker RSS growth, {args.delayed:,} delayed (MiB)",
         f"{ours.results['rss_growth']:.1f}",
         f"{builtin.results['rss_growth']:.1f}", "-"),
        ("(d) delayed tasks pulled into the worker", str(ours.results["held"]),
         str(builtin.results["held"]), "-"),
    ]
    head = ("measure", "azurequeue (celery-bgp)", "azurestoragequeues (kombu)", "ratio")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [line, " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), line]
    out += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    out.append(line)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publish", type=int, default=500)
    parser.add_argument("--drain", type=int, default=2000)
    parser.add_argument("--kill", type=int, default=400)
    parser.add_argument("--delayed", type=int, default=5000)
    parser.add_argument("--only", choices=["publish", "drain", "SIGKILL", "delayed memory"],
                        help="run one measure (no table)")
    args = parser.parse_args(argv)
    exe = find_azurite()
    if exe is None:
        print("azurite not found: run `npm install` at the repository root", file=sys.stderr)
        return 2
    sink = SINK
    sink.mkdir(parents=True, exist_ok=True)
    global AZURITE
    azurite = AZURITE = Azurite(exe).start()
    os.environ["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    ours = Contender("azurequeue", "azurequeue://",
                     {"visibility_timeout": 10, "polling_interval": 0.2,
                      "max_polling_interval": 2}, env)
    builtin = Contender("azurestoragequeues",
                        f"azurestoragequeues://{KEY}@{azurite.queue_url}",
                        {"polling_interval": 0.2}, env)
    try:
        print("warming Azurite up", flush=True)
        for contender in (ours, builtin):
            publish(contender, f"warm-{uuid.uuid4().hex[:6]}", "warm", 300)
        drop_queues("warm-")
        for title, fn, n in (("publish", bench_publish, args.publish),
                             ("drain", bench_drain, args.drain),
                             ("SIGKILL", bench_kill, args.kill),
                             ("delayed memory", bench_memory, args.delayed)):
            if args.only and title != args.only:
                continue
            print(f"{title}:", flush=True)
            for contender in (ours, builtin):
                fn(contender, sink, n)
    finally:
        azurite.stop()
    if not args.only:
        print(table(ours, builtin, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
