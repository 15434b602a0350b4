"""OpenTelemetry: spans linked across real brokers and processes, metrics, interplay."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from celery_bgp import BackgroundProcessing, EventStatus
from celery_bgp.events.memory import MemoryEventRepository
from celery_bgp.telemetry import instrument
from tests.apps import commands
from tests.conftest import BROKER_DB, stack_env
from tests.helpers.workers import ROOT, WorkerProcess

pytestmark = pytest.mark.integration

ECHO = "tests.apps.commands.Echo"


@pytest.fixture
def traced(redis_base):
    """An in-process app + thread worker on Redis, traced into memory."""
    app = Celery(f"otel-{uuid.uuid4().hex[:6]}", set_as_current=False)
    queue = f"otel-{uuid.uuid4().hex[:8]}"
    app.conf.update(broker_url=f"{redis_base}/{BROKER_DB}", task_default_queue=queue,
                    worker_hijack_root_logger=False)
    bgp = BackgroundProcessing(app, name=f"otel-{queue}", event_write="sync",
                               event_repository=MemoryEventRepository())
    bgp.register_handlers(commands)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    telemetry = instrument(bgp, tracer_provider=tracer_provider,
                           meter_provider=MeterProvider(metric_readers=[reader]), spans="always")
    with start_worker(app, pool="threads", perform_ping_check=False, queues=[queue],
                      loglevel="WARNING"):
        yield bgp, spans, reader, telemetry


def metric_points(reader):
    points = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = point.count
                    points[(metric.name, point.attributes.get("command"))] = value
    return points


def test_producer_and_consumer_spans_share_a_trace(traced):
    bgp, spans, reader, _ = traced
    command = commands.Echo(text="traced")
    bgp.dispatch(command, queue=bgp.app.conf.task_default_queue)
    assert bgp.events.wait_for(command.id).status is EventStatus.PROCESSED
    time.sleep(0.2)
    by_name = {s.name: s for s in spans.get_finished_spans()}
    producer, consumer = by_name[f"{ECHO} publish"], by_name[f"{ECHO} process"]
    assert producer.kind is SpanKind.PRODUCER and consumer.kind is SpanKind.CONSUMER
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.attributes["celery_bgp.command.id"] == command.id
    assert consumer.attributes["messaging.destination.name"] == bgp.app.conf.task_default_queue
    assert producer.attributes["celery_bgp.command.name"] == ECHO
    points = metric_points(reader)
    assert points[("bgp.commands.dispatched", ECHO)] == 1
    assert points[("bgp.commands.processed", ECHO)] == 1
    assert points[("bgp.command.duration", ECHO)] == 1
    assert points[("bgp.command.latency", ECHO)] == 1


def test_failures_are_recorded_on_the_consumer_span(traced):
    bgp, spans, reader, _ = traced
    command = commands.Fail(message="traced failure")
    bgp.dispatch(command)
    assert bgp.events.wait_for(command.id).status is EventStatus.ERROR
    time.sleep(0.2)
    consumer = next(s for s in spans.get_finished_spans()
                    if s.name == "tests.apps.commands.Fail process")
    assert consumer.status.status_code is StatusCode.ERROR
    assert consumer.events[0].name == "exception"
    assert consumer.events[0].attributes["exception.message"] == "traced failure"
    assert metric_points(reader)[("bgp.commands.failed", "tests.apps.commands.Fail")] == 1


def test_with_celery_instrumentation_there_are_no_double_spans(traced):
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    bgp, spans, _, telemetry = traced
    telemetry.spans = "auto"
    provider = TracerProvider()
    celery_spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(celery_spans))
    CeleryInstrumentor().instrument(tracer_provider=provider)
    try:
        command = commands.Echo(text="once")
        bgp.dispatch(command)
        bgp.events.wait_for(command.id)
        time.sleep(0.2)
    finally:
        CeleryInstrumentor().uninstrument()
    assert spans.get_finished_spans() == ()  # ours: none
    names = sorted(s.name for s in celery_spans.get_finished_spans())
    assert names == [f"apply_async/bgp.{ECHO}", f"run/bgp.{ECHO}"]
    run = next(s for s in celery_spans.get_finished_spans() if s.name.startswith("run/"))
    assert run.attributes["celery_bgp.command.id"] == command.id


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_trace_context_crosses_the_broker_to_a_worker_process(broker, redis_base, request,
                                                               tmp_path):
    url = f"{redis_base}/{BROKER_DB}" if broker == "redis" else request.getfixturevalue("amqp_url")
    env = stack_env(url, redis_base, f"otel-{uuid.uuid4().hex[:8]}")
    env["BGP_TEST_SPANS"] = str(tmp_path / "spans.jsonl")
    with WorkerProcess("tests.apps.otel_worker_app", env, [env["BGP_TEST_QUEUE"]],
                       pool="threads"):
        app = Celery(f"otel-pub-{uuid.uuid4().hex[:6]}", set_as_current=False)
        app.conf.update(broker_url=url, task_default_queue=env["BGP_TEST_QUEUE"])
        bgp = BackgroundProcessing(app, name=f"otel-pub-{uuid.uuid4().hex[:6]}",
                                   event_repository=env["BGP_TEST_EVENTS"])
        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        instrument(bgp, tracer_provider=provider)
        command = commands.Echo(text="across")
        bgp.dispatch(command)
        assert bgp.events.wait_for(command.id).status is EventStatus.PROCESSED
        time.sleep(0.3)
    [producer] = spans.get_finished_spans()
    lines = (tmp_path / "spans.jsonl").read_text().splitlines()
    worker_spans = [json.loads(line) for line in lines]
    [consumer] = [s for s in worker_spans if s["attributes"]["celery_bgp.command.id"] == command.id]
    assert consumer["trace_id"] == format(producer.context.trace_id, "032x")
    assert consumer["parent_id"] == format(producer.context.span_id, "016x")
    assert consumer["kind"] == "CONSUMER"


AZURE_MONITOR_SCRIPT = textwrap.dedent('''
    import json, os, sys, threading, gzip
    from http.server import BaseHTTPRequestHandler, HTTPServer
    received = []

    class Ingest(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            text = body.decode()
            received.append((self.path, text))
            count = len(json.loads(text)) if text.lstrip().startswith("[") else len(
                text.splitlines())
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"itemsReceived": count, "itemsAccepted": count,
                                         "errors": []}).encode())
        def do_GET(self):  # the SDK's configuration poll: nothing to change
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")
        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Ingest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    os.environ["APPLICATIONINSIGHTS_CONNECTION_STRING"] = (
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        f"IngestionEndpoint=http://127.0.0.1:{port}/")
    os.environ["APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL"] = "true"
    from celery import Celery
    from opentelemetry import trace
    from celery_bgp import BackgroundProcessing
    from celery_bgp.telemetry import use_azure_monitor
    from tests.apps import commands
    app = Celery("azmon", broker="memory://")
    app.conf.task_always_eager = True
    bgp = BackgroundProcessing(app, event_write="sync")
    bgp.register_handlers(commands)
    use_azure_monitor(bgp, enable_live_metrics=False, sampling_ratio=1.0,
                      instrumentation_options={"django": {"enabled": False},
                                               "psycopg2": {"enabled": False}})
    bgp.dispatch(commands.Echo(text="to application insights"))
    import time
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        trace.get_tracer_provider().force_flush()
        if any("process" in body for _, body in received):
            break
        time.sleep(0.5)
    names = set()
    for path, body in received:
        items = json.loads(body) if body.lstrip().startswith("[") else [
            json.loads(line) for line in body.splitlines()]
        for item in items:
            names.add(item["data"]["baseData"].get("name"))
    print(json.dumps(sorted(n for n in names if n)))
''')


def test_azure_monitor_exports_the_spans(tmp_path):
    """The real Azure Monitor exporter, pointed at a local ingestion endpoint."""
    run = subprocess.run([sys.executable, "-c", AZURE_MONITOR_SCRIPT], cwd=ROOT,
                         capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    names = json.loads(run.stdout.strip().splitlines()[-1])
    assert f"{ECHO} publish" in names
    assert f"{ECHO} process" in names
