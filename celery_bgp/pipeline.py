"""Decorator chains around dispatching and processing (the seed's decorators).

A decorator is any callable ``decorator(context, call_next)``. It may act before and
after ``call_next(context)``, change ``context`` (options, headers, the command),
replace the result, or skip the rest by not calling ``call_next``. The first
registered decorator is the outermost: it runs first on the way in and last on the
way out, as Django middleware does.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Task

    from .handlers import HandlerSpec
    from .processing import BackgroundProcessing

__all__ = ["DispatchContext", "Pipeline", "ProcessContext"]


@dataclasses.dataclass
class DispatchContext:
    """What a dispatcher decorator sees: the command and the Celery publish options.

    ``options`` is passed to ``apply_async`` (``queue``, ``priority``, ``countdown``,
    ``headers`` ...); change it in place. The chain returns the ``AsyncResult``.
    """

    command: Any
    options: dict[str, Any]
    bgp: BackgroundProcessing

    @property
    def headers(self) -> dict[str, Any]:
        """Message headers (created on first use); read back as ``context.headers``."""
        return self.options.setdefault("headers", {})


@dataclasses.dataclass
class ProcessContext:
    """What a processor decorator sees: the command, its handler and the running task."""

    command: Any
    handler: HandlerSpec
    task: Task | None
    bgp: BackgroundProcessing

    @property
    def request(self) -> Any:
        """The Celery request (id, retries, hostname, headers); None outside a task."""
        return self.task.request if self.task is not None else None

    @property
    def headers(self) -> dict[str, Any]:
        """Custom message headers set at dispatch (e.g. by a dispatcher decorator)."""
        request = self.request
        return dict(getattr(request, "headers", None) or {}) if request is not None else {}

Decorator = Callable[[Any, Callable[[Any], Any]], Any]


class Pipeline:
    """An ordered list of decorators composed around a final step."""

    def __init__(self, final: Callable[[Any], Any]) -> None:
        self._final = final
        self._decorators: list[Decorator] = []
        self._composed: Callable[[Any], Any] = final

    def add(self, decorator: Decorator, first: bool = False) -> Decorator:
        """Append ``decorator`` (innermost so far), or make it outermost with ``first``."""
        if not callable(decorator):
            raise TypeError(f"a decorator must be callable, got {decorator!r}")
        if decorator not in self._decorators:
            if first:
                self._decorators.insert(0, decorator)
            else:
                self._decorators.append(decorator)
            self._composed = self._compose()
        return decorator

    def remove(self, decorator: Decorator) -> None:
        """Take ``decorator`` out of the chain."""
        self._decorators.remove(decorator)
        self._composed = self._compose()

    @property
    def final(self) -> Callable[[Any], Any]:
        """The innermost step (send, or run the handler); replaceable, e.g. by test fixtures."""
        return self._final

    @final.setter
    def final(self, step: Callable[[Any], Any]) -> None:
        self._final = step
        self._composed = self._compose()

    @property
    def decorators(self) -> tuple[Decorator, ...]:
        """The decorators, outermost first."""
        return tuple(self._decorators)

    def __call__(self, context: Any) -> Any:
        return self._composed(context)

    def _compose(self) -> Callable[[Any], Any]:
        call = self._final
        for decorator in reversed(self._decorators):
            call = _link(decorator, call)
        return call


def _link(decorator: Decorator, call_next: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def step(context: Any) -> Any:
        return decorator(context, call_next)

    return step
