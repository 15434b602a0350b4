"""Daemon callables of the daemon tests (allow-listed: tests.apps is in job_modules).

Each writes what it does to the test's Redis sink under ``BGP_TEST_DAEMON_KEY``, so
the test (and the daemon itself) can see starts, ends and overlaps.
"""
from __future__ import annotations

import os
import socket
import time
import uuid

from celery_bgp.daemons import DaemonContext
from tests.apps.jobs import sink

#: A copy's "alive" key lives this long; a SIGKILLed copy's goes away by itself.
ALIVE_MS = 400


def _key(*parts: str) -> str:
    return ":".join([os.environ.get("BGP_TEST_DAEMON_KEY", "bgp-daemon"), *parts])


def _started(ctx: DaemonContext) -> str:
    me = f"{ctx.worker}|{os.getpid()}|{uuid.uuid4().hex[:6]}"
    sink().rpush(_key(ctx.name, "starts"), f"{time.time():.3f} {me}")
    return me


def ticker(ctx: DaemonContext) -> None:
    """Tick every 50 ms until stopped, checking that no other copy ticks meanwhile."""
    redis = sink()
    me = _started(ctx)
    alive, pattern = _key(ctx.name, "alive", me), _key(ctx.name, "alive", "*")
    ctx.info(f"ticking on {socket.gethostname()} as {me}")
    ticks = 0
    while not ctx.wait(0.05):
        redis.set(alive, f"{time.time():.3f}", px=ALIVE_MS)
        others = [k for k in redis.scan_iter(match=pattern) if k != alive]
        if others:
            redis.rpush(_key(ctx.name, "overlaps"), f"{time.time():.3f} {me} {others}")
        ticks += 1
        if ticks % 20 == 0:
            ctx.set_state({"ticks": ticks, "worker": ctx.worker})
    redis.delete(alive)
    redis.rpush(_key(ctx.name, "ends"), f"{time.time():.3f} {me} stopped")


def waits(ctx: DaemonContext) -> None:
    """Run until stopped; record the stop."""
    me = _started(ctx)
    ctx.wait(3600)
    sink().rpush(_key(ctx.name, "ends"), f"{time.time():.3f} {me} stopped")


def returns(ctx: DaemonContext) -> None:
    """End at once, cleanly."""
    _started(ctx)


def fails(ctx: DaemonContext) -> None:
    """Raise at once."""
    _started(ctx)
    raise RuntimeError(f"{ctx.name} failed on purpose")


async def waits_async(ctx: DaemonContext) -> None:
    """An ``async def`` daemon: runs on its own event loop until stopped."""
    import asyncio

    ctx.set_state({"async": True})
    while not ctx.stopping:
        await asyncio.sleep(0.05)
