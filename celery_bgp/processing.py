"""``BackgroundProcessing``: installs commands, handlers and events on a Celery app.

It is the dispatcher and the processor of the seed in one object: ``dispatch`` and
``signature`` hand a command to Celery (through the dispatcher decorators), and the
command's task runs its handler (through the processor decorators). Celery does
the rest: brokers, workers, retries, canvas, beat, result backends, monitoring.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from celery import Celery, signals
from celery.canvas import Signature
from celery.exceptions import Reject
from celery.result import AsyncResult

from . import signals as bgp_signals
from .commands import (
    check_command,
    check_command_type,
    command_name,
    decode_command,
    encode_command,
    prepare,
    utcnow,
)
from .daemons.support import DaemonsSupport
from .events import CommandEvent, ErrorInfo, EventRecorder, Events, EventStatus
from .events.repository import import_repository, resolve_repository
from .exceptions import ImproperlyConfigured, InvalidCommand
from .handlers import (
    HandlerFactory,
    HandlerRegistry,
    HandlerSpec,
    handlers_in,
    iter_modules,
    spec_for,
)
from .jobs.support import JobsSupport
from .pipeline import DispatchContext, Pipeline, ProcessContext
from .priority import broker_priority
from .settings import DEFAULTS, Settings, check_options, parse_linger, resolve_settings
from .tasks import CommandTask, make_task_run
from .worker import install as install_message_guard

__all__ = ["BackgroundProcessing"]

logger = logging.getLogger("celery_bgp")


def _default_factory(handler_class: type) -> Any:
    return handler_class()


class BackgroundProcessing(JobsSupport, DaemonsSupport):
    """Typed commands (and, with a job store, tracked jobs) on a Celery app.

    Arguments:
        app: the project's Celery app.
        name: identifies this instance in messages; give each instance in one
            process its own (environments).
        task_prefix: first part of every command task name (``bgp.<command name>``).
        handler_factory: builds a handler class per command (default: ``cls()``);
            plug a dependency-injection container in here.
        **options: see :data:`celery_bgp.settings.DEFAULTS`; each also reads from the
            Celery setting ``bgp_<option>`` (``CELERY_BGP_<OPTION>`` under Django).
    """

    def __init__(
        self,
        app: Celery,
        *,
        name: str = "default",
        task_prefix: str = "bgp",
        handler_factory: HandlerFactory | None = None,
        **options: Any,
    ) -> None:
        check_options(options)
        self.app = app
        self.name = name
        self.task_prefix = task_prefix
        self.handler_factory: HandlerFactory = handler_factory or _default_factory
        self.registry = HandlerRegistry()
        self._options = options
        self._settings: Settings | None = None
        self._tasks: dict[type, CommandTask] = {}
        self._names: dict[str, str] = {}  # task name -> command name
        self._lock = threading.RLock()
        self._pending_discovery: list[tuple[Callable[[], Iterable[str]], str]] = []
        self._modules_loaded = False
        self.dispatcher = Pipeline(self._send)
        self.processor = Pipeline(self._invoke)
        self.telemetry = None  # set by celery_bgp.telemetry.instrument()
        self.recorder = EventRecorder(self._build_repository, mode=self._write_mode(),
                                      final_timeout=float(self.setting("event_final_timeout")),
                                      linger=parse_linger(self.setting("event_linger")))
        self.events = Events(self.recorder)
        bgp_signals.register_instance(self)
        signals.import_modules.connect(self._on_import_modules, sender=app, weak=False)
        signals.worker_init.connect(self._before_fork, weak=False)
        app.bgp = self  # type: ignore[attr-defined]
        install_message_guard(app)  # a bad message never stops a worker (celery_bgp.worker)
        self.job_task = self._install_jobs()

    def __repr__(self) -> str:
        return f"<BackgroundProcessing {self.name!r} on {self.app.main or 'celery'}>"

    # -- settings ---------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """Resolved settings (read from the Celery config on first use)."""
        if self._settings is None:
            self._settings = resolve_settings(self._options, self.app.conf)
        return self._settings

    def _write_mode(self) -> str:
        return str(self._options.get("event_write") or self.app.conf.get("bgp_event_write")
                   or "background")

    def _build_repository(self):
        s = self.settings
        return resolve_repository(s.event_repository, expiry=s.event_expiry,
                                  environment=self.name)

    # -- handlers -----------------------------------------------------------------------

    def handler(self, command_type: type, **task_options: Any) -> Callable[[Callable], Callable]:
        """Decorator: register a function (sync or async) as the handler of ``command_type``."""
        check_command_type(command_type)

        def register(fn: Callable) -> Callable:
            from .handlers import handler as mark

            marked = mark(command_type, **task_options)(fn)
            self.register_handler(marked)
            return marked

        return register

    def register_handler(self, handler: Any, command_type: type | None = None,
                         **task_options: Any) -> CommandTask:
        """Register a :class:`CommandHandler` subclass or a handler function.

        Registering the same handler twice is harmless; a second, different handler
        for one command type raises :class:`HandlerAlreadyRegistered`. Returns the
        Celery task of the command type.
        """
        return self._add(spec_for(handler, command_type, **task_options))

    def register_command(self, *command_types: type) -> None:
        """Make command types known by name here without handling them.

        A web process that only dispatches (the REST API) needs the types to validate
        bodies; the handlers live with the workers.
        """
        for command_type in command_types:
            self.registry.add_type(command_type)

    def register_handlers(self, modules: Iterable[ModuleType | str] | ModuleType | str
                          ) -> list[HandlerSpec]:
        """Register every handler defined in the given module(s) (objects or dotted names)."""
        found = []
        for module in iter_modules(modules):
            for spec in handlers_in(module):
                self._add(spec)
                found.append(spec)
        return found

    def autodiscover_handlers(
        self,
        packages: Iterable[str] | Callable[[], Iterable[str]] | None = None,
        related_name: str = "handlers",
        force: bool = False,
    ) -> None:
        """Import ``<package>.<related_name>`` for each package and register its handlers.

        Like Celery's ``autodiscover_tasks``: lazy by default (done when the worker
        imports its modules, or when a command needs its handler), ``force=True``
        does it now. ``packages`` may be a callable (``lambda: settings.INSTALLED_APPS``);
        by default, Django's installed apps when Django is configured.
        """
        getter = packages if callable(packages) else (lambda: list(packages or ()))
        if packages is None:
            getter = _django_apps
        with self._lock:
            self._pending_discovery.append((getter, related_name))
        if force:
            self.discover()

    def discover(self) -> None:
        """Run pending autodiscovery and ``bgp_handler_modules`` now (idempotent)."""
        with self._lock:
            pending, self._pending_discovery = self._pending_discovery, []
            modules = [] if self._modules_loaded else list(self.settings.handler_modules)
            self._modules_loaded = True
        self.register_handlers(modules)
        for getter, related_name in pending:
            for package in getter():
                module = _import_related(package, related_name)
                if module is not None:
                    self.register_handlers(module)

    def _on_import_modules(self, **_: Any) -> None:
        self.discover()

    def _before_fork(self, sender: Any = None, **_: Any) -> None:
        """In the worker's main process, before the pool forks: build what each child
        would otherwise build on its first command (pydantic's validators and their
        imports, the event repository's module), so the children share it."""
        if getattr(sender, "app", None) is not self.app:
            return
        self.discover()
        for spec in self.registry:
            with contextlib.suppress(Exception):  # the first command reports it, as before
                prepare(spec.command_type)
        with contextlib.suppress(Exception):
            import_repository(self.settings.event_repository)

    def _add(self, spec: HandlerSpec) -> CommandTask:
        with self._lock:
            self.registry.add(spec)
            task = self._tasks.get(spec.command_type)
            if task is None:
                task = self._tasks[spec.command_type] = self._make_task(spec)
            return task

    def _make_task(self, spec: HandlerSpec) -> CommandTask:
        cname = spec.name
        tname = self.task_name(spec.command_type)
        self._names[tname] = cname
        task = self.app.task(
            make_task_run(self, spec.command_type, tname),
            name=tname,
            base=CommandTask,
            bind=True,
            shared=False,
            lazy=False,
            command_type=spec.command_type,
            command_name=cname,
            bgp=self,
            **spec.task_options,
        )
        return task

    def task_name(self, command_type: type) -> str:
        """The Celery task name of a command type: ``<prefix>.<command name>``."""
        return f"{self.task_prefix}.{command_name(command_type)}"

    def command_name_for_task(self, task_name: str | None) -> str | None:
        """The command name behind a task name (None for non-command tasks)."""
        if not task_name:
            return None
        known = self._names.get(task_name)
        if known:
            return known
        prefix = f"{self.task_prefix}."
        return task_name[len(prefix):] if task_name.startswith(prefix) else None

    def task_for(self, command_type: type) -> CommandTask | None:
        """The registered task of ``command_type`` in this process, if any."""
        task = self._tasks.get(command_type)
        if task is None and self._pending_discovery:
            self.discover()
            task = self._tasks.get(command_type)
        return task

    # -- dispatching --------------------------------------------------------------------

    def dispatch(self, command: Any, **options: Any) -> AsyncResult:
        """Send ``command`` to its handler through Celery; returns its ``AsyncResult``.

        ``options`` go to ``apply_async``: ``queue``, ``priority`` (a :class:`Priority`
        or a broker-native int), ``countdown``/``eta``, ``expires``, ``retry``,
        ``retry_policy``, ``headers``, ``link``/``link_error`` ... The task id is the
        command id.

        Fails here, before anything is sent: :class:`NotACommand` (a ``TypeError``) for
        the class instead of an instance or an object that is not a command;
        :class:`InvalidCommand` for field values that do not fit their types (the
        validation the worker does) and :class:`PayloadTooLarge` for an oversize one.
        """
        check_command(command, "dispatch")
        context = DispatchContext(command, dict(options), self)
        context.options["_bgp_send"] = True
        return self.dispatcher(context)

    def signature(self, command: Any, **options: Any) -> Signature:
        """A Celery :class:`~celery.canvas.Signature` for ``command`` (immutable).

        Compose with ``chain``/``group``/``chord``/``link``/``link_error``; the
        dispatcher decorators run now, the send happens when the canvas is applied.
        The command is checked now, as by :meth:`dispatch`.
        """
        check_command(command, "signature")
        context = DispatchContext(command, dict(options), self)
        context.options["_bgp_send"] = False
        return self.dispatcher(context)

    def _send(self, context: DispatchContext) -> Any:
        command = context.command
        payload = encode_command(command, self.settings.max_payload_bytes, validate=True)
        send = context.options.pop("_bgp_send", True)
        options = self._publish_options(command, context.options)
        task = self.task_for(type(command))
        name = task.name if task is not None else self.task_name(type(command))
        if not send:
            return self.app.signature(name, args=(payload,), immutable=True, **options)
        if self.app.conf.task_always_eager:
            if task is None:
                raise ImproperlyConfigured(
                    f"task_always_eager is set but no handler for {command_name(type(command))} "
                    "is registered in this process"
                )
            self.record(CommandEvent(command.id, EventStatus.DISPATCHED, utcnow(),
                                     command_name=command_name(type(command)), command=payload))
            return task.apply_async((payload,), **options)
        if task is not None:
            return task.apply_async((payload,), **options)
        return self.app.send_task(name, args=(payload,), **options)

    def _publish_options(self, command: Any, options: dict[str, Any]) -> dict[str, Any]:
        task_id = options.pop("task_id", None)
        if task_id not in (None, command.id):
            raise ImproperlyConfigured(
                "the task id of a command is its id: set command.id instead of task_id"
            )
        options["task_id"] = command.id
        options["serializer"] = "json"
        # What logs, Flower and `celery inspect` show; also spares Celery a saferepr pass.
        options.setdefault("argsrepr", f"({type(command).__name__}(id={command.id!r}),)")
        options.setdefault("kwargsrepr", "{}")
        headers = dict(options.get("headers") or {})
        headers[bgp_signals.INSTANCE] = self.name
        options["headers"] = headers
        if "priority" in options:
            options["priority"] = broker_priority(options["priority"], self.transport)
        return options

    @functools.cached_property
    def transport(self) -> str:
        """The broker's transport name (URL scheme), for priority mapping."""
        conf = self.app.conf
        if conf.broker_transport:
            return str(conf.broker_transport)
        url = conf.broker_write_url or conf.broker_url or "amqp://"
        return str(url).split("://", 1)[0].split(";", 1)[0]

    def cancel(self, command_id: str, terminate: bool = False, signal: str = "SIGTERM") -> None:
        """Revoke a command (CANCELLED event when a worker sees it)."""
        self.app.control.revoke(command_id, terminate=terminate, signal=signal)

    # -- processing ---------------------------------------------------------------------

    def run_task(self, task: CommandTask, payload: Any) -> Any:
        """Body of every command task: decode, then run the processor chain.

        The payload's ``id`` must be the task id (see :func:`decode_command`): the
        events of the task are recorded under it, so the handler must see that command.
        """
        try:
            command = decode_command(task.command_type, payload,
                                     task_id=getattr(task.request, "id", None))
        except InvalidCommand as exc:
            self.reject_invalid(task, exc)
        spec = self.registry.get(task.command_type)
        return self.processor(ProcessContext(command, spec, task, self))

    def process(self, command: Any) -> Any:
        """Run ``command``'s handler here and now, through the processor decorators.

        For embedding (Azure Functions, tests). No Celery task is involved, so the
        events are recorded directly.
        """
        spec = self.registry.get(type(command))
        name = spec.name
        payload = encode_command(command)
        self.record(CommandEvent(command.id, EventStatus.PROCESSING, utcnow(),
                                 command_name=name, command=payload))
        try:
            result = self.processor(ProcessContext(command, spec, None, self))
        except Exception as exc:
            self.record(CommandEvent(command.id, EventStatus.ERROR, utcnow(), command_name=name,
                                     error=ErrorInfo.from_exception(exc)))
            raise
        self.record(CommandEvent(command.id, EventStatus.PROCESSED, utcnow(), command_name=name))
        return result

    def _invoke(self, context: ProcessContext) -> Any:
        return context.handler.invoke(context.command, self.handler_factory)

    def reject_invalid(self, task: CommandTask, exc: InvalidCommand) -> None:
        """Record ERROR for an undecodable command and reject its message (no requeue)."""
        self.record_invalid(task.request.id, task, exc,
                            durable=bgp_signals.acks_late(task))  # written before the reject
        raise Reject(str(exc), requeue=False)

    def record_invalid(self, command_id: str | None, task: CommandTask,
                       exc: InvalidCommand, durable: bool = False) -> None:
        """Record the ERROR event of a message that never reached its handler."""
        if not command_id:
            return
        self.record(CommandEvent(
            command_id=command_id,
            status=EventStatus.ERROR,
            timestamp=bgp_signals.worker_timestamp(getattr(task, "request", None)),
            command_name=getattr(task, "command_name", None),
            error=ErrorInfo(type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                            message=str(exc)),
            reason="rejected",
        ), durable=durable)

    # -- events -------------------------------------------------------------------------

    def record(self, event: CommandEvent, durable: bool = False, soon: bool = False) -> None:
        """Hand an event to the recorder(s) (never raises).

        ``durable``: return once it is written (a final event before its message is
        acknowledged), unless the store is failing or slower than the recorder's
        ``final_timeout``; the writer sends it at once, with what is queued before it.
        ``soon``: send it at once without waiting for it (a chain step's final event:
        its next step may already run in another process).
        """
        ticket = self.recorder.record(event, urgent=durable, soon=soon)
        jobs = self._job_recorder
        jobs_ticket = jobs.record(event, urgent=durable, soon=soon) if jobs is not None else 0
        if durable:
            self.recorder.wait_written(ticket)
            if jobs is not None:
                jobs.wait_written(jobs_ticket)

    def setting(self, name: str) -> Any:
        """One raw setting, read now (without resolving and caching all of them)."""
        if name in self._options:
            return self._options[name]
        return self.app.conf.get(f"bgp_{name}", DEFAULTS[name])

    def dispatcher_decorator(self, decorator: Callable) -> Callable:
        """Add a dispatcher decorator ``fn(context, call_next)`` (outermost first)."""
        return self.dispatcher.add(decorator)

    def processor_decorator(self, decorator: Callable) -> Callable:
        """Add a processor decorator ``fn(context, call_next)`` (outermost first)."""
        return self.processor.add(decorator)


def _django_apps() -> list[str]:
    try:
        from django.apps import apps
    except ImportError:
        return []
    if not apps.ready:
        return []
    return [config.name for config in apps.get_app_configs()]


def _import_related(package: str, related_name: str) -> ModuleType | None:
    import importlib
    import importlib.util

    module_name = f"{package}.{related_name}"
    try:
        if importlib.util.find_spec(package) is None:
            return None
        if importlib.util.find_spec(module_name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(module_name)
