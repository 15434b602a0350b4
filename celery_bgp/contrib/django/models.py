"""The job store's tables: jobs, their state history, properties, data, logs, links.

Indexes follow the queries that must stay fast at millions of rows (the admin list
and dashboard, the engine's query API, retention and the lock monitor):

- ``created`` / ``modified`` alone: the default newest-first list, date ranges.
- ``(state, created)``: "failed jobs, newest first", counts per state.
- ``(queue, state, created)``: queue filters, per-queue counts per state and the
  oldest waiting job per queue, answered from the index.
- ``(priority, created)``, ``(name, created)``: the admin's other filters.
- ``(environment, state, modified)``: retention (purge old finished jobs per
  environment) and environment-scoped state queries.
- no index holds a lock column, so a heartbeat (which changes only ``lock_heartbeat``
  and ``lock_expires``) is a HOT update on PostgreSQL: no index is written. The
  monitor's "Executing with an expired lock" reads the few Executing rows through
  ``(state, created)``.
- states ``(name, job)``: ``past_state`` (which jobs were ever Failed); the unique
  ``(job, sequence)`` serves one job's history and per-job probes; the unique
  ``(job, life_order)`` makes a command event one row however often it is written
  (NULL, never equal, for the states the engine applies).
- properties ``(name, value_<type>, job)``: typed property conditions, with the
  job id in the index so the semi-join never reads the table; partial (only rows
  of that type) where the database allows (:mod:`.indexes`). ``(value_text, job)``:
  the admin's search by a text value whatever the property's name.

Text columns use :class:`~.fields.ExactCharField` (case-sensitive on MySQL too).
"""
from __future__ import annotations

from django.db import models

from celery_bgp.jobs.model import JobKind

from .fields import ExactCharField
from .indexes import TypedValueIndex

__all__ = ["Continuation", "Job", "JobData", "JobLog", "JobProperty", "JobState"]


