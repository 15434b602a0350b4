"""Middleware around job execution, HiveMind/ASP.NET style: ``fn(context, call_next)``.

Worker middleware applies to every job (or to the jobs of some queues); per-job
middleware is attached at enqueue by *name* with its own JSON input, and resolved
against this registry at execution (a stored name never imports anything). Worker
middleware is outermost, then per-job middleware in the order attached. Each may
run code before and after ``call_next(context)``, replace the result, or skip the
job by not calling it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..exceptions import ImproperlyConfigured

__all__ = ["Middleware", "MiddlewareRegistry", "UnknownMiddleware"]

Middleware = Callable[[Any, Callable[[Any], Any]], Any]


class UnknownMiddleware(ImproperlyConfigured):
    """A job names middleware that this worker has not registered."""


class MiddlewareRegistry:
    """Named per-job middleware and worker/queue middleware."""

    def __init__(self) -> None:
        self._named: dict[str, Middleware] = {}
        self._worker: list[tuple[Middleware, frozenset[str] | None]] = []

    def register(self, name: str, fn: Middleware) -> Middleware:
        """Make ``fn`` attachable to jobs as ``middleware=[(name, input)]``."""
        if not callable(fn):
            raise ImproperlyConfigured(f"middleware {name!r} must be callable")
        self._named[name] = fn
        return fn

    def use(self, fn: Middleware, queues: Iterable[str] | None = None) -> Middleware:
        """Run ``fn`` around every job (or only jobs of ``queues``) on this worker."""
        if not callable(fn):
            raise ImproperlyConfigured("middleware must be callable")
        self._worker.append((fn, frozenset(queues) if queues is not None else None))
        return fn

    def check(self, attached: Iterable[dict[str, Any]]) -> None:
        """Raise :class:`UnknownMiddleware` for names not registered here."""
        for item in attached:
            if item["name"] not in self._named:
                raise UnknownMiddleware(
                    f"job middleware {item['name']!r} is not registered on this worker "
                    f"(known: {', '.join(sorted(self._named)) or 'none'})"
                )

    def build(self, queue: str, attached: Iterable[dict[str, Any]],
              final: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Compose the chain for one job around ``final``."""
        attached = list(attached)
        self.check(attached)
        steps: list[tuple[Middleware, Any, bool]] = [
            (fn, None, False) for fn, queues in self._worker if queues is None or queue in queues
        ]
        steps += [(self._named[item["name"]], item.get("input"), True) for item in attached]
        call = final
        for fn, value, per_job in reversed(steps):
            call = _link(fn, value, per_job, call)
        return call


def _link(fn: Middleware, value: Any, per_job: bool, call_next: Callable[[Any], Any]):
    def step(context: Any) -> Any:
        if not per_job:
            return fn(context, call_next)
        outer = context.input
        context.input = value

        def proceed(ctx: Any) -> Any:
            ctx.input = outer
            try:
                return call_next(ctx)
            finally:
                ctx.input = value

        try:
            return fn(context, proceed)
        finally:
            context.input = outer

    return step
