"""Swarms: named worker profiles (HiveMind's swarms of drones) for ``celery worker --swarm``.

A swarm names the queues a worker serves, its concurrency and prefetch, and the
middleware around its jobs; a sub-swarm (``parent=``) inherits all of it, overrides
what it sets and adds its own middleware after its parent's::

    bgp.swarm("billing", queues=["invoices", "payments"], concurrency=4, prefetch=1,
              middleware=[audit])
    bgp.swarm("billing-eu", parent="billing", queues=["invoices-eu"])

``celery -A proj worker --swarm billing`` starts a real Celery worker with that profile
(the option is added to Celery's own ``worker`` command through
``app.user_options["worker"]``); :class:`SwarmStep` applies it while the worker is
built, before the pool and the consumer are created. An explicit ``-c`` or
``--prefetch-multiplier`` still wins; ``-Q`` with ``--swarm`` is refused (the swarm
says which queues).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import click
from celery import bootsteps

from .exceptions import ImproperlyConfigured

__all__ = ["Swarm", "SwarmStep", "declare", "resolve", "swarms_of"]

_ATTR = "_bgp_swarms"


@dataclasses.dataclass(frozen=True)
class Swarm:
    """A declared swarm; ``None`` means "as the parent (or Celery's default)"."""

    name: str
    queues: tuple[str, ...] | None = None
    concurrency: int | None = None
    prefetch: int | None = None
    middleware: tuple[Callable[..., Any], ...] = ()
    parent: str | None = None


def swarms_of(bgp: Any) -> dict[str, Swarm]:
    """The swarms declared on ``bgp`` (name -> :class:`Swarm`)."""
    found = bgp.__dict__.get(_ATTR)
    if found is None:
        found = bgp.__dict__[_ATTR] = {}
    return found


def declare(bgp: Any, name: str, *, queues: Iterable[str] | None = None,
            concurrency: int | None = None, prefetch: int | None = None,
            middleware: Iterable[Callable[..., Any]] = (), parent: str | None = None) -> Swarm:
    """Declare swarm ``name`` on ``bgp`` (see the module docstring)."""
    if not isinstance(name, str) or not name.strip():
        raise ImproperlyConfigured(f"swarm name must be a non-empty string, not {name!r}")
    if isinstance(queues, str):
        queues = [queues]
    if queues is not None and not list(queues):
        raise ImproperlyConfigured(f"swarm {name!r}: give at least one queue")
    for label, value in (("concurrency", concurrency), ("prefetch", prefetch)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ImproperlyConfigured(f"swarm {name!r}: {label} must be an int >= 1")
    middleware = tuple(middleware)
    if not all(callable(m) for m in middleware):
        raise ImproperlyConfigured(f"swarm {name!r}: middleware must be callables "
                                   "fn(context, call_next)")
    known = swarms_of(bgp)
    if parent is not None and parent not in known:
        raise ImproperlyConfigured(f"swarm {name!r}: parent swarm {parent!r} is not declared "
                                   "(declare the parent first)")
    swarm = Swarm(name, tuple(queues) if queues is not None else None, concurrency, prefetch,
                  middleware, parent)
    known[name] = swarm
    _install(bgp.app)
    return swarm


def resolve(bgp: Any, name: str) -> Swarm:
    """The profile ``name`` runs with: its parents' settings, overridden by its own."""
    known = swarms_of(bgp)
    if name not in known:
        raise ImproperlyConfigured(
            f"unknown swarm {name!r} (declared: {', '.join(sorted(known)) or 'none'})")
    chain = [known[name]]
    while chain[-1].parent is not None:
        chain.append(known[chain[-1].parent])
    merged = Swarm(name)
    for swarm in reversed(chain):  # root first, each child overriding
        merged = dataclasses.replace(
            merged,
            queues=swarm.queues if swarm.queues is not None else merged.queues,
            concurrency=swarm.concurrency or merged.concurrency,
            prefetch=swarm.prefetch or merged.prefetch,
            middleware=merged.middleware + swarm.middleware,
            parent=known[name].parent)
    return merged


def _install(app: Any) -> None:
    options = app.user_options["worker"]
    if not any(getattr(o, "name", None) == "swarm" for o in options):
        options.add(click.Option(["--swarm"], default=None,
                                 help="celery-bgp: run this worker with a declared swarm's "
                                      "profile (queues, concurrency, prefetch, middleware)."))
    if SwarmStep not in app.steps["worker"]:
        app.steps["worker"].add(SwarmStep)


class SwarmStep(bootsteps.Step):
    """Applies ``--swarm NAME`` to the worker being built (before pool and consumer)."""

    name = "celery-bgp swarm"

    def __init__(self, worker: Any, swarm: str | None = None, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.swarm: Swarm | None = None
        if not swarm:
            return
        bgp = getattr(worker.app, "bgp", None)
        if bgp is None:
            raise ImproperlyConfigured("--swarm needs a BackgroundProcessing on the app")
        profile = self.swarm = resolve(bgp, swarm)
        if profile.queues:
            if kwargs.get("queues"):
                raise ImproperlyConfigured(
                    f"--swarm {swarm} sets the queues ({', '.join(profile.queues)}); "
                    "drop -Q or declare another swarm")
            worker.setup_queues(list(profile.queues))
        if profile.concurrency and not kwargs.get("concurrency"):
            worker.concurrency = worker.min_concurrency = profile.concurrency
        # Celery's option defaults to the setting: only another value was given by hand.
        given = kwargs.get("prefetch_multiplier")
        if profile.prefetch and given in (None, worker.app.conf.worker_prefetch_multiplier):
            worker.prefetch_multiplier = profile.prefetch
        for fn in profile.middleware:
            bgp.jobs.use(fn)
        worker.bgp_swarm = profile.name  # for inspect / logs
