"""Dispatcher and processor decorators: order, before/after, replace, skip."""
from __future__ import annotations

import dataclasses

from celery_bgp import BackgroundCommand, EventStatus
from tests.unit.test_handlers import make_bgp


@dataclasses.dataclass
class Job(BackgroundCommand):
    value: int


def test_processor_decorators_run_outermost_first_and_see_the_result():
    bgp = make_bgp()
    calls = []

    @bgp.handler(Job)
    def handle(command):
        calls.append("handler")
        return command.value

    @bgp.processor_decorator
    def outer(context, call_next):
        calls.append("outer in")
        result = call_next(context)
        calls.append("outer out")
        return result

    @bgp.processor_decorator
    def inner(context, call_next):
        calls.append(f"inner in {type(context.command).__name__}")
        result = call_next(context)
        calls.append("inner out")
        return result * 100

    assert bgp.dispatch(Job(2)).get() == 200
    assert calls == ["outer in", "inner in Job", "handler", "inner out", "outer out"]
    assert bgp.processor.decorators == (outer, inner)


def test_processor_decorator_can_skip_the_handler():
    bgp = make_bgp()
    ran = []
    bgp.register_handler(lambda c: ran.append(c), command_type=Job)

    @bgp.processor_decorator
    def tenant_gate(context, call_next):
        if context.command.value < 0:
            return "skipped"
        return call_next(context)

    command = Job(-1)
    assert bgp.dispatch(command).get() == "skipped"
    assert ran == []
    assert bgp.events.latest(command.id).status is EventStatus.PROCESSED


def test_processor_decorator_sees_errors_and_headers():
    bgp = make_bgp()
    seen = []

    @bgp.handler(Job)
    def handle(command):
        raise ValueError("bad")

    @bgp.processor_decorator
    def notify(context, call_next):
        try:
            return call_next(context)
        except ValueError as exc:
            seen.append((str(exc), context.request.id))
            raise

    command = Job(1)
    bgp.dispatch(command)
    assert seen == [("bad", command.id)]


def test_dispatcher_decorators_change_options_and_can_skip():
    bgp = make_bgp()
    bgp.register_handler(lambda c: c.value, command_type=Job)
    order = []

    @bgp.dispatcher_decorator
    def tenancy(context, call_next):
        order.append("tenancy")
        context.headers["tenant"] = "acme"
        return call_next(context)

    @bgp.dispatcher_decorator
    def drop_negative(context, call_next):
        order.append("drop")
        if context.command.value < 0:
            return None
        return call_next(context)

    tenants = []

    @bgp.processor_decorator
    def read_tenant(context, call_next):
        tenants.append(context.headers.get("tenant"))
        return call_next(context)

    assert bgp.dispatch(Job(5)).get() == 5
    assert bgp.dispatch(Job(-5)) is None
    assert order == ["tenancy", "drop", "tenancy", "drop"]
    assert tenants == ["acme"]


def test_signature_goes_through_dispatcher_decorators_without_sending():
    bgp = make_bgp()
    bgp.register_handler(lambda c: c.value, command_type=Job)

    @bgp.dispatcher_decorator
    def tag(context, call_next):
        context.headers["tag"] = "x"
        return call_next(context)

    command = Job(3)
    sig = bgp.signature(command)
    assert sig.immutable
    assert sig.options["task_id"] == command.id
    assert sig.options["headers"]["tag"] == "x"
    assert bgp.events.latest(command.id) is None
    assert sig.apply_async().get() == 3


def test_process_runs_decorators_and_records_events_without_celery():
    bgp = make_bgp()
    bgp.register_handler(lambda c: c.value + 1, command_type=Job)
    seen = []

    @bgp.processor_decorator
    def spy(context, call_next):
        seen.append(context.task)
        return call_next(context)

    command = Job(1)
    assert bgp.process(command) == 2
    assert seen == [None]
    assert [e.status for e in bgp.events.all(command.id)] == [
        EventStatus.PROCESSED,
        EventStatus.PROCESSING,
    ]
