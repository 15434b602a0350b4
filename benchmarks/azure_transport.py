"""Benchmark: celery-bgp's ``azurequeue://`` against kombu's ``azurestoragequeues://``.

One Azurite on free loopback ports, a directory of append-only files (BENCH_SINK) to
count what ran, real ``celery worker`` processes (prefork, concurrency 4, acks_late).
Measures, for each transport in the same run:

(a) publish rate, (b) end-to-end drain of 2,000 tasks by one worker, (c) tasks lost
when the worker is SIGKILLed mid-run (a second worker then drains what is left),
(d) worker RSS with 5,000 tasks delayed by one hour; and against Redis (the suite's
private redis-server): (e) control-reply latency (``inspect ping``) while every pool
process is busy, (f) Azure transactions an idle worker costs per hour, (g) start
latency of a task sent to an idle worker, (h) seconds until an unreachable broker is
reported with kombu's retry policy. Every measure gets a fresh Azurite (its in-memory
store slows down as messages pile up).

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
from kombu import Connection

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


def bench_control(c: Contender, sink: Path, n: int) -> None:
    """p50/p99 of ``inspect ping`` round trips while all pool processes run tasks."""
    if c.broker.startswith("azurestoragequeues"):
        c.results["control"] = None  # no fanout: celery inspect cannot reach its workers
        return
    queue, key = f"ctl-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    publish(c, queue, key, 1)
    w = worker(c, queue, concurrency=2).start()
    try:
        app = publisher(c, queue)
        for _ in range(16):  # 2 running, the prefetch full, more waiting
            app.send_task("bench.started", args=(key, time.time(), 30.0), queue=queue)
        wait_count(sink, key, 2, timeout=60)
        latencies = []
        inspect = app.control.inspect(destination=[w.hostname], timeout=15)
        for _ in range(n):
            started = time.perf_counter()
            assert inspect.ping(), "no reply"
            latencies.append(time.perf_counter() - started)
    finally:
        w.kill()
    latencies.sort()
    c.results["control"] = (latencies[len(latencies) // 2],
                            latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))])
    print(f"  {c.label}: control reply p50 {c.results['control'][0] * 1000:.0f} ms, "
          f"p99 {c.results['control'][1] * 1000:.0f} ms", flush=True)


def bench_idle(c: Contender, sink: Path, seconds: int) -> None:
    """Azure requests of a worker left idle for ``seconds``, scaled to one hour."""
    if c.broker.startswith("redis"):
        c.results["idle"] = None  # not billed per call (BRPOP waits 1 s on the server)
        return
    queue, counter = f"idle-{uuid.uuid4().hex[:6]}", SINK / f"count-{uuid.uuid4().hex}"
    publish(c, queue, "idle", 1)
    w = worker(c, queue)
    w.env = {**w.env, "BENCH_COUNT_REQUESTS": str(counter)}
    w.start()
    try:
        time.sleep(10)  # the back-off reaches its longest interval
        first = int(counter.read_text() or 0)
        time.sleep(seconds)
        calls = int(counter.read_text() or 0) - first
    finally:
        w.stop()
    c.results["idle"] = calls * 3600 / seconds
    print(f"  {c.label}: {calls} requests in {seconds}s idle = {c.results['idle']:.0f}/h",
          flush=True)


def bench_start(c: Contender, sink: Path, n: int) -> None:
    """Median delay from sending a task to an idle worker to the task starting."""
    queue, key = f"start-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    publish(c, queue, "warm", 1)
    w = worker(c, queue).start()
    try:
        app = publisher(c, queue)
        for i in range(n):
            time.sleep(8)  # idle: the polling backs off fully
            app.send_task("bench.started", args=(key, time.time()), queue=queue)
            deadline = time.perf_counter() + 60
            while time.perf_counter() < deadline and len(_floats(sink, key)) <= i:
                time.sleep(0.02)
    finally:
        w.stop()
    delays = sorted(_floats(sink, key))
    c.results["start"] = (delays[len(delays) // 2], delays[-1]) if delays else None
    print(f"  {c.label}: start latency on an idle worker {delays}", flush=True)


def _floats(sink: Path, key: str) -> list[float]:
    try:
        return [float(x) for x in (sink / key).read_text().split()]
    except FileNotFoundError:
        return []


def bench_unreachable(c: Contender, sink: Path, n: int) -> None:
    """Seconds until ``ensure_connection(max_retries=1)`` reports a refused endpoint."""
    if c.broker.startswith("azurestoragequeues"):
        c.results["unreachable"] = None
        return
    from tests.helpers.azurite import free_ports

    [port] = free_ports(1)
    if c.broker.startswith("redis"):
        url, options = f"redis://127.0.0.1:{port}/0", {}
    else:
        endpoint = f"http://127.0.0.1:{port}/devstoreaccount1"
        url, options = "azurequeue://", {"connection_string": (
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};"
            f"QueueEndpoint={endpoint};TableEndpoint={endpoint};BlobEndpoint={endpoint};")}
    started = time.perf_counter()
    try:
        with Connection(url, transport_options=options) as conn:
            conn.ensure_connection(max_retries=1, interval_start=1, interval_step=1)
    except Exception as exc:
        print(f"  {c.label}: {type(exc).__name__}", flush=True)
    c.results["unreachable"] = time.perf_counter() - started
    print(f"  {c.label}: unreachable reported after {c.results['unreachable']:.2f}s "
          "(kombu's own wait: 1 s)", flush=True)


def _fmt(value: object, spec: str = ".0f", scale: float = 1) -> str:
    if value is None:
        return "n/a"
    values = value if isinstance(value, tuple) else (value,)
    return " / ".join(format(round(v * scale) if spec == "d" else v * scale, spec)
                      for v in values)


def table(ours: Contender, builtin: Contender, redis: Contender,
          args: argparse.Namespace) -> str:
    def ratio(key: str, inverse: bool = False) -> str:
        a, b = ours.results.get(key), builtin.results.get(key)
        if not a or not b:
            return "n/a"
        return f"{(b / a) if inverse else (a / b):.2f}x"

    r = {c.label: c.results for c in (ours, builtin, redis)}
    o, b, x = r[ours.label], r[builtin.label], r[redis.label]
    rows = [
        ("(a) publish rate (msg/s)", _fmt(o.get("publish")), _fmt(b.get("publish")),
         "-", ratio("publish")),
        (f"(b) drain {args.drain:,} tasks (tasks/s)", _fmt(o.get("drain")),
         _fmt(b.get("drain")), "-", ratio("drain")),
        ("(b) Azurite CPU per drained task (ms)", _fmt(o.get("broker_cpu"), ".1f"),
         _fmt(b.get("broker_cpu"), ".1f"), "-", ratio("broker_cpu", inverse=True)),
        ("(b) worker CPU per drained task (ms)", _fmt(o.get("worker_cpu"), ".1f"),
         _fmt(b.get("worker_cpu"), ".1f"), "-", ratio("worker_cpu", inverse=True)),
        (f"(c) lost of {args.kill:,} after SIGKILL (tasks)", _fmt(o.get("lost"), "d"),
         _fmt(b.get("lost"), "d"), "-", "-"),
        (f"(d) worker RSS growth, {args.delayed:,} delayed (MiB)",
         _fmt(o.get("rss_growth"), ".1f"), _fmt(b.get("rss_growth"), ".1f"), "-", "-"),
        ("(d) delayed tasks pulled into the worker", _fmt(o.get("held"), "d"),
         _fmt(b.get("held"), "d"), "-", "-"),
        ("(e) control reply, busy pool, p50 / p99 (ms)", _fmt(o.get("control"), ".0f", 1000),
         _fmt(b.get("control")), _fmt(x.get("control"), ".0f", 1000), "-"),
        ("(f) Azure requests per idle hour", _fmt(o.get("idle")), _fmt(b.get("idle")),
         "n/a", "-"),
        ("(g) task start on an idle worker, p50 / max (ms)",
         _fmt(o.get("start"), ".0f", 1000), _fmt(b.get("start"), ".0f", 1000),
         _fmt(x.get("start"), ".0f", 1000), "-"),
        ("(h) unreachable broker reported after (s)", _fmt(o.get("unreachable"), ".2f"),
         _fmt(b.get("unreachable"), ".2f"), _fmt(x.get("unreachable"), ".2f"), "-"),
    ]
    head = ("measure", "azurequeue (celery-bgp)", "azurestoragequeues (kombu)", "redis",
            "ratio to kombu")
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(5)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [line, " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), line]
    out += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    out.append(line)
    return "\n".join(out)


MEASURES = {
    "publish": (bench_publish, "publish"),
    "drain": (bench_drain, "drain"),
    "SIGKILL": (bench_kill, "kill"),
    "delayed memory": (bench_memory, "delayed"),
    "control": (bench_control, "pings"),
    "idle": (bench_idle, "idle_seconds"),
    "start": (bench_start, "starts"),
    "unreachable": (bench_unreachable, "pings"),
}
#: Measures that also run on Redis (the others compare the two Azure transports).
WITH_REDIS = {"control", "start", "unreachable"}


def on_fresh_azurite(exe: str, contender: Contender) -> Azurite:
    """Start a new Azurite and point ``contender`` (and this process) at it."""
    global AZURITE
    azurite = AZURITE = Azurite(exe).start()
    os.environ["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string
    contender.env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string
    if contender.broker.startswith("azurestoragequeues"):
        contender.broker = f"azurestoragequeues://{KEY}@{azurite.queue_url}"
    else:  # in the options, so kombu's connection pools never hand out the last one's
        contender.options["connection_string"] = azurite.connection_string
    print("  (warming Azurite up)", flush=True)
    try:
        publish(contender, f"warm-{uuid.uuid4().hex[:6]}", "warm", 300)
        drop_queues("warm-")
    except BaseException:
        azurite.stop()
        raise
    return azurite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publish", type=int, default=500)
    parser.add_argument("--drain", type=int, default=2000)
    parser.add_argument("--kill", type=int, default=400)
    parser.add_argument("--delayed", type=int, default=5000)
    parser.add_argument("--pings", type=int, default=50, help="control replies measured")
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--starts", type=int, default=5, help="idle-worker starts measured")
    parser.add_argument("--only", choices=list(MEASURES), action="append",
                        help="run these measures only (repeatable)")
    args = parser.parse_args(argv)
    exe = find_azurite()
    if exe is None:
        print("azurite not found: run `npm install` at the repository root", file=sys.stderr)
        return 2
    from benchmarks import private_redis  # noqa: F401 - the benchmarks' own redis-server

    SINK.mkdir(parents=True, exist_ok=True)
    ours = Contender("azurequeue", "azurequeue://", {"visibility_timeout": 10}, {})
    builtin = Contender("azurestoragequeues", "azurestoragequeues://",
                        {"polling_interval": 0.2}, {})
    redis = Contender("redis", os.environ["BGP_BENCH_BROKER"], {}, {})
    for title, (fn, arg) in MEASURES.items():
        if args.only and title not in args.only:
            continue
        print(f"{title}:", flush=True)
        for contender in (ours, builtin):
            azurite = on_fresh_azurite(exe, contender)
            try:
                fn(contender, SINK, getattr(args, arg))
            finally:
                azurite.stop()
        if title in WITH_REDIS:
            fn(redis, SINK, getattr(args, arg))
    print(table(ours, builtin, redis, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
