"""Command handlers: the class base, the function decorator, and the registry.

One command type has exactly one handler (as in the seed). A handler is either a
:class:`CommandHandler` subclass, built per command by a pluggable factory so a
dependency-injection container can supply its dependencies, or a plain function.
Either may be ``async``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import threading
import typing
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar

from .commands import check_command_type, command_name
from .exceptions import HandlerAlreadyRegistered, NoHandlerRegistered, NotAHandler

__all__ = [
    "CommandHandler",
    "HandlerFactory",
    "HandlerRegistry",
    "HandlerSpec",
    "handler",
    "run_awaitable",
]

C = TypeVar("C")

HandlerFactory = Callable[[type], Any]


class CommandHandler(Generic[C]):
    """Base class for class handlers; the command type comes from ``CommandHandler[T]``.

    Override :meth:`handle` (``def`` or ``async def``). ``task_options`` are passed to
    the Celery task of the command (``queue``, ``rate_limit``, ``autoretry_for``,
    ``max_retries``, ``acks_late`` ...).
    """

    command_type: ClassVar[type | None] = None
    task_options: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "command_type" in vars(cls):
            return
        for base in getattr(cls, "__orig_bases__", ()):
            if typing.get_origin(base) is not None and issubclass(
                typing.get_origin(base), CommandHandler
            ):
                (arg,) = typing.get_args(base)
                if isinstance(arg, type):
                    cls.command_type = arg
                    return

    def handle(self, command: C) -> Any:
        """Run the business logic for ``command``; the return value is the task result."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement handle()")


@dataclasses.dataclass(frozen=True)
class HandlerSpec:
    """A registered handler: the command type, the class or function, task options."""

    command_type: type
    target: Any
    task_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        """The registered name of the command type."""
        return command_name(self.command_type)

    @property
    def is_class(self) -> bool:
        """True for a :class:`CommandHandler` subclass, False for a function."""
        return isinstance(self.target, type)

    def invoke(self, command: Any, factory: HandlerFactory) -> Any:
        """Build the handler (classes) and run it; awaitables are run to completion."""
        fn = factory(self.target).handle if self.is_class else self.target
        result = fn(command)
        if result is not None and type(result) not in _NOT_AWAITABLE \
                and inspect.isawaitable(result):  # the ABC check costs: most return None
            result = run_awaitable(result)
        return result


_MARK = "__bgp_handler__"
#: Results that are never awaitable, checked by type before ``inspect.isawaitable``.
_NOT_AWAITABLE = frozenset({str, bytes, int, float, bool, dict, list, tuple})


def handler(command_type: type, **task_options: Any) -> Callable[[Callable], Callable]:
    """Mark a function as the handler of ``command_type`` for module registration.

    ``bgp.register_handlers(module)`` and ``bgp.autodiscover_handlers`` pick it up, so
    handler modules need not import the ``BackgroundProcessing`` instance.
    """
    check_command_type(command_type)

    def mark(fn: Callable) -> Callable:
        if not callable(fn) or isinstance(fn, type):
            raise NotAHandler(
                "@handler decorates a function; subclass CommandHandler[T] for a class"
            )
        setattr(fn, _MARK, HandlerSpec(command_type, fn, dict(task_options)))
        return fn

    return mark


def spec_for(target: Any, command_type: type | None = None, **task_options: Any) -> HandlerSpec:
    """Build the :class:`HandlerSpec` of a handler class or (marked) function.

    Raises :class:`NotAHandler` (a ``TypeError``) when ``target`` is not a handler or
    does not say which command it handles, :class:`NotACommand` when the command type
    is not one.
    """
    if isinstance(target, type):
        if not issubclass(target, CommandHandler):
            raise NotAHandler(
                f"{target.__qualname__} is not a CommandHandler subclass: derive it from "
                "CommandHandler[YourCommand], or register a function"
            )
        ctype = command_type or target.command_type
        if ctype is None:
            raise NotAHandler(
                f"{target.__qualname__} does not say which command it handles: "
                "derive from CommandHandler[YourCommand], set command_type, or pass "
                "command_type=YourCommand"
            )
        options = {**target.task_options, **task_options}
        return HandlerSpec(check_command_type(ctype), target, options)
    marked = getattr(target, _MARK, None)
    if isinstance(marked, HandlerSpec) and command_type in (None, marked.command_type):
        return dataclasses.replace(
            marked, task_options={**marked.task_options, **task_options}
        )
    if callable(target) and command_type is not None:
        return HandlerSpec(check_command_type(command_type), target, dict(task_options))
    if callable(target):
        name = getattr(target, "__qualname__", None) or repr(target)
        raise NotAHandler(
            f"{name} does not say which command it handles: decorate it with @handler(T) "
            "/ @bgp.handler(T), or pass command_type=T"
        )
    raise NotAHandler(
        f"{_short_repr(target)} is not a handler: register a CommandHandler[T] subclass "
        "or a function (decorated with @handler(T) / @bgp.handler(T), or with "
        "command_type=T)"
    )


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"<{type(value).__qualname__}>"


