"""The daemons' tables: one row per daemon (and per worker copy), and their logs.

Imported by :mod:`.models` (one line at its end), so Django finds them in the app.
"""
from __future__ import annotations

from django.db import models

from .fields import ExactCharField

__all__ = ["Daemon", "DaemonLog"]

STATUSES = [(s, s) for s in ("starting", "running", "stopped", "faulted")]


class Daemon(models.Model):
    """A daemon (``instance`` empty) or a worker daemon's copy on one worker."""

    id = ExactCharField(primary_key=True, max_length=255)
    name = ExactCharField(max_length=200)
    environment = ExactCharField(max_length=64, default="default")
    scope = ExactCharField(max_length=16)
    instance = ExactCharField(max_length=255, default="", blank=True,
                              help_text="A worker daemon's worker; empty for the daemon itself.")
    status = ExactCharField(max_length=16, choices=STATUSES, default="stopped")
    desired = ExactCharField(max_length=16, default="running",
                             help_text="What operators asked for: running or stopped.")
    generation = models.IntegerField(default=0, help_text="Bumped by each start/restart.")
    ended = models.IntegerField(null=True, blank=True,
                                help_text="Generation at which it ended for good (its policy).")
    worker = ExactCharField(max_length=255, null=True, blank=True)
    lease_holder = ExactCharField(max_length=255, null=True, blank=True)
    lease_expires = models.DateTimeField(null=True, blank=True)
    since = models.DateTimeField(null=True, blank=True)
    restarts = models.IntegerField(default=0)
    last_error = models.TextField(null=True, blank=True)
    state = models.JSONField(null=True, blank=True)
    properties = models.JSONField(default=dict, blank=True)
    modified = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "daemon"
        verbose_name_plural = "daemons"
        indexes = [models.Index(fields=["environment", "name"], name="bgp_daemon_env_name")]
        permissions = [("control_daemon", "Can stop, start and restart daemons")]

    def __str__(self) -> str:
        return f"{self.name}@{self.instance}" if self.instance else self.name


class DaemonLog(models.Model):
    """A log line a daemon wrote through its context (or its supervisor)."""

    environment = ExactCharField(max_length=64)
    daemon = ExactCharField(max_length=200)
    worker = ExactCharField(max_length=255, null=True, blank=True)
    level = models.SmallIntegerField()
    message = models.TextField()
    exception = models.TextField(null=True, blank=True)
    time = models.DateTimeField()

    class Meta:
        verbose_name = "daemon log line"
        verbose_name_plural = "daemon logs"
        indexes = [models.Index(fields=["environment", "daemon", "id"],
                                name="bgp_daemonlog_daemon")]

    def __str__(self) -> str:
        return f"{self.daemon} {self.level} {self.message[:60]}"
