"""Command types and handlers shared by the test process and the worker subprocesses."""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from celery import current_task

from celery_bgp import BackgroundCommand, CommandHandler, handler


def sink():
    """Redis client where handlers leave side effects for the tests to check."""
    import redis

    return redis.Redis.from_url(os.environ["BGP_TEST_SINK"])


@dataclass
class Echo(BackgroundCommand):
    text: str


@handler(Echo)
def echo(command: Echo) -> str:
    return command.text


@dataclass
class AsyncEcho(BackgroundCommand):
    text: str


class AsyncEchoHandler(CommandHandler[AsyncEcho]):
    async def handle(self, command: AsyncEcho) -> str:
        await asyncio.sleep(0.01)
        return command.text.upper()


class Boom(Exception):
    """The failure a test command raises on purpose."""


@dataclass
class Fail(BackgroundCommand):
    message: str


@handler(Fail)
def fail(command: Fail) -> None:
    raise Boom(command.message)


class FlakyError(Exception):
    """Retried by the Flaky command's task options."""


@dataclass
class Flaky(BackgroundCommand):
    key: str
    failures: int


@handler(Flaky, autoretry_for=(FlakyError,), max_retries=5, default_retry_delay=0)
def flaky(command: Flaky) -> int:
    attempt = sink().incr(command.key)
    if attempt <= command.failures:
        raise FlakyError(f"attempt {attempt} fails")
    return attempt


@dataclass
class Sleep(BackgroundCommand):
    seconds: float


@handler(Sleep)
def sleep(command: Sleep) -> float:
    time.sleep(command.seconds)
    return command.seconds


@dataclass
class Append(BackgroundCommand):
    key: str
    item: str


@handler(Append)
def append(command: Append) -> str:
    sink().rpush(command.key, command.item)
    return command.item


@dataclass
class WhereAmI(BackgroundCommand):
    """Returns the queue (routing key) it was delivered on."""

    tags: list[str] = field(default_factory=list)


@handler(WhereAmI)
def where_am_i(command: WhereAmI) -> str | None:
    return (current_task.request.delivery_info or {}).get("routing_key")


class Greeter:
    """A dependency the DI-built handler needs."""

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting


@dataclass
class Greet(BackgroundCommand):
    name: str


class GreetHandler(CommandHandler[Greet]):
    def __init__(self, greeter: Greeter) -> None:
        self.greeter = greeter

    def handle(self, command: Greet) -> str:
        return f"{self.greeter.greeting}, {command.name}"


def container(handler_class: type):
    """A tiny stand-in for a DI container: builds handlers with their dependencies."""
    if handler_class is GreetHandler:
        return GreetHandler(Greeter("Bonjour"))
    return handler_class()


@dataclass
class SlowAppend(BackgroundCommand):
    """Append the command id to a list after a short pause: fault tests count these."""

    key: str
    seconds: float = 0.05


@handler(SlowAppend)
def slow_append(command: SlowAppend) -> None:
    time.sleep(command.seconds)
    sink().rpush(command.key, command.id)


@dataclass
class FailOnce(BackgroundCommand):
    """Fails on its first run (counted in the sink under ``key``), succeeds after."""

    key: str


@handler(FailOnce)
def fail_once(command: FailOnce) -> int:
    attempt = sink().incr(command.key)
    if attempt == 1:
        raise Boom(f"first run of {command.key} fails")
    return attempt
