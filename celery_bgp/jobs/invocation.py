"""Which callable a job runs: names, the module allow-list, activators, injection.

A job stores its callable as ``"module:QualName"``. Only modules on the allow-list
(``bgp_job_modules``) are ever imported to resolve one, and what runs must be
*defined in* one of them: the path after ``:`` is walked statically, only through
classes defined in allowed modules, to a function defined there. The rule is applied
at submit, at recurring-job registration and again at execution, so neither a
message nor a row in the store can make a worker import or run anything else.
Methods defined on a class run on an instance built by the activator (default:
``cls()``), so a DI container can build it.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import json
import types
import typing
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..exceptions import BGPError, ImproperlyConfigured

__all__ = ["InvalidJobArguments", "Invocation", "JobNotAllowed", "callable_name", "resolve"]


class InvalidJobArguments(BGPError, TypeError):
    """The job's arguments do not fit its callable's signature (no retry can fix it)."""


class JobNotAllowed(ImproperlyConfigured):
    """A job name the allow-list refuses: its module is not on ``bgp_job_modules``
    (``job_modules=``, ``CELERY_BGP_JOB_MODULES``), or its path leaves that module (a
    dunder, another module, a builtin, an imported or re-exported object)."""


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
        try:
            signature = inspect.signature(target, eval_str=True)  # int, not 'int', in errors
        except Exception:  # annotations that do not evaluate here
            signature = inspect.signature(target)
        params = [p for p in signature.parameters.values()
                  if p.name not in (self.context_param, self.cancel_param)]
        #: What the stored arguments must bind to: no self, no injected parameters.
        self.signature = inspect.Signature(params[1:] if owner is not None else params)

    def check_arguments(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Raise :class:`InvalidJobArguments` unless the arguments bind to the callable.

        Checked at submit, so a wrong call fails in the caller, not ten retries later
        on a worker; and again on the worker, where it fails the job without retries.
        """
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidJobArguments(
                f"{self.name}{self.signature} cannot take args={list(args)!r:.200} "
                f"kwargs={kwargs!r:.200}: {exc}") from None

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
    """Find the job callable ``"module:QualName"`` if it is *defined in* an allowed module.

    The module (before ``:``) must be on the allow-list; only then is it imported. The
    path after ``:`` is walked statically (the module's ``__dict__``, then class
    ``__dict__`` along the MRO of classes defined in allowed modules), so no
    ``__getattr__``, property or other descriptor code runs while resolving. It may pass
    only through classes defined in allowed modules and must end at a function defined
    in one: a module-level function, or a plain, static or class method of such a
    class. Another module, a builtin, an imported or re-exported function or class, an
    instance, and any dunder name are refused with :class:`JobNotAllowed`, which says
    which part of the path was refused and why.
    """
    if type(name) is not str:
        raise JobNotAllowed(f"job name must be a string, not {type(name).__name__}")
    return _resolve(name, tuple(allow_list))


#: Where the allow-list is set, for error messages.
WHERE = ("job_modules= (the BackgroundProcessing option), the Celery setting bgp_job_modules "
         "or CELERY_BGP_JOB_MODULES in Django settings")

_MODULE_DICT = types.ModuleType.__dict__["__dict__"]
_CLASS_DICT = type.__dict__["__dict__"]
_CLASS_MRO = type.__dict__["__mro__"]
_CLASS_MODULE = type.__dict__["__module__"]
_CLASS_QUALNAME = type.__dict__["__qualname__"]


def _parse(name: str) -> tuple[str, str]:
    """``(module, qualname)`` of a well-formed job name; dunders refused before any import."""
    module_name, sep, qualname = name.partition(":")
    if not sep or not module_name or not qualname:
        raise JobNotAllowed(f"job name {name!r} is malformed: it must look like "
                            "'package.module:function' or 'package.module:Class.method'")
    for where, text in (("module", module_name), ("path", qualname)):
        for part in text.split("."):
            if not part.isidentifier() or unicodedata.normalize("NFKC", part) != part:
                raise JobNotAllowed(f"job name {name!r} is malformed: {part!r} in its {where} "
                                    "is not a Python identifier")
            if part.startswith("__"):
                raise JobNotAllowed(
                    f"job {name!r} refused at {part!r}: dunder and private (__name) "
                    "attributes are never followed in a job path"
                )
    return module_name, qualname


def _module_name_of(obj: Any) -> Any:
    """``__module__`` of a class without running metaclass code (None if not a str)."""
    value = _CLASS_MODULE.__get__(obj, type)
    return value if type(value) is str else None


_BUILTIN_TYPES = (types.BuiltinFunctionType, types.WrapperDescriptorType,
                  types.MethodWrapperType, types.MethodDescriptorType,
                  types.ClassMethodDescriptorType)


def _is_module(obj: Any) -> bool:
    return issubclass(type(obj), types.ModuleType)  # type(), not isinstance: no __class__


def _is_class(obj: Any) -> bool:
    return issubclass(type(obj), type)


def _text(value: Any) -> str:
    """``value`` if it is a plain str, never calling a foreign ``__str__``."""
    return value if type(value) is str else f"<{type(value).__name__}>"


def _describe(obj: Any) -> str:
    """What ``obj`` is, for error messages, without running any of its code."""
    if _is_module(obj):
        return f"module {dict.get(_MODULE_DICT.__get__(obj), '__name__', '?')}"
    if _is_class(obj):
        return f"class {_module_name_of(obj)}.{_CLASS_QUALNAME.__get__(obj, type)}"
    if type(obj) is types.FunctionType:
        return f"function {_text(obj.__module__)}.{obj.__qualname__}"
    if type(obj) in _BUILTIN_TYPES:
        return "builtin"
    kind = type(obj)
    return f"{_module_name_of(kind)}.{_CLASS_QUALNAME.__get__(kind, type)} object"


