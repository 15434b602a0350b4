"""The state machine: a custom state, a vetoing election handler, an event handler."""
import dataclasses
import sys

from celery import Celery

from celery_bgp import BackgroundProcessing
from celery_bgp.jobs import Deleted, State

app = Celery("example", broker="memory://")
app.conf.task_always_eager = True
bgp = BackgroundProcessing(app, job_store="memory://", job_modules=["jobs_states"],
                           event_write="sync")
sys.modules.setdefault("jobs_states", sys.modules["__main__"])


def work() -> str:
    return "done"


@dataclasses.dataclass(kw_only=True)
class Paused(State):
    name = "Paused"


bgp.jobs.states.register(Paused, from_states=["Idle"], to_states=["Enqueued"])


@bgp.jobs.election_handler(priority=10)
def blocked_tenant(election):
    tenant = bgp.jobs.store.properties(election.job.id).get("tenant")
    if election.candidate.name == "Executing" and tenant == "blocked":
        return Deleted(reason="tenant is blocked")
    return None


@bgp.jobs.on_state(states=["Succeeded", "Deleted"])
def announce(applied):
    print(f"{applied.job.id}: {applied.previous} -> {applied.state.name}")


blocked = bgp.jobs.submit("jobs_states:work", properties={"tenant": "blocked"})
paused = bgp.jobs.submit("jobs_states:work", idle=True)
bgp.jobs.change_state(paused, Paused(reason="waiting for Monday"))
bgp.jobs.requeue(paused)
assert bgp.jobs.get(blocked).state == "Deleted"
assert bgp.jobs.get(paused).state == "Succeeded"
