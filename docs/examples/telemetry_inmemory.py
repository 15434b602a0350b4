"""OpenTelemetry spans and metrics of commands, captured in memory."""
from dataclasses import dataclass

from celery import Celery
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from celery_bgp import BackgroundCommand, BackgroundProcessing
from celery_bgp.telemetry import instrument

app = Celery("example", broker="memory://")
app.conf.task_always_eager = True
bgp = BackgroundProcessing(app, event_write="sync")


@dataclass
class Ping(BackgroundCommand):
    n: int


bgp.register_handler(lambda command: command.n, command_type=Ping)
spans = InMemorySpanExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
reader = InMemoryMetricReader()
instrument(bgp, tracer_provider=tracer_provider,
           meter_provider=MeterProvider(metric_readers=[reader]))
bgp.dispatch(Ping(n=1))
print(sorted(span.name for span in spans.get_finished_spans()))
