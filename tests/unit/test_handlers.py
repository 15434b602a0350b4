"""Handler registration: classes, functions, async, modules, autodiscovery, factories."""
from __future__ import annotations

import dataclasses
import types

import pytest
from celery import Celery, signals

from celery_bgp import (
    BackgroundCommand,
    BackgroundProcessing,
    CommandHandler,
    EventStatus,
    HandlerAlreadyRegistered,
    ImproperlyConfigured,
    NoHandlerRegistered,
    NotAHandler,
)
from celery_bgp.events.memory import MemoryEventRepository
from tests.apps.shop import CancelOrder, PlaceOrder


@dataclasses.dataclass
class Ping(BackgroundCommand):
    n: int = 0


def make_bgp(**options):
    app = Celery("t", set_as_current=False)
    app.conf.update(broker_url="memory://", task_always_eager=True)
    options.setdefault("event_repository", MemoryEventRepository())
    options.setdefault("event_write", "sync")
    return BackgroundProcessing(app, name=f"t{id(app)}", **options)


def test_class_handler_with_generic_parameter():
    class PingHandler(CommandHandler[Ping]):
        def handle(self, command):
            return command.n + 1

    bgp = make_bgp()
    task = bgp.register_handler(PingHandler)
    assert task.name == f"bgp.{__name__}.Ping"
    assert bgp.dispatch(Ping(n=1)).get() == 2


def test_function_and_async_function_handlers():
    bgp = make_bgp()

    @bgp.handler(Ping)
    async def ping(command):
        return command.n * 10

    assert bgp.dispatch(Ping(n=4)).get() == 40


def test_registering_the_same_handler_twice_is_harmless_but_a_second_one_fails():
    class PingHandler(CommandHandler[Ping]):
        def handle(self, command):
            return 1

    class OtherPingHandler(CommandHandler[Ping]):
        def handle(self, command):
            return 2

    bgp = make_bgp()
    first = bgp.register_handler(PingHandler)
    assert bgp.register_handler(PingHandler) is first
    with pytest.raises(HandlerAlreadyRegistered, match="already handled"):
        bgp.register_handler(OtherPingHandler)


def test_register_handlers_from_module_object_and_dotted_name():
    bgp = make_bgp()
    found = bgp.register_handlers("tests.apps.shop.handlers")
    assert {s.command_type for s in found} == {PlaceOrder, CancelOrder}
    import tests.apps.shop.handlers as module

    bgp.register_handlers(module)  # again: harmless
    assert bgp.dispatch(PlaceOrder(sku="A", quantity=2)).get() == {"sku": "A", "quantity": 2}
    assert bgp.dispatch(CancelOrder(order="o1")).get() == "cancelled o1"
    assert bgp.task_for(PlaceOrder).rate_limit == "100/s"


def test_autodiscover_is_lazy_until_the_worker_imports_modules():
    bgp = make_bgp()
    bgp.autodiscover_handlers(["tests.apps.shop", "no.such.package"])
    assert PlaceOrder not in bgp.registry
    signals.import_modules.send(sender=bgp.app)
    assert PlaceOrder in bgp.registry


def test_autodiscover_force_and_dispatch_time_discovery():
    bgp = make_bgp()
    bgp.autodiscover_handlers(lambda: ["tests.apps.shop"], force=True)
    assert CancelOrder in bgp.registry
    lazy = make_bgp()
    lazy.autodiscover_handlers(["tests.apps.shop"])
    assert lazy.dispatch(CancelOrder(order="x")).get() == "cancelled x"


def test_handler_modules_setting_from_celery_config():
    bgp = make_bgp()
    bgp.app.conf.bgp_handler_modules = "tests.apps.shop.handlers"
    bgp.discover()
    assert PlaceOrder in bgp.registry


def test_factory_builds_each_handler_per_command():
    built = []

    class Service:
        pass

    class PingHandler(CommandHandler[Ping]):
        def __init__(self, service):
            self.service = service

        def handle(self, command):
            return type(self.service).__name__

    def factory(cls):
        handler = cls(Service())
        built.append(handler)
        return handler

    bgp = make_bgp(handler_factory=factory)
    bgp.register_handler(PingHandler)
    assert bgp.dispatch(Ping()).get() == "Service"
    bgp.dispatch(Ping())
    assert len(built) == 2 and built[0] is not built[1]


def test_handler_without_command_type_is_refused():
    class Vague(CommandHandler):
        def handle(self, command):
            return None

    with pytest.raises(NotAHandler, match="does not say which command"):
        make_bgp().register_handler(Vague)
    with pytest.raises(NotAHandler, match="does not say which command"):
        make_bgp().register_handler(lambda c: None)


def test_two_types_with_one_name_are_refused():
    bgp = make_bgp()
    bgp.register_handler(lambda c: 1, command_type=Ping)
    clash = types.new_class("Ping", (BackgroundCommand,))
    clash.__module__ = __name__
    clash = dataclasses.dataclass(clash)
    with pytest.raises(HandlerAlreadyRegistered, match="share the name"):
        bgp.register_handler(lambda c: 2, command_type=clash)


def test_handler_errors_are_recorded_not_hidden():
    bgp = make_bgp()

    @bgp.handler(Ping)
    def boom(command):
        raise KeyError("nope")

    command = Ping()
    result = bgp.dispatch(command)
    assert result.failed()
    event = bgp.events.latest(command.id)
    assert event.status is EventStatus.ERROR
    assert event.error.type == "KeyError"


def test_no_handler_here_is_clear_in_eager_mode():
    with pytest.raises(ImproperlyConfigured, match="no handler"):
        make_bgp().dispatch(Ping())
    with pytest.raises(NoHandlerRegistered):
        make_bgp().registry.get(Ping)


def test_unknown_option_is_refused():
    with pytest.raises(ImproperlyConfigured, match="unknown BackgroundProcessing option"):
        make_bgp(event_repo="memory://")
