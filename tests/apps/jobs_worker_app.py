"""Worker app for the job integration tests: Django job store on the test database."""
from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_settings")
os.environ.setdefault("BGP_TEST_USE_TEST_DB", "1")

import django

django.setup()

from celery import Celery  # noqa: E402

from celery_bgp import BackgroundProcessing  # noqa: E402
from celery_bgp.jobs import Deleted, Failed, Succeeded  # noqa: E402
from celery_bgp.priority import REDIS_PRIORITY_STEPS  # noqa: E402

from . import commands  # noqa: E402

# BGP_TEST_DJANGO_FIXUP=0: without Celery's Django fixup, which closes the database
# connections a pool process inherits; the worker's main process must not leave any open.
app = Celery("bgp_jobs_tests",
             fixups=[] if os.environ.get("BGP_TEST_DJANGO_FIXUP") == "0" else None)
app.conf.update(
    broker_url=os.environ["BGP_TEST_BROKER"],
    result_backend=os.environ.get("BGP_TEST_BACKEND"),
    task_default_queue=os.environ.get("BGP_TEST_QUEUE", "celery"),
    task_queue_max_priority=10,
    broker_transport_options={"priority_steps": REDIS_PRIORITY_STEPS,
                              "queue_order_strategy": "priority"},
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
bgp = BackgroundProcessing(
    app,
    event_repository=os.environ.get("BGP_TEST_EVENTS", "memory://"),
    job_store="django://",
    job_modules=["tests.apps"],
    job_retry={"max_attempts": 1},
    job_lock_timeout=float(os.environ.get("BGP_TEST_LOCK_TIMEOUT", "60")),
    job_monitor_interval=float(os.environ.get("BGP_TEST_MONITOR_INTERVAL", "30")),
    job_stalled_after=float(os.environ.get("BGP_TEST_STALLED_AFTER", "300")),
)
bgp.register_handlers(commands)


# BGP_TEST_SQL_COUNTER=<redis url>#<hash>: count, per job id, the statements this worker
# runs that name it, seen as database instrumentation sees them: an execute wrapper that
# a ``connection_created`` receiver adds to every connection Django opens here.
if os.environ.get("BGP_TEST_SQL_COUNTER"):
    import re as _re

    import redis as _redis
    from django.db.backends.signals import connection_created
    from psycopg import ClientCursor as _ClientCursor

    _url, _, _key = os.environ["BGP_TEST_SQL_COUNTER"].partition("#")
    _counts = _redis.Redis.from_url(_url)

    def _ids(params):
        for value in params or ():
            if isinstance(value, (list, tuple)):
                yield from _ids(value)
            elif isinstance(value, str) and _re.fullmatch(r"[\w-]{22}", value):
                yield value  # a job id (celery_bgp.commands' ids)

    def _count(execute, sql, params, many, context):
        for job_id in set(_ids(params)):
            _counts.hincrby(_key, job_id, 1)
            binds = "client" if isinstance(context["cursor"].cursor, _ClientCursor) \
                else "server"
            _counts.hset(_key, f"binding:{binds}", 1)  # where the parameters were bound
        return execute(sql, params, many, context)

    def _instrument(sender, connection, **_):
        if _count not in connection.execute_wrappers:
            connection.execute_wrappers.append(_count)
        binding = connection.settings_dict.get("OPTIONS", {}).get("server_side_binding")
        _counts.hset(_key, "server_side_binding", str(bool(binding)))

    connection_created.connect(_instrument, weak=False)


# BGP_TEST_ELECTIONS=0: the election handlers below read nothing (they read properties
# through Django's connection, which Celery's Django fixup closes after every task).
ELECTIONS = os.environ.get("BGP_TEST_ELECTIONS", "1") != "0"


@bgp.jobs.election_handler(priority=10)
def blocked_tenant(election):
    """The seed's tenant example: a blocked tenant's jobs never execute."""
    if election.candidate.name != "Executing" or not ELECTIONS:
        return None
    if bgp.jobs.store.properties(election.job.id).get("tenant") == "blocked":
        return Deleted(reason="tenant is blocked")
    return None


@bgp.jobs.election_handler(priority=20)
def odd_vetoes(election):
    """Replacements for Executing that a handler may try: legal, illegal, or a crash."""
    if election.candidate.name != "Executing" or not ELECTIONS:
        return None
    veto = bgp.jobs.store.properties(election.job.id).get("veto")
    if veto == "fail":
        return Failed(exception_type="tests.Vetoed", message="vetoed by the test")
    if veto == "succeed":
        return Succeeded(reason="cannot follow Enqueued")
    if veto == "raise":
        raise RuntimeError("the veto handler crashed")
    return None