class Job(models.Model):
    """A tracked job (a callable or a command); ``id`` is the Celery task id."""

    id = ExactCharField(primary_key=True, max_length=64)
    name = ExactCharField(max_length=255, help_text="Callable path or command name.")
    kind = ExactCharField(max_length=16, choices=[(k.value, k.value) for k in JobKind],
                          default=JobKind.CALLABLE.value)
    queue = ExactCharField(max_length=255)
    priority = models.SmallIntegerField(default=2, help_text="0 = critical ... 4 = none.")
    environment = ExactCharField(max_length=64, default="default")
    state = ExactCharField(max_length=64)
    created = models.DateTimeField()
    modified = models.DateTimeField()
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    middleware = models.JSONField(default=list, blank=True)
    options = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    execution_id = ExactCharField(max_length=64, null=True, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    worker = ExactCharField(max_length=255, null=True, blank=True)
    lock_holder = ExactCharField(max_length=255, null=True, blank=True)
    lock_acquired = models.DateTimeField(null=True, blank=True)
    lock_heartbeat = models.DateTimeField(null=True, blank=True)
    lock_expires = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.DateTimeField(
        null=True, blank=True, help_text="Set when a cancel was asked; cleared on Enqueued.")
    sequence = models.PositiveIntegerField(
        default=0, help_text="Sequence of the newest state (the history's length).")
    order = ExactCharField(
        max_length=40, default="", blank=True, db_column="life_order",
        help_text="Command jobs: life order of the current state (CommandEvent.order_text).")

    class Meta:
        verbose_name = "job"
        verbose_name_plural = "jobs"
        indexes = [
            models.Index(fields=["created"], name="bgp_job_created"),
            models.Index(fields=["modified"], name="bgp_job_modified"),
            models.Index(fields=["state", "created"], name="bgp_job_state_created"),
            models.Index(fields=["queue", "state", "created"], name="bgp_job_queue_state"),
            models.Index(fields=["priority", "created"], name="bgp_job_priority"),
            models.Index(fields=["name", "created"], name="bgp_job_name"),
            models.Index(fields=["environment", "state", "modified"], name="bgp_job_env_state"),
        ]
        #: The admin's actions and the console's (delete uses Django's own ``delete_job``).
        permissions = [("requeue_job", "Can requeue jobs"), ("cancel_job", "Can cancel jobs"),
                       ("control_worker", "Can shut down workers and change their queues"),
                       ("manage_queue", "Can requeue and purge poison queues"),
                       ("manage_recurring", "Can trigger, pause and resume recurring jobs")]

    def __str__(self) -> str:
        return f"{self.name} [{self.id}] {self.state}"


class JobState(models.Model):
    """One entry of a job's state history (HiveMind's job state row)."""

    job = models.ForeignKey(Job, models.CASCADE, related_name="states", db_index=False)
    sequence = models.PositiveIntegerField()
    name = ExactCharField(max_length=64)
    elected = models.DateTimeField()
    reason = models.TextField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    life_order = ExactCharField(
        max_length=40, null=True, blank=True,
        help_text="Command jobs: the event's life order (CommandEvent.order_text), which "
                  "also names it; NULL for states the engine applied.")

    class Meta:
        verbose_name = "job state"
        verbose_name_plural = "job states"
        constraints = [
            models.UniqueConstraint(fields=["job", "sequence"], name="bgp_jobstate_job_seq"),
            models.UniqueConstraint(fields=["job", "life_order"], name="bgp_jobstate_job_event"),
        ]
        indexes = [models.Index(fields=["name", "job"], name="bgp_jobstate_name_job")]

    def __str__(self) -> str:
        return f"{self.job_id} #{self.sequence} {self.name}"


class JobProperty(models.Model):
    """A typed, queryable property; exactly one ``value_*`` column is set."""

    job = models.ForeignKey(Job, models.CASCADE, related_name="properties", db_index=False)
    name = ExactCharField(max_length=255)
    value_text = ExactCharField(max_length=255, null=True, blank=True)
    value_int = models.BigIntegerField(null=True, blank=True)
    value_float = models.FloatField(null=True, blank=True)
    value_bool = models.BooleanField(null=True, blank=True)
    value_date = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "job property"
        verbose_name_plural = "job properties"
        constraints = [
            models.UniqueConstraint(fields=["job", "name"], name="bgp_jobprop_job_name"),
        ]
        indexes = [
            TypedValueIndex(column="value_text", name="bgp_jobprop_text"),
            TypedValueIndex(column="value_int", name="bgp_jobprop_int"),
            TypedValueIndex(column="value_float", name="bgp_jobprop_float"),
            TypedValueIndex(column="value_bool", name="bgp_jobprop_bool"),
            TypedValueIndex(column="value_date", name="bgp_jobprop_date"),
            TypedValueIndex(column="value_text", name="bgp_jobprop_text_any", by_name=False),
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.value!r}"

    @property
    def value(self) -> object:
        """The Python value, from whichever column holds it."""
        for column in ("value_bool", "value_int", "value_float", "value_date", "value_text"):
            found = getattr(self, column)
            if found is not None:
                return found
        return None


class JobData(models.Model):
    """A key/value item of a job (any JSON), e.g. progress."""

    job = models.ForeignKey(Job, models.CASCADE, related_name="data_items", db_index=False)
    key = ExactCharField(max_length=255)
    value = models.JSONField(null=True, blank=True)

    class Meta:
        verbose_name = "job data item"
        verbose_name_plural = "job data"
        constraints = [
            models.UniqueConstraint(fields=["job", "key"], name="bgp_jobdata_job_key"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.key}"


class JobLog(models.Model):
    """A log line a job wrote through its context (oldest first by id)."""

    job = models.ForeignKey(Job, models.CASCADE, related_name="logs", db_index=False)
    level = models.SmallIntegerField()
    message = models.TextField()
    exception = models.TextField(null=True, blank=True)
    time = models.DateTimeField()

    class Meta:
        verbose_name = "job log line"
        verbose_name_plural = "job logs"
        indexes = [models.Index(fields=["job", "id"], name="bgp_joblog_job")]

    def __str__(self) -> str:
        return f"{self.job_id} {self.level} {self.message[:60]}"


class Continuation(models.Model):
    """Run ``child`` when ``parent`` reaches a state in ``on`` (``"succeeded|failed"``)."""

    parent = models.ForeignKey(Job, models.CASCADE, related_name="continuations")
    child = models.ForeignKey(Job, models.CASCADE, related_name="parent_links")
    on = ExactCharField(max_length=64)
    delete_on_other = models.BooleanField(default=False)

    class Meta:
        verbose_name = "continuation"
        verbose_name_plural = "continuations"

    def __str__(self) -> str:
        return f"{self.parent_id} -> {self.child_id} on {self.on}"
from .daemon_models import Daemon, DaemonLog  # noqa: E402,F401  (daemons, issue 16)


class OperationsConsole(Job):
    """No table of its own: the admin index's "Operations console" entry (a link to the
    dashboard and the console's other pages), visible to whoever may view jobs."""

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = "operations console"
        verbose_name_plural = "operations console"


class RecurringJob(models.Model):
    """A recurring job's pause and last run, one row per environment and name.

    The ``jobs.recurring`` task reads it before each run (a paused run is skipped), so a
    pause reaches every worker and beat at once and survives restarts; the console and
    the CLI read the last run from it instead of searching the jobs. The schedule itself
    stays in code (``bgp.jobs.recurring``) and in beat.
    """

    environment = ExactCharField(max_length=64)
    name = ExactCharField(max_length=200)
    paused = models.BooleanField(default=False)
    paused_by = ExactCharField(max_length=255, null=True, blank=True)
    paused_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was paused, or resumed once it was.")
    last_job = ExactCharField(max_length=64, null=True, blank=True,
                              help_text="The newest run's job (not a foreign key: "
                                        "retention may delete it).")
    last_run = models.DateTimeField(null=True, blank=True)
    last_beat = models.DateTimeField(
        null=True, blank=True, help_text="When beat's last run reached a worker.")

    class Meta:
        verbose_name = "recurring job"
        verbose_name_plural = "recurring jobs"
        constraints = [models.UniqueConstraint(fields=["environment", "name"],
                                               name="bgp_recurring_env_name")]

    def __str__(self) -> str:
        return f"recurring job {self.name}" + (
            f" ({self.environment})" if self.environment != "default" else "")
