"""Jobs: enqueue, context, retries, continuations, properties and queries (in memory)."""
from celery import Celery

from celery_bgp import BackgroundProcessing
from celery_bgp.jobs import JobContext, On, P, Q, RetryPolicy

app = Celery("example", broker="memory://")
app.conf.task_always_eager = True
bgp = BackgroundProcessing(app, job_store="memory://", job_modules=["jobs_basics"],
                           event_write="sync")

attempts = {"n": 0}


def build_report(month: str, job_context: JobContext) -> dict:
    job_context.info(f"building {month}")
    job_context.set_data("progress", {"done": 1, "of": 1})
    return {"month": month, "rows": 42}


def flaky() -> str:
    attempts["n"] += 1
    if attempts["n"] < 3:
        raise ConnectionError("try again")
    return "third time lucky"


def email_report(month: str) -> str:
    return f"sent {month}"


if __name__ == "__main__":
    import sys

    sys.modules["jobs_basics"] = sys.modules["__main__"]  # a worker imports it by this name
    report = bgp.jobs.submit("jobs_basics:build_report", args=["2026-10"],
                             properties={"tenant": "acme"})
    bgp.jobs.submit("jobs_basics:email_report", args=["2026-10"], after=(report, On.SUCCEEDED))
    retried = bgp.jobs.submit("jobs_basics:flaky", retry=RetryPolicy(max_attempts=5, delays=[0]))
    print(bgp.jobs.get(report).result, [entry.message for entry in bgp.jobs.logs(report)])
    print([state.name for state in bgp.jobs.history(retried)])
    print(len(bgp.jobs.search(Q(state="Succeeded") & (P("tenant") == "acme"))), "acme job(s)")
    assert bgp.jobs.count(Q(state="Succeeded")) == 3