@functools.lru_cache(maxsize=1024)
def _resolve(name: str, allow: tuple[str, ...]) -> Invocation:
    # The key holds the allow-list: a result cached under one list never answers another
    # (and refusals, being exceptions, are never cached).
    module_name, qualname = _parse(name)
    if not allowed(module_name, allow):
        hint = ", ".join(allow) if allow else "nothing yet"
        raise JobNotAllowed(
            f"{module_name} is not an allowed job module (bgp_job_modules allows {hint}); "
            f"add it to {WHERE} to run {qualname}"
        )
    try:
        module: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImproperlyConfigured(f"cannot import job module {module_name}: {exc}") from None
    if not _is_module(module):
        raise JobNotAllowed(f"job {name!r} refused: {module_name} is not a module in sys.modules")
    real = dict.get(_MODULE_DICT.__get__(module), "__name__")
    # A script may register itself under its module name (sys.modules[name] = __main__);
    # any other alias must itself be allowed.
    if type(real) is not str or (real not in (module_name, "__main__")
                                 and not allowed(real, allow)):
        raise JobNotAllowed(f"job {name!r} refused: {module_name} is an alias of module "
                            f"{_text(real)}, which is not an allowed job module")

    def home(module_of: Any) -> bool:
        # type() is str: a str subclass could run code in ``==`` or ``startswith``.
        return type(module_of) is str and (module_of == real or allowed(module_of, allow))

    parts = qualname.split(".")

    def refuse(i: int, why: str) -> JobNotAllowed:
        step = f"{module_name}:{'.'.join(parts[:i + 1])}"
        return JobNotAllowed(f"job {name!r} refused at {step}: {why}")

    obj: Any = module
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if obj is module:
            namespace = _MODULE_DICT.__get__(module)
            if part not in namespace:
                raise ImproperlyConfigured(f"{module_name} has no {'.'.join(parts[:i + 1])}")
            attr = namespace[part]
        else:  # a class defined in an allowed module: its MRO, statically
            for klass in _CLASS_MRO.__get__(obj, type):
                namespace = _CLASS_DICT.__get__(klass, type)
                if part in namespace:
                    break
            else:
                raise ImproperlyConfigured(f"{module_name} has no {'.'.join(parts[:i + 1])}")
            if not home(_module_name_of(klass)):
                raise refuse(i, f"it is inherited from {_describe(klass)}, which is not "
                                "defined in an allowed job module")
            attr = namespace[part]
            if last:
                if type(attr) is staticmethod:
                    return Invocation(name, _defined_here(attr.__func__, home, refuse, i), None)
                if type(attr) is classmethod:
                    fn = _defined_here(attr.__func__, home, refuse, i)
                    return Invocation(name, types.MethodType(fn, obj), None)
                if type(attr) is types.FunctionType:
                    return Invocation(name, _defined_here(attr, home, refuse, i), obj)
        if _is_module(attr):
            raise refuse(i, f"it is {_describe(attr)}: a job path never passes through "
                            "another module; name the module before the ':'")
        if _is_class(attr):
            if not home(_module_name_of(attr)):
                raise refuse(i, f"it is {_describe(attr)}, imported from a module that is not "
                                "an allowed job module; only classes defined in one are "
                                f"followed ({WHERE})")
            if last:
                raise refuse(i, f"it is {_describe(attr)}: a job runs a function or method; "
                                f"name one of its methods ({name}.method)")
            obj = attr
            continue
        if last and type(attr) is types.FunctionType:
            return Invocation(name, _defined_here(attr, home, refuse, i), None)
        if _describe(attr) == "builtin":
            raise refuse(i, "it is a builtin, not a function defined in an allowed job module")
        if last:
            raise refuse(i, f"it is a {_describe(attr)}, not a function: a job runs a "
                            "function, or a plain, static or class method")
        raise refuse(i, f"it is a {_describe(attr)}: a job path walks only through classes "
                        "defined in an allowed job module")
    raise AssertionError("unreachable")  # pragma: no cover


def _defined_here(fn: Any, home: Callable[[Any], bool],
                  refuse: Callable[[int, str], JobNotAllowed], i: int) -> Any:
    """``fn`` if it is a Python function defined in an allowed module, else refused.

    Its ``__module__`` and the module whose globals it runs in must both be allowed; a
    decorated function (``functools.wraps``) counts as defined where the function it
    wraps was.
    """
    if type(fn) is not types.FunctionType:
        raise refuse(i, f"it wraps a {_describe(fn)}, not a function defined in an allowed "
                        "job module")
    if not home(fn.__module__):
        raise refuse(i, f"it is {_describe(fn)}, defined in a module that is not an allowed "
                        f"job module (imported or re-exported); only functions defined in "
                        f"an allowed module run ({WHERE})")
    inner = fn
    for _ in range(100):
        if home(dict.get(inner.__globals__, "__name__")) and home(inner.__module__):
            return fn
        inner = dict.get(inner.__dict__, "__wrapped__")
        if type(inner) is not types.FunctionType:
            break
    raise refuse(i, f"{_describe(fn)} says it is defined in {_text(fn.__module__)}, but its "
                    f"code comes from module {_text(dict.get(fn.__globals__, '__name__'))}, "
                    "which is not an allowed job module")


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
