"""The BackgroundProcessing behind the REST tests: eager Celery, results kept in memory."""
from __future__ import annotations

from celery import Celery

from celery_bgp import BackgroundProcessing
from celery_bgp.events.memory import MemoryEventRepository

app = Celery("rest_app", set_as_current=False)
app.conf.update(broker_url="memory://", result_backend="cache+memory://",
                task_always_eager=True, task_store_eager_result=True)
bgp = BackgroundProcessing(app, name="rest", event_repository=MemoryEventRepository(),
                           event_write="sync", max_payload_bytes=4096)
bgp.register_handlers(["tests.apps.commands", "tests.apps.rest_commands"])