class HandlerRegistry:
    """Command type <-> handler, plus name -> type for decoding messages."""

    def __init__(self) -> None:
        self._by_type: dict[type, HandlerSpec] = {}
        self._by_name: dict[str, type] = {}
        self._lock = threading.RLock()

    def add(self, spec: HandlerSpec) -> bool:
        """Register ``spec``; return False if that exact handler was already there."""
        with self._lock:
            existing = self._by_type.get(spec.command_type)
            if existing is not None:
                if existing.target is spec.target or _same_target(existing.target, spec.target):
                    return False
                raise HandlerAlreadyRegistered(
                    f"{spec.name} is already handled by {_describe(existing.target)}; "
                    f"cannot also register {_describe(spec.target)}"
                )
            other = self._by_name.get(spec.name)
            if other is not None and other is not spec.command_type:
                raise HandlerAlreadyRegistered(
                    f"two command types share the name {spec.name!r}: set __command_name__ "
                    "on one of them"
                )
            self._by_type[spec.command_type] = spec
            self._by_name[spec.name] = spec.command_type
            return True

    def add_type(self, command_type: type) -> None:
        """Know a command type by name without a handler (publishers, REST front ends)."""
        name = command_name(check_command_type(command_type))
        with self._lock:
            other = self._by_name.get(name)
            if other is not None and other is not command_type:
                raise HandlerAlreadyRegistered(
                    f"two command types share the name {name!r}: set __command_name__ "
                    "on one of them"
                )
            self._by_name[name] = command_type

    def get(self, command_type: type) -> HandlerSpec:
        """The handler of ``command_type``; :class:`NoHandlerRegistered` if none."""
        try:
            return self._by_type[command_type]
        except KeyError:
            raise NoHandlerRegistered(
                f"no handler registered for {command_name(command_type)} in this process"
            ) from None

    def type_named(self, name: str) -> type:
        """The command type registered under ``name``."""
        try:
            return self._by_name[name]
        except KeyError:
            raise NoHandlerRegistered(f"unknown command type {name!r}") from None

    def types(self) -> dict[str, type]:
        """Every command type known here (handled or only registered), by name."""
        with self._lock:
            return dict(self._by_name)

    def __contains__(self, command_type: object) -> bool:
        return command_type in self._by_type

    def __iter__(self):
        return iter(list(self._by_type.values()))

    def __len__(self) -> int:
        return len(self._by_type)


def _same_target(a: Any, b: Any) -> bool:
    """Re-imported modules give new objects for the same definition; treat as same."""
    return (
        getattr(a, "__module__", None) == getattr(b, "__module__", None)
        and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None)
        and getattr(a, "__qualname__", None) is not None
    )


def _describe(target: Any) -> str:
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)!s}"


def handlers_in(module: ModuleType | str) -> list[HandlerSpec]:
    """Handlers defined in ``module`` (a module object or dotted name)."""
    if isinstance(module, str):
        module = importlib.import_module(module)
    specs = []
    for value in list(vars(module).values()):
        if getattr(value, "__module__", None) != module.__name__:
            continue
        if isinstance(value, type) and issubclass(value, CommandHandler):
            if value is not CommandHandler and value.command_type is not None:
                specs.append(spec_for(value))
        elif isinstance(getattr(value, _MARK, None), HandlerSpec):
            specs.append(spec_for(value))
    return specs


def iter_modules(modules: Iterable[ModuleType | str] | ModuleType | str) -> list[Any]:
    """Normalise one module / name or an iterable of them to a list."""
    if isinstance(modules, (str, ModuleType)):
        return [modules]
    return list(modules)


_loops = threading.local()


def run_awaitable(awaitable: Any) -> Any:
    """Run a coroutine to completion on this thread's own event loop.

    The loop is reused for the thread's next async handler (cheaper than
    ``asyncio.run`` per task, and connection pools bound to a loop keep working).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise RuntimeError(
            "an async handler was called from inside a running event loop; "
            "await the handler directly instead of going through the processor"
        )
    loop = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    return loop.run_until_complete(awaitable)
