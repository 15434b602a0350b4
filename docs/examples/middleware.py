"""Job middleware: per worker (or queue) and per job, with its own input."""
import sys

from celery import Celery

from celery_bgp import BackgroundProcessing

app = Celery("example", broker="memory://")
app.conf.task_always_eager = True
bgp = BackgroundProcessing(app, job_store="memory://", job_modules=["middleware_example"],
                           event_write="sync")
sys.modules.setdefault("middleware_example", sys.modules["__main__"])


def add(a: int, b: int) -> int:
    return a + b


@bgp.jobs.use
def timing(context, call_next):
    result = call_next(context)
    print(f"{context.job.name} -> {result}")
    return result


@bgp.jobs.register_middleware("audit")
def audit(context, call_next):
    print(f"audited by {context.input['by']}")
    return call_next(context)


job = bgp.jobs.submit("middleware_example:add", args=[2, 3], middleware=[("audit", {"by": "ops"})])
assert bgp.jobs.get(job).result == 5
