"""Mistakes with commands fail at the call that makes them, and the error names the fix.

A command whose field values do not fit their types fails at ``dispatch`` and
``signature`` (the worker would reject it); a class where an instance is expected, an
object that is not a command, a handler that is not one are ``TypeError``s;
``ImproperlyConfigured`` is kept for configuration.
"""
from __future__ import annotations

import dataclasses
import re
import typing
import uuid
import warnings
from datetime import datetime, timezone
from typing import Annotated

import pydantic
import pytest
from celery import Celery, signals

from celery_bgp import (
    BackgroundCommand,
    BackgroundProcessing,
    BGPError,
    CommandHandler,
    HandlerAlreadyRegistered,
    ImproperlyConfigured,
    InvalidCommand,
    handler,
)
from celery_bgp.events.memory import MemoryEventRepository


@dataclasses.dataclass
class ResizeImage(BackgroundCommand):
    url: str
    width: int = 100
    tags: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Positive(BackgroundCommand):
    count: Annotated[int, pydantic.Field(gt=0)] = 1


class ModelCommand(pydantic.BaseModel):
    id: str = pydantic.Field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: datetime = pydantic.Field(default_factory=lambda: datetime.now(timezone.utc))
    count: int


def make_bgp(eager: bool = False, **options) -> BackgroundProcessing:
    app = Celery(f"early-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(broker_url="memory://", task_always_eager=eager)
    options.setdefault("event_repository", MemoryEventRepository())
    options.setdefault("event_write", "sync")
    return BackgroundProcessing(app, name=f"early-{uuid.uuid4().hex[:6]}", **options)


@pytest.fixture
def published():
    """Task names of every message published while the test runs."""
    names: list[str] = []

    def receiver(sender=None, **_):
        names.append(sender)

    signals.before_task_publish.connect(receiver, weak=False)
    yield names
    signals.before_task_publish.disconnect(receiver)


# -- field values that do not fit their types ------------------------------------------


def test_a_field_of_the_wrong_type_fails_at_dispatch_naming_field_and_types(published):
    bgp = make_bgp()
    command = ResizeImage(url=42)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pydantic serializer warning on the way
        with pytest.raises(InvalidCommand) as info:
            bgp.dispatch(command)
    message = str(info.value)
    assert "ResizeImage" in message
    assert "url: got int, expected str" in message
    assert "Input should be a valid string" in message
    assert "build the command with values of the declared types" in message
    assert published == []  # nothing was sent
    assert bgp.events.all(command.id) == []  # no DISPATCHED event


def test_signature_fails_the_same_way():
    bgp = make_bgp()
    with pytest.raises(InvalidCommand, match="width: got str, expected int"):
        bgp.signature(ResizeImage(url="u", width="wide"))  # type: ignore[arg-type]


def test_every_misfit_is_listed_and_nested_ones_name_their_field_type():
    bgp = make_bgp()
    with pytest.raises(InvalidCommand) as info:
        bgp.dispatch(ResizeImage(url=b"u", width=1.5, tags=["a", 7]))  # type: ignore[arg-type]
    message = str(info.value)
    assert "url: got bytes, expected str" not in message  # bytes encode as a str: accepted
    assert "width: got float, expected int (Input should be a valid integer" in message
    assert "tags.1: got int, in tags: list[str] (Input should be a valid string)" in message


def test_values_are_never_echoed():
    bgp = make_bgp()
    with pytest.raises(InvalidCommand) as info:
        bgp.dispatch(ResizeImage(url="u", width="s3cr3t-token"))  # type: ignore[arg-type]
    assert "s3cr3t-token" not in str(info.value)


def test_what_the_worker_would_accept_is_accepted():
    """Same validation as the worker: a value it coerces (``"12"`` for an int) passes."""
    bgp = make_bgp()
    signature = bgp.signature(ResizeImage(url="u", width="12"))  # type: ignore[arg-type]
    assert signature.args[0]["width"] == "12"  # the worker reads 12


def test_constraints_are_checked_too():
    bgp = make_bgp()
    with pytest.raises(InvalidCommand, match=r"count: Input should be greater than 0"):
        bgp.dispatch(Positive(count=-1))


def test_a_pydantic_model_changed_after_validation_fails_at_dispatch():
    bgp = make_bgp()
    command = ModelCommand(count=1)
    command.count = "many"  # no validate_assignment
    with pytest.raises(InvalidCommand, match="count: got str, expected int"):
        bgp.dispatch(command)
    built = ModelCommand.model_construct(count=[1])  # skips validation
    with pytest.raises(InvalidCommand, match="count: got list, expected int"):
        bgp.dispatch(built)


def test_valid_commands_still_go_and_eager_mode_still_runs_them():
    bgp = make_bgp(eager=True)
    bgp.register_handler(lambda c: c.width * 2, command_type=ResizeImage)
    assert bgp.dispatch(ResizeImage(url="u", width=21)).get() == 42
    with pytest.raises(InvalidCommand, match="width: got str"):
        bgp.dispatch(ResizeImage(url="u", width="x"))  # type: ignore[arg-type]


# -- the class instead of an instance; objects that are not commands ---------------------


@pytest.mark.parametrize("call", ["dispatch", "signature"])
def test_dispatching_the_class_says_pass_an_instance(call):
    bgp = make_bgp()
    expected = (f"{call}() takes a command instance: ResizeImage(...), "
                "not the class ResizeImage")
    with pytest.raises(TypeError, match=re.escape(expected)) as info:
        getattr(bgp, call)(ResizeImage)
    assert isinstance(info.value, BGPError)
    assert not isinstance(info.value, ImproperlyConfigured)


def test_dispatching_something_that_is_not_a_command_is_a_type_error_naming_the_fix():
    bgp = make_bgp()
    with pytest.raises(TypeError, match=r"dispatch\(\) takes a command instance, got dict: "
                                        r".*derive from BackgroundCommand") as info:
        bgp.dispatch({"url": "u"})
    assert not isinstance(info.value, ImproperlyConfigured)

    @dataclasses.dataclass
    class NoIds:
        url: str

    with pytest.raises(TypeError, match=r"got NoIds: .*'id' and 'timestamp'"):
        bgp.signature(NoIds("u"))


def test_dispatcher_decorators_do_not_see_a_class():
    bgp = make_bgp()
    seen = []
    bgp.dispatcher_decorator(lambda context, call_next: seen.append(context) or call_next(context))
    with pytest.raises(TypeError, match="takes a command instance"):
        bgp.dispatch(ResizeImage)
    assert seen == []


# -- handlers: wrong argument types are TypeErrors ---------------------------------------


def test_registering_something_that_is_not_a_handler_is_a_type_error():
    bgp = make_bgp()
    with pytest.raises(TypeError, match=r"42 is not a handler: register a CommandHandler\[T\] "
                                        r"subclass or a function") as info:
        bgp.register_handler(42)
    assert not isinstance(info.value, ImproperlyConfigured)
    with pytest.raises(TypeError, match="is not a handler"):
        bgp.register_handler(42, command_type=ResizeImage)

    class Plain:
        def handle(self, command):
            return None

    with pytest.raises(TypeError, match=r"Plain is not a CommandHandler subclass: derive it "
                                        r"from CommandHandler\[YourCommand\]"):
        bgp.register_handler(Plain)


def test_a_handler_that_does_not_say_its_command_is_a_type_error():
    class Vague(CommandHandler):
        def handle(self, command):
            return None

    with pytest.raises(TypeError, match=r"Vague does not say which command it handles: derive "
                                        r"from CommandHandler\[YourCommand\]"):
        make_bgp().register_handler(Vague)
    with pytest.raises(TypeError, match=r"does not say which command it handles: decorate it "
                                        r"with @handler\(T\) / @bgp.handler\(T\), or pass "
                                        r"command_type=T"):
        make_bgp().register_handler(lambda c: None)


def test_a_handler_for_a_type_that_is_not_a_command_is_a_type_error():
    bgp = make_bgp()
    with pytest.raises(TypeError, match=r"dict is not a command type: .*derive from "
                                        r"BackgroundCommand") as info:
        bgp.register_handler(lambda c: None, command_type=dict)
    assert not isinstance(info.value, ImproperlyConfigured)
    with pytest.raises(TypeError, match="dict is not a command type"):
        bgp.handler(dict)
    with pytest.raises(TypeError, match="dict is not a command type"):
        handler(dict)
    with pytest.raises(TypeError, match="dict is not a command type"):
        bgp.register_command(dict)


def test_a_command_instance_where_a_type_is_expected_says_pass_the_class():
    with pytest.raises(TypeError, match=r"a command type is a class: pass ResizeImage, not an "
                                        r"instance of it"):
        make_bgp().handler(ResizeImage(url="u"))


def test_the_handler_decorator_on_a_class_or_a_non_callable_is_a_type_error():
    mark = handler(ResizeImage)
    with pytest.raises(TypeError, match=r"@handler decorates a function; subclass "
                                        r"CommandHandler\[T\] for a class"):
        mark(type("Klass", (), {}))
    with pytest.raises(TypeError, match="@handler decorates a function"):
        mark("not callable")


def test_a_subclass_that_forgot_dataclass_is_a_type_error_naming_the_decorator():
    class Forgot(ResizeImage):  # no @dataclass
        height: int

    with pytest.raises(TypeError, match="declares \\['height'\\] but is not itself a "
                                        "dataclass: decorate it with @dataclass"):
        make_bgp().dispatch(Forgot(url="u"))


# -- configuration errors stay ImproperlyConfigured ---------------------------------------


def test_configuration_errors_stay_improperly_configured():
    with pytest.raises(ImproperlyConfigured, match="task_always_eager is set but no handler"):
        make_bgp(eager=True).dispatch(ResizeImage(url="u"))
    with pytest.raises(ImproperlyConfigured, match="unknown BackgroundProcessing option"):
        make_bgp(event_repo="memory://")

    class One(CommandHandler[ResizeImage]):
        def handle(self, command):
            return 1

    class Two(CommandHandler[ResizeImage]):
        def handle(self, command):
            return 2

    bgp = make_bgp()
    bgp.register_handler(One)
    with pytest.raises(HandlerAlreadyRegistered, match="already handled"):
        bgp.register_handler(Two)
    assert issubclass(HandlerAlreadyRegistered, ImproperlyConfigured)



@dataclasses.dataclass
class DeepNote(BackgroundCommand):
    data: typing.Any = None


def test_a_command_nested_too_deeply_is_an_invalid_command_at_dispatch():
    from celery_bgp.commands import encode_command
    from celery_bgp.exceptions import InvalidCommand

    value: list = []
    for _ in range(400):
        value = [value]
    with pytest.raises(InvalidCommand, match="nested too deeply"):
        encode_command(DeepNote(data=value), 10**6, validate=True)
