"""celery-bgp overhead against plain Celery on Redis, measured in one run.

N commands are dispatched and processed end to end by one real worker (prefork,
concurrency 2) with the Redis event repository, against the same payload sent to a
plain ``@app.task`` on the same worker. Rounds alternate to share the noise. Besides
the rates, each round counts CPU per message: in the dispatching process (while it
sends), in the worker's parent (the consumer) and in its pool children (the tasks).

    python benchmarks/overhead.py [-n 2000] [--rounds 3] [--acks-late] [--split]
    python benchmarks/overhead.py --memory 20000

``--acks-late`` runs both under the at-least-once acknowledgement (``task_acks_late``,
prefetch 1), where a command's final event is written before its message is acked.
``--split`` runs a second worker whose events go to a repository that drops them:
the command layer's cost apart from the event writes.

The benchmark starts its own redis-server (benchmarks/private_redis.py); set
``BGP_BENCH_BROKER``, ``BGP_BENCH_EVENTS`` and ``BGP_BENCH_COUNTER`` to Redis URLs of
your own to use those databases instead: nothing in them is flushed, the keys used
are new per round.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import private_redis  # noqa: E402  (before the app reads its URLs)
from benchmarks.overhead_app import (  # noqa: E402
    BROKER,
    COUNTER,
    EVENTS,
    BenchCommand,
    bgp,
    plain,
)
from celery_bgp import EventStatus  # noqa: E402
from tests.helpers.workers import WorkerProcess  # noqa: E402

TEXT = "x" * 200


def wait_count(counter: redis.Redis, key: str, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while int(counter.get(key) or 0) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{counter.get(key)} of {n} processed")
        time.sleep(0.005)


class Cpu:
    """CPU seconds of this process and of a worker (parent, pool children) between marks."""

    def __init__(self, worker_pid: int) -> None:
        self.parent = psutil.Process(worker_pid)

    def mark(self) -> tuple[float, float, float]:
        children = sum(sum(c.cpu_times()[:2]) for c in self.parent.children(recursive=True))
        return time.process_time(), sum(self.parent.cpu_times()[:2]), children


@dataclass
class Round:
    dispatch_rate: float
    end_to_end: float
    cpu_dispatch: float  # us per message in the sending process, while it sends
    cpu_parent: float  # us per message in the worker's parent, first send to last done
    cpu_children: float  # us per message in the pool children, summed


def measure(cpu: Cpu, n: int, send, key: str, counter: redis.Redis) -> Round:
    begin = cpu.mark()
    start = time.perf_counter()
    send()
    dispatched = time.perf_counter()
    sent = cpu.mark()
    wait_count(counter, key, n)
    elapsed = time.perf_counter() - start
    end = cpu.mark()
    return Round(n / (dispatched - start), n / elapsed,
                 (sent[0] - begin[0]) / n * 1e6, (end[1] - begin[1]) / n * 1e6,
                 (end[2] - begin[2]) / n * 1e6)


def run_plain(cpu: Cpu, counter: redis.Redis, n: int) -> Round:
    key = f"plain-{uuid.uuid4().hex}"

    def send() -> None:
        for i in range(n):
            plain.delay({"key": key, "text": TEXT, "number": i})
    return measure(cpu, n, send, key, counter)


def run_bgp(cpu: Cpu, counter: redis.Redis, n: int, check_events: bool = True) -> Round:
    key = f"bgp-{uuid.uuid4().hex}"
    commands = [BenchCommand(key=key, text=TEXT, number=i) for i in range(n)]

    def send() -> None:
        for command in commands:
            bgp.dispatch(command)
    result = measure(cpu, n, send, key, counter)
    bgp.events.flush()
    if check_events:
        missing = [c.id for c in commands[-50:]
                   if (bgp.events.wait_for(c.id, timeout=30).status
                       is not EventStatus.PROCESSED)]
        assert not missing, f"commands without PROCESSED: {missing[:3]}"
    return result


def worker_rounds(env: dict[str, str], counter: redis.Redis, args, events: bool) -> dict:
    """Alternating plain and command rounds on one worker started with ``env``."""
    with WorkerProcess("benchmarks.overhead_app", env, ["bench"], concurrency=2) as worker:
        cpu = Cpu(worker.proc.pid)
        run_plain(cpu, counter, 200)  # warm up both paths (and fork-time growth)
        run_bgp(cpu, counter, 200, events)
        results: dict[str, list[Round]] = {"plain": [], "bgp": []}
        for _ in range(args.rounds):
            results["plain"].append(run_plain(cpu, counter, args.n))
            results["bgp"].append(run_bgp(cpu, counter, args.n, events))
    return {name: Round(*(statistics.median(getattr(r, f.name) for r in rows)
                          for f in fields(Round)))
            for name, rows in results.items()}


def table(title: str, med: dict) -> None:
    print(f"\n{title}")
    print(f"{'':34}{'plain Celery':>14}{'celery-bgp':>14}{'ratio':>8}")
    rows = [("dispatch calls/s", "dispatch_rate"),
            ("end-to-end commands/s", "end_to_end"),
            ("CPU us/msg, dispatcher (sending)", "cpu_dispatch"),
            ("CPU us/msg, worker parent", "cpu_parent"),
            ("CPU us/msg, worker children", "cpu_children")]
    for label, name in rows:
        a, b = getattr(med["plain"], name), getattr(med["bgp"], name)
        print(f"{label:34}{a:>14,.0f}{b:>14,.0f}{b / a:>8.2f}")


def memory(env: dict[str, str], counter: redis.Redis, kind: str, total: int) -> list[tuple]:
    """Pool children's mean (RSS, USS) in MB: at start, after 500 messages, after ``total``.

    A worker serves one kind only, so the growth is that kind's: what a fork costs
    on its first messages (imports, validators, connections), then whether it stays
    flat. RSS also counts the shared library code a child maps in when it first runs
    it (pydantic-core's, about 2 MB, shared with every other process); USS (memory
    only this child holds) is what each more child costs.
    """
    send = run_plain if kind == "plain" else run_bgp
    with WorkerProcess("benchmarks.overhead_app", env, ["bench"], concurrency=2) as worker:
        cpu = Cpu(worker.proc.pid)
        time.sleep(1)

        def rss() -> tuple[float, float]:
            info = [k.memory_full_info() for k in cpu.parent.children(recursive=True)]
            return (statistics.mean(i.rss for i in info) / 2**20,
                    statistics.mean(i.uss for i in info) / 2**20)
        marks = [rss()]
        send(cpu, counter, 500)
        marks.append(rss())
        for _ in range((total - 500) // 2000):
            send(cpu, counter, 2000)
        marks.append(rss())
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--acks-late", action="store_true",
                        help="acknowledge after the task (the at_least_once preset)")
    parser.add_argument("--split", action="store_true",
                        help="also a worker whose events are dropped: the command layer alone")
    parser.add_argument("--memory", type=int, metavar="N", default=0,
                        help="only the pool children's memory over N messages (e.g. 20000)")
    args = parser.parse_args()
    if private_redis.OWNED:  # never empty databases of a Redis you pointed us at
        for url in (BROKER, EVENTS, COUNTER):
            redis.Redis.from_url(url).flushdb()
    counter = redis.Redis.from_url(COUNTER)
    env = {"BGP_BENCH_BROKER": BROKER, "BGP_BENCH_EVENTS": EVENTS, "BGP_BENCH_COUNTER": COUNTER}
    if args.acks_late:
        env["BGP_BENCH_ACKS_LATE"] = "1"
    if args.memory:
        rows = {kind: memory(env, counter, kind, args.memory) for kind in ("plain", "bgp")}
        print(f"\npool child memory (MB, mean of 2), {args.memory:,} messages of one kind")
        print(f"{'':30}{'at start':>10}{'+500':>10}{'growth':>8}"
              f"{f'+{args.memory:,}':>12}{'then':>8}")
        for kind, marks in rows.items():
            label = "plain Celery" if kind == "plain" else "celery-bgp commands"
            for measure_, i in (("RSS", 0), ("USS", 1)):
                a, b, c = (mark[i] for mark in marks)
                print(f"{label + ' ' + measure_:30}{a:>10.1f}{b:>10.1f}{b - a:>8.1f}"
                      f"{c:>12.1f}{c - b:>+8.1f}")
        return
    acks = "acks_late" if args.acks_late else "acks early (Celery's default)"
    head = f"N={args.n} per round, {args.rounds} rounds, median; worker prefork -c 2, Redis, {acks}"
    table(f"{head}\nevents: Redis", worker_rounds(env, counter, args, events=True))
    if args.split:
        table("events: recorded, then dropped (the command layer alone)",
              worker_rounds({**env, "BGP_BENCH_EVENTS": "discard"}, counter, args,
                            events=False))


if __name__ == "__main__":
    main()
