"""Which callable a job runs: names, the module allow-list, activators, injection.

A job stores its callable as ``"module:QualName"``. Only modules on the allow-list
(``bgp_job_modules``) are ever imported to resolve one, at enqueue and again at
execution, so neither a message nor a row in the store can make a worker import an
arbitrary path. Methods defined on a class run on an instance built by the
activator (default: ``cls()``), so a DI container can build it.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import json
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..exceptions import ImproperlyConfigured

__all__ = ["Invocation", "JobNotAllowed", "callable_name", "resolve"]


class JobNotAllowed(ImproperlyConfigured):
    """The callable's module is not on the ``bgp_job_modules`` allow-list."""


def callable_name(fn: Any) -> str:
    """``"module:QualName"`` of a function, static/class method or (bound) method."""
    if isinstance(fn, str):
        if ":" not in fn:
            raise ImproperlyConfigured(f"job name {fn!r} must look like 'package.module:function'")
        return fn
    target = getattr(fn, "__func__", fn)  # bound methods
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not module or not qualname:
        raise ImproperlyConfigured(f"{fn!r} has no module/qualified name; pass a function")
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise ImproperlyConfigured(
            f"{qualname} is defined inside a function or is a lambda: a worker cannot import "
            "it; define it at module level"
        )
    if module == "__main__":
        raise ImproperlyConfigured(
            f"{qualname} lives in __main__, which a worker cannot import; move it to a module"
        )
    return f"{module}:{qualname}"


def allowed(module: str, allow_list: Iterable[str]) -> bool:
    """True if ``module`` is one of the allowed modules or inside an allowed package."""
    return any(module == prefix or module.startswith(prefix + ".") for prefix in allow_list)


def check_args(args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    """Raise a clear error unless the arguments are JSON-serializable."""
    try:
        json.dumps([list(args), kwargs], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"job arguments must be JSON-serializable: {exc}") from None


class Invocation:
    """A resolved callable plus what it wants injected (context, cancellation)."""

    def __init__(self, name: str, target: Callable[..., Any], owner: type | None) -> None:
        self.name = name
        self.target = target
        self.owner = owner  # class whose instance the activator builds, for methods
        self.context_param, self.cancel_param = _injected(target)

    def call(self, args: Sequence[Any], kwargs: dict[str, Any], *, activator: Callable[[type], Any],
             context: Any, cancellation: Any) -> Any:
        """Run the callable with stored arguments plus what it asked to be injected."""
        call_kwargs = dict(kwargs)
        if self.context_param:
            call_kwargs[self.context_param] = context
        if self.cancel_param:
            call_kwargs[self.cancel_param] = cancellation
        if self.owner is not None:
            return self.target(activator(self.owner), *args, **call_kwargs)
        return self.target(*args, **call_kwargs)


def resolve(name: str, allow_list: Iterable[str]) -> Invocation:
    """Import and find ``"module:QualName"`` if its module is allowed."""
    module_name, _, qualname = name.partition(":")
    allow = list(allow_list)
    if not allowed(module_name, allow):
        hint = ", ".join(allow) if allow else "nothing yet"
        raise JobNotAllowed(
            f"{module_name} is not an allowed job module (bgp_job_modules allows {hint}); "
            f"add it to run {qualname}"
        )
    return _resolve(name)


@functools.lru_cache(maxsize=1024)
def _resolve(name: str) -> Invocation:
    module_name, _, qualname = name.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImproperlyConfigured(f"cannot import job module {module_name}: {exc}") from None
    owner = None
    parts = qualname.split(".")
    for i, part in enumerate(parts):
        try:
            attr = inspect.getattr_static(obj, part)
        except AttributeError:
            raise ImproperlyConfigured(f"{module_name} has no {qualname}") from None
        last = i == len(parts) - 1
        if last and isinstance(obj, type):
            if isinstance(attr, staticmethod):
                return Invocation(name, attr.__func__, None)
            if isinstance(attr, classmethod):
                return Invocation(name, getattr(obj, part), None)
            if inspect.isfunction(attr):
                owner = obj
                return Invocation(name, attr, owner)
        obj = getattr(obj, part)
    if not callable(obj):
        raise ImproperlyConfigured(f"{name} is not callable")
    return Invocation(name, obj, None)


def _injected(fn: Callable[..., Any]) -> tuple[str | None, str | None]:
    """Names of the parameters that take the job context and the cancellation token."""
    from .context import CancellationToken, JobContext

    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: fall back to names only
        hints = {}
    context = cancel = None
    for param in inspect.signature(fn).parameters.values():
        hint = hints.get(param.name, param.annotation)
        if hint is JobContext or param.name == "job_context":
            context = param.name
        elif hint is CancellationToken or param.name == "cancellation":
            cancel = param.name
    return context, cancel
