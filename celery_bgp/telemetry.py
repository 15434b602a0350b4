"""OpenTelemetry for commands: the seed's Application Insights telemetry, done with OTel.

``instrument(bgp)`` adds a dispatcher and a processor decorator:

- a PRODUCER span around each dispatch, whose W3C trace context travels in the
  message headers (any broker: Redis, RabbitMQ, Azure Storage Queue), and a
  CONSUMER span around each processing, child of that context;
- metrics: ``bgp.commands.dispatched`` / ``processed`` / ``failed`` counters, and
  ``bgp.command.duration`` (processing time) and ``bgp.command.latency`` (now minus
  the command's timestamp, the seed's latency) histograms, in seconds.

With ``opentelemetry-instrumentation-celery`` active, Celery already makes a
publish span and a run span per task (a command is a task), and carries the
context itself. Then (``spans="auto"``) no span of ours is created: the command
attributes go onto its run span, and the metrics are recorded as usual. No
double spans either way.

``use_azure_monitor(bgp)`` sends all of it to Application Insights through the
``azure-monitor-opentelemetry`` distro (connection string from the argument or
``APPLICATIONINSIGHTS_CONNECTION_STRING``).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .commands import command_name, utcnow
from .extras import require

if TYPE_CHECKING:
    from .processing import BackgroundProcessing

__all__ = ["Telemetry", "instrument", "use_azure_monitor"]

SCOPE = "celery_bgp"


class Telemetry:
    """The decorators and instruments for one BackgroundProcessing."""

    def __init__(self, bgp: BackgroundProcessing, tracer_provider: Any = None,
                 meter_provider: Any = None, spans: str = "auto") -> None:
        trace = require("opentelemetry.trace", "otel", "Telemetry")
        metrics = require("opentelemetry.metrics", "otel", "Telemetry")
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind, Status, StatusCode

        if spans not in ("auto", "always", "never"):
            raise ValueError("spans is 'auto', 'always' or 'never'")
        self.bgp = bgp
        self.spans = spans
        self._trace, self._propagate = trace, propagate
        self._kind, self._status, self._code = SpanKind, Status, StatusCode
        from . import __version__

        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self.dispatched = meter.create_counter(
            "bgp.commands.dispatched", unit="{command}", description="Commands sent")
        self.processed = meter.create_counter(
            "bgp.commands.processed", unit="{command}", description="Commands handled")
        self.failed = meter.create_counter(
            "bgp.commands.failed", unit="{command}", description="Commands whose handler raised")
        self.duration = meter.create_histogram(
            "bgp.command.duration", unit="s", description="Time spent in the handler")
        self.latency = meter.create_histogram(
            "bgp.command.latency", unit="s",
            description="From the command's timestamp to the end of its processing")
        self.dispatch_duration = meter.create_histogram(
            "bgp.dispatch.duration", unit="s", description="Time to hand a command to Celery")

    def own_spans(self) -> bool:
        """False when Celery's own OTel instrumentation already traces tasks."""
        if self.spans != "auto":
            return self.spans == "always"
        return not celery_instrumented()

    # -- decorators ---------------------------------------------------------------------

    def dispatcher(self, context: Any, call_next: Any) -> Any:
        name = command_name(type(context.command))
        sending = context.options.get("_bgp_send", True)
        labels = {"command": name}
        started = time.perf_counter()
        try:
            if not self.own_spans():
                return call_next(context)
            attributes = {
                "messaging.operation.type": "publish" if sending else "create",
                "messaging.message.id": context.command.id,
                "celery_bgp.command.name": name,
                "celery_bgp.command.id": context.command.id,
            }
            if context.options.get("queue"):
                attributes["messaging.destination.name"] = str(context.options["queue"])
            if context.options.get("priority") is not None:
                attributes["celery_bgp.priority"] = str(context.options["priority"])
            with self.tracer.start_as_current_span(
                f"{name} publish", kind=self._kind.PRODUCER, attributes=attributes,
            ):
                self._propagate.inject(context.headers)
                return call_next(context)
        finally:
            if sending:
                self.dispatched.add(1, labels)
                self.dispatch_duration.record(time.perf_counter() - started, labels)

    def processor(self, context: Any, call_next: Any) -> Any:
        name = command_name(type(context.command))
        request = context.request
        attributes: dict[str, Any] = {
            "messaging.operation.type": "process",
            "messaging.message.id": context.command.id,
            "celery_bgp.command.name": name,
            "celery_bgp.command.id": context.command.id,
            "celery_bgp.retries": int(getattr(request, "retries", 0) or 0),
        }
        queue = ((getattr(request, "delivery_info", None) or {}).get("routing_key")
                 if request is not None else None)
        if queue:
            attributes["messaging.destination.name"] = str(queue)
        labels = {"command": name}
        started = time.perf_counter()
        if self.own_spans():
            parent = self._propagate.extract(context.headers)
            with self.tracer.start_as_current_span(
                f"{name} process", context=parent, kind=self._kind.CONSUMER,
                attributes=attributes, record_exception=False, set_status_on_exception=False,
            ) as span:
                return self._measure(span, context, call_next, labels, started)
        span = self._trace.get_current_span()
        span.set_attributes(attributes)
        return self._measure(span, context, call_next, labels, started)

    def _measure(self, span: Any, context: Any, call_next: Any, labels: dict[str, str],
                 started: float) -> Any:
        try:
            result = call_next(context)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(self._status(self._code.ERROR, f"{type(exc).__name__}: {exc}"))
            self.failed.add(1, labels)
            raise
        else:
            self.processed.add(1, labels)
            return result
        finally:
            self.duration.record(time.perf_counter() - started, labels)
            stamp = getattr(context.command, "timestamp", None)
            if stamp is not None:
                self.latency.record(max(0.0, (utcnow() - stamp).total_seconds()), labels)


def celery_instrumented() -> bool:
    """True if ``opentelemetry-instrumentation-celery`` is installed and active."""
    try:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
    except ImportError:
        return False
    return bool(CeleryInstrumentor().is_instrumented_by_opentelemetry)


def instrument(bgp: BackgroundProcessing, *, tracer_provider: Any = None,
               meter_provider: Any = None, spans: str = "auto") -> Telemetry:
    """Trace and measure ``bgp``'s commands (idempotent per instance).

    Providers default to OpenTelemetry's global ones. The dispatcher decorator is
    outermost and the processor decorator outermost too, so their spans cover the
    other decorators.
    """
    existing = getattr(bgp, "telemetry", None)
    if existing is not None:
        return existing
    telemetry = Telemetry(bgp, tracer_provider, meter_provider, spans)
    bgp.dispatcher.add(telemetry.dispatcher, first=True)
    bgp.processor.add(telemetry.processor, first=True)
    bgp.telemetry = telemetry  # type: ignore[attr-defined]
    return telemetry


def use_azure_monitor(bgp: BackgroundProcessing, connection_string: str | None = None,
                      **options: Any) -> Telemetry:
    """Export traces and metrics to Application Insights, then :func:`instrument`.

    ``connection_string`` defaults to ``APPLICATIONINSIGHTS_CONNECTION_STRING``;
    ``options`` go to ``azure.monitor.opentelemetry.configure_azure_monitor``. Note the
    distro samples at a rate limit by default; pass ``sampling_ratio=1.0`` to keep every
    command's spans.
    """
    distro = require("azure.monitor.opentelemetry", "azure-monitor",
                     "Azure Monitor telemetry")
    if connection_string is not None:
        options["connection_string"] = connection_string
    distro.configure_azure_monitor(**options)
    return instrument(bgp)
